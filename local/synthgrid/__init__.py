"""SynthGRID: a small synthetic audio-visual corpus of GRID sentences.

- :mod:`.grammar`: the sentences, their transcripts and espeak texts;
- :mod:`.espeak` / :mod:`.espeak_server`: espeak-ng over ctypes -> 16 kHz
  speech and phoneme start times;
- :mod:`.speakers`: voices, rates, pitches and mouth looks from the seed;
- :mod:`.render`: phonemes -> visemes -> mouth-ROI frames at 25 fps;
- :mod:`.noise`: babble of held-out voices, mixing at an SNR;
- :mod:`.files`, :mod:`.seeding`: atomic writes, order-free random streams;
- :mod:`.prepare`: the corpus and its Kaldi-style data dirs (the CLI).
"""
