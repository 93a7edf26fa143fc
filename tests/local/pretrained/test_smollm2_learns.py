"""Slow: the real SmolLM2-135M-Instruct, frozen, learns to transcribe
SynthGRID speech through fresh projectors and MS-LoRA on q and v (the
SynthGRID recipe's real-LLM config, ASR at audio rate 4 only)."""

import numpy as np
import pytest
import torch
import yaml

from local.synthgrid.grammar import random_sentence, transcript
from local.synthgrid.prepare import Utterance, synthesize_utterance
from local.synthgrid.speakers import draw_speakers

RECIPE_CONFIG = "egs2/synthgrid/avsr1/conf/train_avsr_mtsk_smollm2.yaml"
N_UTTS, STEPS = 8, 30


def grid_batch(tokenizer, seed=0):
    """N_UTTS SynthGRID utterances of 4 training-like voices: speech, ids, texts."""
    rng = np.random.default_rng(seed)
    speakers = draw_speakers(seed, {"train": 4})["train"]
    waves, texts = [], []
    for i in range(N_UTTS):
        words = random_sentence(rng)
        utt = Utterance(f"u{i}", speakers[i % 4], tuple(words), "", "", ())
        pcm, _ = synthesize_utterance(utt, seed)
        waves.append(torch.from_numpy(pcm.astype(np.float32) / 32768))
        texts.append(transcript(words))
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    width = max(map(len, ids))
    return dict(
        speech=torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
        speech_lengths=torch.tensor([w.numel() for w in waves]),
        text=torch.tensor([x + [-1] * (width - len(x)) for x in ids]),
        text_lengths=torch.tensor([len(x) for x in ids]),
    ), texts


@pytest.mark.slow
def test_smollm2_with_ms_lora_overfits_eight_synthgrid_utterances(real_parts):
    """Measured by this test on an AMD EPYC without AVX-512 BF16 (float32),
    beside the test suite: the loss falls from 10.7 to 0.23
    after 23 steps of lr 5e-3 and 0.05 after 30, and greedy decoding then
    gives all 8 transcripts exactly; 0.2 and 6 of 8 leave a margin. Sixteen
    utterances for 60 steps cost 4 times as much for the same check."""
    from espnet_mtsk.tasks.avsr import AVSRTask

    folder = real_parts[0]
    conf = yaml.safe_load(open(RECIPE_CONFIG))
    conf["audio_encoder_conf"]["model_dir"] = str(folder / "whisper-tiny.en")
    conf["llm_conf"]["model_dir"] = str(folder / "smollm2-135m")
    conf["model_conf"] = dict(conf["model_conf"], mode="asr", audio_rates=[4], scales_per_step=None)
    conf.update(video_encoder=None, video_encoder_conf={})
    parser = AVSRTask.get_parser()
    args = parser.parse_args([])
    vars(args).update(conf)
    torch.manual_seed(0)
    model = AVSRTask.build_model(args)
    for p in model.encoders.parameters():
        p.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert all(".lora_" in n or n.startswith(("projectors.", "llm.marker_embed"))
               for n, p in model.named_parameters() if p.requires_grad)
    batch, texts = grid_batch(model.llm.tokenizer)
    encoded = model.encode(batch["speech"], batch["speech_lengths"])
    optim = torch.optim.AdamW(trained, lr=5e-3, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(STEPS):
        loss, _, _ = model(text=batch["text"], text_lengths=batch["text_lengths"], encoded=encoded)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[0] > 8 and losses[-1] < 0.2, losses[::10]
    model.eval()
    hyps = model.recognize("a4", beam_size=1, max_new_tokens=16, encoded=encoded).texts
    exact = sum(h == t for h, t in zip(hyps, texts))
    assert exact >= 6, list(zip(hyps, texts))
