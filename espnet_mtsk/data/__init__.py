"""Data I/O: the video data type, per-utterance preprocessing, corpora."""
