"""Whisper's encoder from a local Hugging Face folder (or a random config)."""

from typing import Optional, Tuple

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from typeguard import typechecked

from espnet_mtsk.hf_folder import resolve_folder

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 50
MIN_FRAMES = 25


class HFWhisperEncoder(AbsEncoder):
    """Waveform -> Whisper encoder states, trimmed to the real signal.

    Input ``xs_pad`` (B, S) 16 kHz waveforms with ``ilens`` (B,) sample counts;
    output (B, T, d_model) with T = max(int(S / 16000 * 50), 25) per utterance
    (Whisper pads every input to its full window; the states past the signal
    are dropped, as in the paper).

    Args:
        input_size: unused; ESPnet passes the frontend size (whisper has none).
        model_dir: HF folder (or its config.json) with a Whisper model (``WhisperModel`` or
            ``WhisperForConditionalGeneration``) and its feature extractor.
        config: kwargs of a ``WhisperConfig`` for a randomly initialised
            encoder, used when ``model_dir`` is not given (tests, toy recipes).
            A smaller ``max_source_positions`` shortens the input window.
    """

    @typechecked
    def __init__(
        self,
        input_size: int = 0,
        model_dir: Optional[str] = None,
        config: Optional[dict] = None,
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
        self.window_samples = self.encoder.config.max_source_positions * 2 * hop
        self._output_size = self.encoder.config.d_model

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        if xs_pad.dim() != 2:
            raise ValueError(f"Whisper expects (B, samples) audio, got {tuple(xs_pad.shape)}")
        waves = [x[: int(n)].float().cpu().numpy() for x, n in zip(xs_pad, ilens)]
        feats = self.feature_extractor(
            waves,
            sampling_rate=SAMPLE_RATE,
            padding="max_length",
            max_length=self.window_samples,
            truncation=True,
            return_tensors="pt",
        ).input_features
        param = next(self.encoder.parameters())
        hidden = self.encoder(feats.to(param.device, param.dtype)).last_hidden_state
        olens = (ilens.float() / SAMPLE_RATE * FRAMES_PER_SECOND).long()
        olens = olens.clamp(min=MIN_FRAMES, max=hidden.size(1))
        return hidden[:, : int(olens.max())], olens.to(xs_pad.device), None
