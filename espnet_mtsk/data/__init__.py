"""Data I/O: the video and encoded data types, noise mixing, per-utterance preprocessing, mouth ROI."""
