"""Reporting: what decodings measure. ``scoring`` (sclite's counts, the
per-scale RESULTS tables), ``policy_scoring`` (the policy's operating
points), ``cost`` (tokens and time per scale), ``baselines`` (ESPnet's
models beside the Matryoshka one) and ``plot`` (WER against tokens)."""
