"""espnet-mtsk: Matryoshka multimodal LLMs for adaptive AVSR, as an ESPnet2 plugin."""

__version__ = "0.1.0"
