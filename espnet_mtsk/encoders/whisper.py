"""Whisper's encoder from a local Hugging Face folder (or a random config)."""

import math
from typing import Literal, Optional, Tuple, Union

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from typeguard import typechecked

from espnet_mtsk.fileio import SAMPLE_RATE
from espnet_mtsk.hf_folder import resolve_folder

FRAMES_PER_SECOND = 50
MIN_FRAMES = 25


class HFWhisperEncoder(AbsEncoder):
    """Waveform -> Whisper encoder states, trimmed to the real signal.

    Input ``xs_pad`` (B, S) 16 kHz waveforms with ``ilens`` (B,) sample counts;
    output (B, T, d_model) with T = max(int(S / 16000 * 50), 25) per utterance
    (Whisper pads every input to its window; the states past the signal are
    dropped, as in the paper).

    Args:
        input_size: unused; ESPnet passes the frontend size (whisper has none).
        model_dir: HF folder (or its config.json) with a Whisper model (``WhisperModel`` or
            ``WhisperForConditionalGeneration``) and its feature extractor.
        config: kwargs of a ``WhisperConfig`` for a randomly initialised
            encoder, used when ``model_dir`` is not given (tests, toy recipes).
            A smaller ``max_source_positions`` shortens the input window.
        window: the input window. ``"full"``: the model's own (30 s for the
            released Whisper models, the paper's setting); a number of
            seconds: that window; ``"longest"``: the batch's longest
            utterance. A shorter window runs the encoder on the positional
            embeddings of its first frames only, far cheaper on short
            utterances; the states differ somewhat from the full window's,
            since the padding the encoder attends to is shorter. Audio past
            the window is an error.
    """

    @typechecked
    def __init__(
        self,
        input_size: int = 0,
        model_dir: Optional[str] = None,
        config: Optional[dict] = None,
        window: Union[float, Literal["full", "longest"]] = "full",
    ):
        super().__init__()
        from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if (model_dir is None) == (config is None):
            raise ValueError("Give exactly one of model_dir or config")
        if model_dir is not None:
            folder = resolve_folder(
                model_dir, ("config.json", "preprocessor_config.json"), "Whisper"
            )
            self.encoder = WhisperModel.from_pretrained(str(folder)).get_encoder()
            self.feature_extractor = WhisperFeatureExtractor.from_pretrained(str(folder))
        else:
            self.encoder = WhisperEncoder(WhisperConfig(**config))
            self.feature_extractor = WhisperFeatureExtractor(
                feature_size=self.encoder.config.num_mel_bins
            )
        hop = self.feature_extractor.hop_length
        # conv2 has stride 2: each encoder state covers two mel frames.
        self.samples_per_state = 2 * hop
        self.max_states = self.encoder.config.max_source_positions
        self.set_window(window)

    def set_window(self, window: Union[float, str]) -> None:
        """Changes the input window (see the class docstring)."""
        if isinstance(window, (int, float)):
            states = math.ceil(window * SAMPLE_RATE / self.samples_per_state)
            if not 0 < states <= self.max_states:
                raise ValueError(
                    f"Whisper window {window} s is outside (0, {self.max_states / FRAMES_PER_SECOND:g}] s"
                )
            window = states
        elif window not in ("full", "longest"):
            raise ValueError(f"Whisper window must be seconds, 'full' or 'longest', got {window!r}")
        self.window = window

    def output_size(self) -> int:
        return self.encoder.config.d_model

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        if xs_pad.dim() != 2:
            raise ValueError(f"Whisper expects (B, samples) audio, got {tuple(xs_pad.shape)}")
        states = self.window_states(int(ilens.max()))
        waves = [x[: int(n)].float().cpu().numpy() for x, n in zip(xs_pad, ilens)]
        feats = self.feature_extractor(
            waves,
            sampling_rate=SAMPLE_RATE,
            padding="max_length",
            max_length=states * self.samples_per_state,
            truncation=True,
            return_tensors="pt",
        ).input_features
        param = next(self.encoder.parameters())
        hidden = self.encode(feats.to(param.device, param.dtype))
        olens = (ilens.float() / SAMPLE_RATE * FRAMES_PER_SECOND).long()
        olens = olens.clamp(min=MIN_FRAMES, max=hidden.size(1))
        return hidden[:, : int(olens.max())], olens.to(xs_pad.device), None

    def longest_input(self) -> float:
        """Seconds of the longest utterance this encoder takes."""
        states = self.window if isinstance(self.window, int) else self.max_states
        return states / FRAMES_PER_SECOND

    def window_states(self, max_samples: int) -> int:
        """Encoder states of the window for a batch whose longest utterance
        has ``max_samples`` samples."""
        if self.window == "full":
            states = self.max_states
        elif self.window == "longest":
            states = min(math.ceil(max_samples / self.samples_per_state), self.max_states)
        else:
            states = self.window
        if max_samples > states * self.samples_per_state:
            raise ValueError(
                f"{max_samples / SAMPLE_RATE:.2f} s of audio is longer than the Whisper window "
                f"({states / FRAMES_PER_SECOND:g} s): raise audio_encoder_conf.window"
            )
        return states

    def encode(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, 2 T) log-mel -> (B, T, d_model): Whisper's encoder on
        the first T positional embeddings (its own forward insists on the
        full window)."""
        enc = self.encoder
        x = torch.nn.functional.gelu(enc.conv1(feats))
        x = torch.nn.functional.gelu(enc.conv2(x)).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.size(1)]
        x = torch.nn.functional.dropout(x, p=enc.dropout, training=enc.training)
        for layer in enc.layers:
            x = layer(x, None)
        return enc.layer_norm(x)
