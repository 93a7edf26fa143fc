"""Mouth crops of chosen time spans of a video of any length, streamed.

``mouth_roi.crop_mouth_file`` holds a clip's every frame; a talk's frames at
720p would fill the memory. Here two decoders walk the file once each, in
order, one span at a time: the first finds the face landmarks of the span's
frames, the second, behind it, warps the same frames into mouth crops once
the span's landmarks are filled in and smoothed (as ``crop_mouth`` does for
a clip). At most one frame per decoder is held at full size, so memory does
not grow with the file's length.
"""

from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from espnet_mtsk.data.mouth_roi import (
    MOUTH_SIZE,
    NUM_POINTS,
    detect_landmarks,
    fill_missing,
    mouth_opening,
    mouth_transforms,
    new_face_mesh,
    smooth,
    warp_to_mouth,
)
from espnet_mtsk.data.video import FrameStream
from espnet_mtsk.fileio import VIDEO_FPS, Span


def lip_activity(points: np.ndarray) -> float:
    """Key points (T, K, 2), NaN where no face -> how much the lips move: the
    standard deviation over the frames with a face of the mouth's opening
    (``mouth_roi.mouth_opening``). Measured: 0.024-0.04 for SynthGRID
    talkers' composited mouths, 0.002-0.013 for a still mouth in babble,
    0.008-0.011 for a still face whose head moves (landmark jitter)."""
    opening = mouth_opening(points)
    opening = opening[~np.isnan(opening)]
    return float(opening.std()) if len(opening) > 1 else 0.0


class MouthTrack:
    """Mouth crops of a video file's spans, in order, streamed.

    ``for span, crops, found, lips in MouthTrack(path)(spans)``: ``crops``
    is (T, size, size) uint8 grayscale at 25 fps, T = the span's 40 ms
    frames, or None when a face was found in fewer than
    ``min_face_fraction`` of them (the lips would be made up by
    interpolation); ``found`` is that fraction, ``lips`` the span's
    ``lip_activity``. Frames where no picture is shown (before it starts,
    after it ends) count as faceless and repeat the nearest crop.
    """

    def __init__(self, path: str, size: int = MOUTH_SIZE, min_face_fraction: float = 0.5, face_mesh=None):
        self.path, self.size, self.min_face_fraction = path, size, min_face_fraction
        self._face_mesh = face_mesh

    def __call__(self, spans: Sequence[Span]) -> Iterator[Tuple[Span, Optional[np.ndarray], float, float]]:
        own_mesh = self._face_mesh is None
        face_mesh = new_face_mesh() if own_mesh else self._face_mesh
        finder, warper = FrameStream(self.path), FrameStream(self.path)
        try:
            for span in spans:
                first = int(round(span[0] * VIDEO_FPS))
                count = int(round(span[1] * VIDEO_FPS)) - first
                points = self._landmarks(finder, face_mesh, first, count)
                found = float(np.mean(~np.isnan(points).any(axis=(1, 2)))) if count else 0.0
                if found < self.min_face_fraction or found == 0:
                    yield span, None, found, 0.0
                    continue
                transforms = mouth_transforms(smooth(fill_missing(points)), self.size)
                crops = np.zeros((count, self.size, self.size), np.uint8)
                shown = []
                for t, frame in enumerate(warper.frames(first, count)):
                    if frame is not None:
                        crops[t] = warp_to_mouth(frame, transforms[t], self.size)
                        shown.append(t)
                # Where no frame is shown (before the picture starts, after
                # it ends) the nearest crop stands: a black mouth would be
                # read as one.
                nearest = np.searchsorted(shown, np.arange(count)).clip(max=len(shown) - 1)
                crops = crops[np.asarray(shown)[nearest]]
                yield span, crops, found, lip_activity(points)
        finally:
            finder.close()
            warper.close()
            if own_mesh:
                face_mesh.close()

    @staticmethod
    def _landmarks(stream: FrameStream, face_mesh, first: int, count: int) -> np.ndarray:
        """Key points (count, K, 2) of the span's frames, NaN where no face."""
        points = np.full((count, NUM_POINTS, 2), np.nan)
        face_mesh.reset()  # a span is tracked on its own, as a clip is
        for t, frame in enumerate(stream.frames(first, count)):
            if frame is not None:
                points[t] = detect_landmarks(frame[None], face_mesh, reset=False)[0]
        return points
