"""Audio and video encoders (ESPnet AbsEncoder subclasses)."""
