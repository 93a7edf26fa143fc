"""The sha256 digests of pretrained weights, cached."""

import hashlib
import json

from espnet_mtsk.hf_folder import sha256


def test_digest_cache_forgets_files_that_are_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gone, kept = tmp_path / "gone.bin", tmp_path / "kept.bin"
    gone.write_bytes(b"gone")
    kept.write_bytes(b"kept")
    sha256(gone)
    gone.unlink()
    assert sha256(kept) == hashlib.sha256(b"kept").hexdigest()
    cache = json.loads((tmp_path / "cache/espnet_mtsk/sha256.json").read_text())
    assert list(cache) == [str(kept.resolve())]
    # One of another machine's own folders, sharing this home: its digest stays.
    elsewhere = {"stamp": [1, 2, 3], "sha256": "0" * 64}
    cache["/node-local/scratch/model.safetensors"] = elsewhere
    (tmp_path / "cache/espnet_mtsk/sha256.json").write_text(json.dumps(cache))
    gone.write_bytes(b"again")
    sha256(gone)
    cache = json.loads((tmp_path / "cache/espnet_mtsk/sha256.json").read_text())
    assert cache["/node-local/scratch/model.safetensors"] == elsewhere
