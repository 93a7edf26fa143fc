"""Phonemes -> visemes -> articulation tracks -> grayscale mouth-ROI frames.

The chain, per utterance:
1. each espeak phoneme maps to one viseme class, or two for a diphthong
   (:func:`visemes_of`), and each class to articulation targets
   (:data:`TARGETS`: lip opening, width, rounding, teeth, tongue, all 0..1);
2. the targets become a 1 ms track, smoothed by a moving average so that the
   mouth moves linearly from one target to the next (coarticulation), then
   averaged over each 40 ms frame, as a camera's exposure would
   (:func:`articulation_track`, 25 fps);
3. each frame's five values are drawn as a mouth: soft-edged lips around a
   dark cavity with a teeth band and a tongue, in a per-speaker appearance,
   with ~1 px crop jitter and pixel noise (:func:`render_video`).

The default 32 x 32 frames keep CPU training cheap; 88 x 88 matches the
usual LRS3 mouth crop. All geometry is in units of the frame, so the
same speaker looks the same at any size.
"""

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from espnet_mtsk.fileio import VIDEO_FPS

VIDEO_SIZE = 32

VISEMES = (
    "silence",  # lips together, relaxed
    "bilabial",  # p b m: lips pressed shut
    "labiodental",  # f v: lower lip under the upper teeth
    "dental",  # th: tongue tip between the teeth
    "alveolar",  # t d n l s z: slightly open, teeth close together
    "postalveolar",  # sh zh ch j r: lips pushed forward
    "velar",  # k g ng h: open, set by the neighbouring vowels
    "open_vowel",  # father, cup, cat: jaw dropped
    "mid_vowel",  # bed, schwa, bird
    "spread_vowel",  # see, sit, y: lips stretched
    "round_close",  # blue, book, w: small rounded opening
    "round_open",  # thought, lot: large rounded opening
)
_ARTICULATORS = ("opening", "width", "rounding", "teeth", "tongue")
# One row per viseme, columns as _ARTICULATORS.
TARGETS = np.array(
    [
        [0.05, 0.50, 0.20, 0.00, 0.00],
        [0.00, 0.50, 0.25, 0.00, 0.00],
        [0.12, 0.55, 0.10, 1.00, 0.00],
        [0.30, 0.55, 0.10, 0.80, 1.00],
        [0.28, 0.55, 0.15, 0.70, 0.40],
        [0.30, 0.35, 0.75, 0.80, 0.20],
        [0.45, 0.50, 0.20, 0.30, 0.00],
        [1.00, 0.60, 0.10, 0.30, 0.20],
        [0.60, 0.60, 0.20, 0.40, 0.10],
        [0.35, 0.95, 0.00, 0.80, 0.00],
        [0.22, 0.20, 1.00, 0.00, 0.00],
        [0.70, 0.30, 0.80, 0.10, 0.00],
    ],
    dtype=np.float32,
)
_V = {name: i for i, name in enumerate(VISEMES)}

# espeak-ng's English phoneme mnemonics, after stripping the variant marks
# (see _base_phoneme); diphthongs map to their start and end shapes.
_PHONEME_VISEMES = {
    **dict.fromkeys(["", "_", "_:", "_!"], ("silence",)),
    **dict.fromkeys(["p", "b", "m"], ("bilabial",)),
    **dict.fromkeys(["f", "v"], ("labiodental",)),
    **dict.fromkeys(["T", "D"], ("dental",)),
    **dict.fromkeys(["t", "d", "n", "l", "s", "z", "L"], ("alveolar",)),
    **dict.fromkeys(["S", "Z", "tS", "dZ", "r"], ("postalveolar",)),
    **dict.fromkeys(["k", "g", "N", "h", "x"], ("velar",)),
    **dict.fromkeys(["a", "aa", "A", "A:", "V"], ("open_vowel",)),
    **dict.fromkeys(["E", "e", "@", "3", "3:", "@L", "@5"], ("mid_vowel",)),
    **dict.fromkeys(["i", "i:", "I", "j"], ("spread_vowel",)),
    **dict.fromkeys(["u", "u:", "U", "w"], ("round_close",)),
    **dict.fromkeys(["0", "O", "O:", "Q", "o"], ("round_open",)),
    "aI": ("open_vowel", "spread_vowel"),
    "aU": ("open_vowel", "round_close"),
    "eI": ("mid_vowel", "spread_vowel"),
    "oU": ("round_open", "round_close"),
    "OI": ("round_open", "spread_vowel"),
    "i@": ("spread_vowel", "mid_vowel"),
    "e@": ("mid_vowel", "mid_vowel"),
    "U@": ("round_close", "mid_vowel"),
    "A@": ("open_vowel", "postalveolar"),
    "O@": ("round_open", "mid_vowel"),
    "o@": ("round_open", "mid_vowel"),
    "aI@": ("open_vowel", "mid_vowel"),
    "aU@": ("open_vowel", "mid_vowel"),
}
_VOWEL_START = set("aAeEiIoOuUV03@")
_CONSONANTS = {_V[n] for n in ("bilabial", "labiodental", "dental", "alveolar", "postalveolar", "velar")}

# Lips close (or the lip meets the teeth) before the acoustic release that
# espeak's event marks, so consonant shapes last at least this long on video,
# taken from the end of the preceding phoneme.
_MIN_CONSONANT_MS = 50
# Width of the moving average that ramps linearly between targets.
_COARTICULATION_MS = 30
_CAVITY_TONE = 25  # gray level of the inside of the mouth


def _base_phoneme(name: str) -> str:
    # espeak marks variants with trailing symbols: t# (flapped), t[ (dental),
    # aI2 (Scottish), r- (syllabic), w# ; ";" alone is a short pause.
    return name.rstrip("#[-2;/")


def visemes_of(phoneme: str) -> Tuple[int, ...]:
    """An espeak phoneme mnemonic -> its viseme class indices (1, or 2 for a
    diphthong). Unknown mnemonics fall back on a mid vowel or an alveolar."""
    base = _base_phoneme(phoneme)
    names = _PHONEME_VISEMES.get(base)
    if names is None:
        names = ("mid_vowel",) if base[:1] in _VOWEL_START else ("alveolar",)
    return tuple(_V[n] for n in names)


def articulation_track(phonemes: Sequence[Tuple[str, float]], n_frames: int) -> np.ndarray:
    """Timed phonemes -> per-frame articulation values.

    Args:
        phonemes: [(espeak mnemonic, start s)], sorted; each lasts until the
            next one starts, the last one until the end of the video.
        n_frames: T, frames at 25 fps.

    Returns:
        (T, 5) float32, columns as opening, width, rounding, teeth, tongue.
    """
    frame_ms = 1000 // VIDEO_FPS
    n_ms = n_frames * frame_ms
    ms_track = np.empty((n_ms, len(_ARTICULATORS)), np.float32)
    ms_track[:] = TARGETS[_V["silence"]]
    starts = [int(round(t * 1000)) for _, t in phonemes] + [n_ms]
    for (name, _), start, end in zip(phonemes, starts[:-1], starts[1:]):
        classes = visemes_of(name)
        if len(classes) == 1 and classes[0] in _CONSONANTS:
            start = min(start, end - _MIN_CONSONANT_MS)
        bounds = np.linspace(max(start, 0), min(end, n_ms), len(classes) + 1).round().astype(int)
        for v, a, b in zip(classes, bounds[:-1], bounds[1:]):
            ms_track[a:b] = TARGETS[v]
    half = _COARTICULATION_MS // 2
    padded = np.pad(ms_track, ((half, half), (0, 0)), mode="edge")
    cumsum = np.concatenate([np.zeros((1, padded.shape[1])), np.cumsum(padded, axis=0)])
    smooth = (cumsum[2 * half + 1 :] - cumsum[: -2 * half - 1]) / (2 * half + 1)
    return smooth.reshape(n_frames, frame_ms, -1).mean(axis=1).astype(np.float32)


@dataclass(frozen=True)
class Appearance:
    """A speaker's look. Lengths are in half-frames (the frame spans -1..1),
    tones are gray levels 0..255."""

    centre_x: float
    centre_y: float
    lip_width: float  # half-width of the mouth at neutral width
    lip_thickness: float  # upper lip; the lower one is 1.3x thicker
    max_opening: float  # half-height of the cavity when fully open
    skin_tone: float
    lip_tone: float
    teeth_tone: float
    light_gradient: float  # top-to-bottom brightness change


def random_appearance(rng: np.random.Generator) -> Appearance:
    """Draws a speaker's appearance: mouth position within ~0.1 of the
    centre, lip size +-15 %, skin 110..190, lips 20..55 darker."""
    skin = rng.uniform(110, 190)
    return Appearance(
        centre_x=rng.uniform(-0.08, 0.08),
        centre_y=rng.uniform(0.0, 0.15),
        lip_width=0.55 * rng.uniform(0.85, 1.15),
        lip_thickness=0.11 * rng.uniform(0.8, 1.2),
        max_opening=0.38 * rng.uniform(0.85, 1.15),
        skin_tone=skin,
        lip_tone=skin - rng.uniform(20, 55),
        teeth_tone=rng.uniform(200, 235),
        light_gradient=rng.uniform(-25, 25),
    )


def _soft_ellipse(x, y, cx, cy, ax, ay, pixel):
    """1 inside the ellipse, 0 outside, ramping over one pixel; ellipses
    thinner than a pixel fade out instead of leaking along their axis."""
    ax, ay = np.maximum(ax, 1e-4), np.maximum(ay, 1e-4)
    u, v = (x - cx) / ax, (y - cy) / ay
    # First-order signed distance to the boundary: f / |grad f|.
    distance = (u * u + v * v - 1) / (2 * np.sqrt((u / ax) ** 2 + (v / ay) ** 2) + 1e-9)
    coverage = np.clip(2 * np.minimum(ax, ay) / pixel, 0, 1)
    return np.clip(0.5 - distance / pixel, 0, 1) * coverage


def draw_mouth(params: np.ndarray, look: Appearance, size: int, offsets: np.ndarray) -> np.ndarray:
    """Articulation values -> gray images.

    Args:
        params: (T, 5) opening, width, rounding, teeth, tongue in 0..1.
        look: the speaker's appearance.
        size: H = W in pixels.
        offsets: (T, 2) per-frame shift of the mouth (x, y) in half-frames.

    Returns:
        (T, size, size) float32 gray levels, noise-free.
    """
    pixel = 2.0 / size
    grid = (np.arange(size) + 0.5) * pixel - 1
    y, x = grid[None, :, None], grid[None, None, :]
    # Each (T, 1, 1), to broadcast over the pixels.
    opening, width, rounding, teeth, tongue = params.T[:, :, None, None]
    dx, dy = offsets.T[:, :, None, None]
    cx, cy = look.centre_x + dx, look.centre_y + dy

    # Rounding narrows the mouth and, by pushing the lips forward, shows
    # more of them.
    half_width = look.lip_width * (0.7 + 0.45 * width - 0.3 * rounding)
    upper = look.lip_thickness * (1 + 0.4 * rounding)
    lower = 1.3 * upper
    gap = look.max_opening * opening
    inner_width = half_width * (0.8 - 0.15 * rounding)

    image = look.skin_tone + look.light_gradient * y
    lips = _soft_ellipse(x, y, cx, cy + (lower - upper) / 2, half_width, gap + (upper + lower) / 2, pixel)
    image = image + lips * (look.lip_tone - image)
    # Closed lips still show a darker seam where they meet.
    seam = _soft_ellipse(x, y, cx, cy, inner_width, 0.6 * pixel, pixel) * (1 - np.minimum(opening * 6, 1))
    image = image - 25 * seam * lips
    cavity = _soft_ellipse(x, y, cx, cy, inner_width, gap, pixel)
    image = image + cavity * (_CAVITY_TONE - image)
    teeth_band = (y > cy - gap) & (y < cy - gap + 0.12 + 0.1 * (1 - opening))
    image = image + cavity * teeth_band * teeth * (look.teeth_tone - image)
    # The tongue rises from the floor of the mouth to the teeth.
    tongue_y = cy + gap * (0.7 - 0.8 * tongue)
    tongue_mask = _soft_ellipse(x, y, cx, tongue_y, 0.6 * inner_width, 0.45 * gap + 0.02, pixel)
    image = image + cavity * tongue_mask * np.maximum(tongue, 0.3) * (0.85 * look.lip_tone - image)
    return image.astype(np.float32)


def render_video(
    phonemes: Sequence[Tuple[str, float]],
    n_frames: int,
    look: Appearance,
    rng: np.random.Generator,
    size: int = VIDEO_SIZE,
    jitter_px: float = 0.5,
    noise_level: float = 3.0,
) -> np.ndarray:
    """Timed phonemes -> mouth-ROI video.

    Args:
        phonemes: [(espeak mnemonic, start s)], sorted.
        n_frames: T at 25 fps.
        look: the speaker's appearance.
        rng: draws the crop jitter (std ``jitter_px`` pixels, clipped to
            1.5 px) and the pixel noise (std ``noise_level`` gray levels).
        size: H = W in pixels (32 for CPU runs, 88 for LRS3-sized crops).

    Returns:
        (T, size, size) uint8.
    """
    params = articulation_track(phonemes, n_frames)
    offsets = np.clip(rng.normal(0, jitter_px, (n_frames, 2)), -1.5, 1.5) * (2.0 / size)
    frames = draw_mouth(params, look, size, offsets)
    frames += rng.normal(0, noise_level, frames.shape)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)
