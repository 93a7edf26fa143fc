"""Decoding: a trained model as a transcriber.

``avsr2text.AVSR2Text`` decodes batches at a scale, at the scale a budget
allows (``budget``) or at scales the fitted per-utterance policy chooses
(``policy``); ``longform`` transcribes files of any length through the
voice activity detector (``vad``) and the mouth tracker, and ``subtitles``
writes what it finds.
"""
