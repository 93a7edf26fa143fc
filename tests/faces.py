"""Talking faces for the tests: scikit-image's astronaut, whose head moves
and whose mouth (a dark ellipse on her lips, where MediaPipe finds them)
opens and closes."""

import numpy as np


def talking_face(num: int, size: int = 128, lips: bool = True) -> np.ndarray:
    """(num, size, size, 3) uint8 RGB frames at 25 fps: the head shifts by
    up to 3 pixels; with ``lips`` the mouth opens and closes 4 times a second
    (``mouth_track.lip_activity`` about 0.036 at size 128), without them it
    stays shut (about 0.011: landmark jitter)."""
    import cv2
    from skimage import data as skimage_data

    from espnet_mtsk.data.mouth_roi import detect_landmarks

    still = cv2.resize(skimage_data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    corner_l, corner_r, top, bottom = detect_landmarks(still[None])[0, -4:]
    centre = (corner_l + corner_r + top + bottom) / 4
    width = np.linalg.norm(corner_r - corner_l)
    frames = np.empty((num, size, size, 3), np.uint8)
    for t in range(num):
        shift = t // 5 % 4
        frames[t] = np.roll(still, shift, axis=1)
        if lips:
            half_height = max(1, int(width * 0.125 * (1 + np.sin(2 * np.pi * 4 * t / 25))))
            cv2.ellipse(frames[t], (int(centre[0]) + shift, int(centre[1])), (int(width * 0.45), half_height),
                        0, 0, 360, (40, 10, 20), -1)
    return frames
