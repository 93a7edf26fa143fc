"""Mouth-ROI cropping on a short video made from scikit-image's astronaut."""

import importlib.util
import logging

import numpy as np
import pytest

# Not imported here: espnet_mtsk.data.mouth_roi patches protobuf before it does.
if importlib.util.find_spec("mediapipe") is None:
    pytest.skip("needs mediapipe (tools/install.sh)", allow_module_level=True)
skimage_data = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")

from espnet_mtsk.bin.crop_mouth import main as crop_mouth_main  # noqa: E402
from espnet_mtsk.data.mouth_roi import (  # noqa: E402
    MOUTH_POINTS,
    NoFaceError,
    crop_mouth,
    crop_mouth_file,
    detect_landmarks,
    new_face_mesh,
)
from espnet_mtsk.data.video import VideoScpReader, read_video, write_video_mp4  # noqa: E402

SIDE = 256  # the astronaut (512 x 512) at half size, about an LRS3 frame
MOUTH = np.array([111.7, 72.1])  # her mouth centre there (face mesh, lips 61/291/0/17)
CENTRE = (88 - 1) / 2


def _jitter(t, num):
    """Frame t's affine (2, 3) on the still image: a slow drift and turn."""
    s = 2 * t / (num - 1) - 1  # -1 .. 1
    m = cv2.getRotationMatrix2D((SIDE / 2, SIDE / 2), 4.0 * s, 1.0)
    m[:, 2] += (5.0 * s, -3.0 * s)
    return m


def _apply(m, point):
    return m[:, :2] @ point + m[:, 2]


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    """(path, jitter affines (T, 2, 3)) of a 20-frame 25 fps mp4 of a face."""
    still = cv2.resize(skimage_data.astronaut(), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    jitters = np.stack([_jitter(t, 20) for t in range(20)])
    frames = np.stack(
        [cv2.warpAffine(still, m, (SIDE, SIDE), borderMode=cv2.BORDER_REPLICATE) for m in jitters]
    )
    path = str(tmp_path_factory.mktemp("face") / "face.mp4")
    write_video_mp4(path, frames)
    return path, jitters


@pytest.fixture(scope="module")
def face_mesh():
    with new_face_mesh() as mesh:
        yield mesh


def test_crop_lands_on_the_mouth(face, face_mesh):
    path, jitters = face
    frames, fps = read_video(path, pix_fmt="rgb24")
    assert fps == 25 and frames.shape == (20, SIDE, SIDE, 3)
    crops, transforms = crop_mouth(frames, face_mesh=face_mesh)
    assert crops.shape == (20, 88, 88) and crops.dtype == np.uint8
    assert transforms.shape == (20, 2, 3)
    # The known mouth position, moved by each frame's jitter, maps to the centre.
    for jitter, m in zip(jitters, transforms):
        assert np.abs(_apply(m, _apply(jitter, MOUTH)) - CENTRE).max() < 4
    # So does the mouth that face mesh finds in each frame on its own.
    mouth = detect_landmarks(frames, face_mesh)[:, -len(MOUTH_POINTS):].mean(1)
    for point, m in zip(mouth, transforms):
        assert np.abs(_apply(m, point) - CENTRE).max() < 3
    # Alignment undoes the turn: the crop's rotation relative to the still
    # image stays the same while the head turns by 8 degrees.
    still_to_crop = [m[:, :2] @ j[:, :2] for m, j in zip(transforms, jitters)]
    angles = [np.degrees(np.arctan2(a[1, 0], a[0, 0])) for a in still_to_crop]
    assert np.ptp(angles) < 2


def test_missing_frames_are_interpolated(face, face_mesh):
    path, jitters = face
    frames, _ = read_video(path, pix_fmt="rgb24")
    frames[8:10] = 128  # two frames without a face
    crops, transforms = crop_mouth(frames, face_mesh=face_mesh)
    assert crops.shape == (20, 88, 88) and np.isfinite(transforms).all()
    for t in (8, 9):  # the head drifts steadily, so interpolation finds the mouth
        assert np.abs(_apply(transforms[t], _apply(jitters[t], MOUTH)) - CENTRE).max() < 4


def test_30fps_comes_out_at_25(tmp_path, face, face_mesh, caplog):
    frames, _ = read_video(face[0], pix_fmt="rgb24")
    path = str(tmp_path / "thirty.mp4")
    write_video_mp4(path, np.concatenate([frames, frames[:10]]), fps=30)  # 1 s
    with caplog.at_level(logging.INFO):
        crops = crop_mouth_file(path, face_mesh=face_mesh)
    assert crops.shape == (25, 88, 88)
    assert "30 fps -> 25 fps (30 -> 25 frames)" in caplog.text


def test_no_face_and_corrupt_files_are_named(tmp_path, face_mesh):
    blank = str(tmp_path / "blank.mp4")
    write_video_mp4(blank, np.full((10, 64, 64), 128, np.uint8))
    with pytest.raises(NoFaceError, match="blank.mp4: no face detected in any of its 10 frames"):
        crop_mouth_file(blank, face_mesh=face_mesh)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(ValueError, match="corrupt.mp4: cannot decode video"):
        crop_mouth_file(str(corrupt), face_mesh=face_mesh)


def test_cli_writes_successes_and_failures(tmp_path, face):
    write_video_mp4(str(tmp_path / "blank.mp4"), np.full((5, 64, 64), 128, np.uint8))
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video" * 50)
    scp = tmp_path / "raw_video.scp"
    scp.write_text(
        f"utt_face {face[0]}\nutt_blank {tmp_path / 'blank.mp4'}\n"
        f"utt_corrupt {tmp_path / 'corrupt.mp4'}\nutt_gone {tmp_path / 'gone.mp4'}\n"
    )
    outdir, out_scp = tmp_path / "roi", tmp_path / "data" / "video.scp"
    args = ["--scp", str(scp), "--outdir", str(outdir), "--out_scp", str(out_scp)]
    assert crop_mouth_main(args + ["--nj", "2"]) == 0
    assert out_scp.read_text() == f"utt_face {outdir / 'utt_face.npy'}\n"
    roi = np.load(outdir / "utt_face.npy")
    assert roi.shape == (20, 88, 88) and roi.dtype == np.uint8
    failed = dict(line.split(" ", 1) for line in (outdir / "failed.list").read_text().splitlines())
    assert sorted(failed) == ["utt_blank", "utt_corrupt", "utt_gone"]
    assert failed["utt_blank"].startswith("NoFaceError: ") and "blank.mp4" in failed["utt_blank"]
    assert "corrupt.mp4: cannot decode video" in failed["utt_corrupt"]
    assert sorted(p.name for p in outdir.iterdir()) == ["failed.list", "utt_face.npy"]

    # A re-run keeps what is done and only retries the failures.
    stamp = (outdir / "utt_face.npy").stat().st_mtime_ns
    assert crop_mouth_main(args) == 0
    assert (outdir / "utt_face.npy").stat().st_mtime_ns == stamp
    assert out_scp.read_text() == f"utt_face {outdir / 'utt_face.npy'}\n"

    # Nothing cropped: a non-zero exit.
    scp.write_text(f"utt_corrupt {tmp_path / 'corrupt.mp4'}\n")
    assert crop_mouth_main(args) == 1
    assert out_scp.read_text() == ""


def test_cli_mp4_format(tmp_path, face, face_mesh):
    scp = tmp_path / "raw_video.scp"
    scp.write_text(f"utt_face {face[0]}\nutt_gone {tmp_path / 'gone.mp4'}\n")
    outdir, out_scp = tmp_path / "roi", tmp_path / "data" / "video.scp"
    outdir.mkdir()
    np.save(outdir / "utt_face.npy", np.zeros((1, 88, 88), np.uint8))  # another format's
    args = ["--scp", str(scp), "--outdir", str(outdir), "--out_scp", str(out_scp)]
    assert crop_mouth_main(args + ["--format", "mp4"]) == 0
    mp4 = outdir / "utt_face.mp4"
    assert out_scp.read_text() == f"utt_face {mp4}\n"
    names = sorted(p.name for p in outdir.iterdir())
    assert names == ["failed.list", "utt_face.mp4", "utt_face.npy"]
    assert (outdir / "failed.list").read_text().startswith("utt_gone ")
    # The video data type reads it: 25 fps, (T, 88, 88), close to the exact crop.
    roi = VideoScpReader(str(out_scp))["utt_face"]
    assert roi.shape == (20, 88, 88)
    exact = crop_mouth_file(face[0], face_mesh=face_mesh).astype(np.float32)
    assert np.abs(roi - exact).mean() < 4
    assert mp4.stat().st_size < exact.size / 10  # vs 1 byte a pixel in .npy

    # A re-run keeps the mp4.
    stamp = mp4.stat().st_mtime_ns
    assert crop_mouth_main(args + ["--format", "mp4"]) == 0
    assert mp4.stat().st_mtime_ns == stamp
    assert out_scp.read_text() == f"utt_face {mp4}\n"

    # H.264 4:2:0 needs an even side.
    with pytest.raises(SystemExit):
        crop_mouth_main(args + ["--format", "mp4", "--size", "87"])
