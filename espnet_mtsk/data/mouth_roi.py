"""Mouth ROI from raw face video, as LRS3 pipelines (auto-avsr) prepare it.

Per frame, MediaPipe face mesh finds 468 landmarks; frames where it finds no
face are filled by interpolating over time, and the landmarks are smoothed
with a moving average. A similarity transform (rotation, uniform scale,
translation) takes the stable points (eye corners, nose tip, mouth corners)
onto a mean face, MediaPipe's canonical face model seen from the front; the
crop is then a fixed ``size`` x ``size`` square centred on the mouth in that
frame, in grayscale. The face scale does not depend on ``size``: a larger
size shows more context around the same mouth (crop 96 and take the centre
88 at training time, as auto-avsr does, or crop 88 directly).

A video file is read at 25 fps on its own clock (``video.frames_on_clock``):
each output frame is the source frame shown at that time, whatever the file's
frame rate, start time or dropped frames.
"""

from typing import Tuple

import numpy as np

from espnet_mtsk.data.video import frames_on_clock

MOUTH_SIZE = 88
SMOOTH_WINDOW = 12  # frames (13, centred), as auto-avsr's window_margin

# Face-mesh landmark ids and their (x, y) in MediaPipe's canonical face model
# (cm, x to the image right, y up; canonical_face_model.obj, frontal view).
STABLE_POINTS = {
    33: (-4.445859, 2.663991),  # eye, outer corner (image left)
    133: (-1.856432, 2.585245),  # eye, inner corner
    362: (1.856432, 2.585245),  # eye, inner corner (image right)
    263: (4.445859, 2.663991),  # eye, outer corner
    1: (0.0, -1.126865),  # nose tip
    61: (-2.456206, -4.342621),  # mouth corner (image left)
    291: (2.456206, -4.342621),  # mouth corner (image right)
}
MOUTH_POINTS = (61, 291, 0, 17)  # corners, top of upper lip, bottom of lower lip
# Output pixels per canonical cm: the mouth is ~40 px wide, and an 88 crop
# spans from the nostrils to the chin.
PIXELS_PER_CM = 8.0

_IDS = list(STABLE_POINTS) + list(MOUTH_POINTS)
_N_STABLE = len(STABLE_POINTS)
NUM_POINTS = len(_IDS)
REFERENCE = np.array(list(STABLE_POINTS.values())) * [PIXELS_PER_CM, -PIXELS_PER_CM]


class NoFaceError(ValueError):
    """No face was found in any frame of a video."""

    def __init__(self, path: str, num_frames: int):
        super().__init__(f"{path}: no face detected in any of its {num_frames} frames")
        self.path, self.num_frames = path, num_frames

    def __reduce__(self):  # picklable, to cross process boundaries
        return type(self), (self.path, self.num_frames)


def new_face_mesh():
    """A MediaPipe face-mesh tracker for one face (models ship in the wheel)."""
    from google.protobuf import message_factory

    # protobuf >= 5 dropped GetPrototype, which mediapipe 0.10.21's C++ side
    # looks up at import (it prints an AttributeError otherwise).
    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        message_factory.MessageFactory.GetPrototype = lambda self, desc: (
            message_factory.GetMessageClass(desc)
        )
    from mediapipe.python.solutions.face_mesh import FaceMesh

    return FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False)


def detect_landmarks(frames: np.ndarray, face_mesh=None, reset: bool = True) -> np.ndarray:
    """RGB frames (T, H, W, 3) uint8 -> key points (T, K, 2) in pixels.

    K = 7 stable points (``STABLE_POINTS`` order) + 4 mouth points; NaN in
    frames where no face was found. ``reset=False`` goes on tracking from the
    frames ``face_mesh`` saw last (a stream fed a frame at a time).
    """
    if face_mesh is None:
        with new_face_mesh() as own:
            return detect_landmarks(frames, own)
    if reset:
        face_mesh.reset()  # no tracking state carried over from another video
    height, width = frames.shape[1:3]
    points = np.full((len(frames), NUM_POINTS, 2), np.nan)
    for t, frame in enumerate(frames):
        found = face_mesh.process(np.ascontiguousarray(frame)).multi_face_landmarks
        if found:
            marks = found[0].landmark
            points[t] = [(marks[i].x * width, marks[i].y * height) for i in _IDS]
    return points


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Key points (T, K, 2) -> (T,) the lips' opening (top of the upper lip
    to the bottom of the lower) over the mouth's width (corner to corner):
    a measure head motion and face size leave alone; NaN where no face."""
    mouth = points[:, _N_STABLE:]
    width = np.linalg.norm(mouth[:, 1] - mouth[:, 0], axis=-1)
    return np.linalg.norm(mouth[:, 3] - mouth[:, 2], axis=-1) / width


def fill_missing(points: np.ndarray) -> np.ndarray:
    """(T, K, 2) with NaN frames -> (T, K, 2), linearly interpolated in time.

    Frames before the first / after the last detection copy the nearest one.
    """
    found = ~np.isnan(points).any(axis=(1, 2))
    if found.all():
        return points
    t = np.arange(len(points))
    flat = points.reshape(len(points), -1)
    filled = np.stack([np.interp(t, t[found], col[found]) for col in flat.T], axis=1)
    return filled.reshape(points.shape)


def smooth(points: np.ndarray, window: int = SMOOTH_WINDOW) -> np.ndarray:
    """(T, K, 2) -> (T, K, 2): centred moving average over ``window`` frames.

    An even window takes one frame more, to stay centred. The ends are padded
    by point reflection, so a steady drift (a head moving) is followed to the
    last frame rather than flattened there.
    """
    half = window // 2
    if half == 0 or len(points) == 1:
        return points
    padded = np.pad(points, ((half, half), (0, 0), (0, 0)), mode="reflect", reflect_type="odd")
    cumsum = np.cumsum(np.concatenate([np.zeros_like(points[:1]), padded]), axis=0)
    return (cumsum[2 * half + 1 :] - cumsum[: -2 * half - 1]) / (2 * half + 1)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) taking (N, 2) ``src`` onto ``dst`` -> (2, 3)."""
    from skimage.transform import SimilarityTransform

    fitted = SimilarityTransform.from_estimate(src, dst)
    if not fitted:
        raise ValueError(f"no similarity transform fits the key points ({fitted})")
    return fitted.params[:2]


def mouth_transforms(points: np.ndarray, size: int = MOUTH_SIZE) -> np.ndarray:
    """Key points (T, K, 2) -> affine maps (T, 2, 3) from frame to crop pixels.

    Each map aligns the stable points to ``REFERENCE`` and puts the mouth
    centre (mean of ``MOUTH_POINTS``) at the crop centre.
    """
    transforms = np.empty((len(points), 2, 3))
    for t, frame_points in enumerate(points):
        m = similarity(frame_points[:_N_STABLE], REFERENCE)
        mouth = m[:, :2] @ frame_points[_N_STABLE:].mean(0) + m[:, 2]
        m[:, 2] += (size - 1) / 2 - mouth
        transforms[t] = m
    return transforms


def crop_mouth(
    frames: np.ndarray,
    size: int = MOUTH_SIZE,
    face_mesh=None,
    name: str = "video",
    smooth_window: int = SMOOTH_WINDOW,
) -> Tuple[np.ndarray, np.ndarray]:
    """RGB frames (T, H, W, 3) uint8 at 25 fps -> mouth crops and transforms.

    Returns grayscale crops (T, size, size) uint8 and the affine maps
    (T, 2, 3) from frame to crop pixels. Raises ``NoFaceError`` (naming
    ``name``) when no frame has a face.
    """
    points = detect_landmarks(frames, face_mesh)
    if np.isnan(points).all():
        raise NoFaceError(name, len(frames))
    transforms = mouth_transforms(smooth(fill_missing(points), smooth_window), size)
    crops = np.empty((len(frames), size, size), np.uint8)
    for t, (frame, m) in enumerate(zip(frames, transforms)):
        crops[t] = warp_to_mouth(frame, m, size)
    return crops, transforms


def warp_to_mouth(frame: np.ndarray, transform: np.ndarray, size: int = MOUTH_SIZE) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8 and its map (2, 3) -> the grayscale
    mouth crop (size, size) uint8."""
    import cv2

    rgb = cv2.warpAffine(frame, transform, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def crop_mouth_file(path: str, size: int = MOUTH_SIZE, face_mesh=None) -> np.ndarray:
    """A face video file -> mouth crops (T, size, size) uint8 at 25 fps on
    the file's clock (``video.frames_on_clock``: frame j is the one shown at
    j / 25 s, whatever the file's frame rate, start time or dropped frames).

    Raises ``ValueError`` for a file that does not decode and ``NoFaceError``
    (a ValueError) when no frame has a face; both name the file.
    """
    return crop_mouth(frames_on_clock(path), size, face_mesh, name=path)[0]
