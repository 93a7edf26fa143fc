"""espnet-mtsk: Matryoshka multimodal LLMs for adaptive AVSR as an ESPnet2 plugin."""

from setuptools import find_packages, setup

setup(
    name="espnet_mtsk",
    version="0.1.0",
    description="Llama-MTSK (Matryoshka audio-visual LLM) for ESPnet2",
    packages=find_packages(include=["espnet_mtsk", "espnet_mtsk.*"]),
    python_requires=">=3.10",
    install_requires=[
        "espnet==202511",
        "espnet_model_zoo",
        "peft>=0.21",
        "transformers>=5.24,<6",  # generate(cache=...), as in the 5.24 tested
        "sentencepiece",
        "jiwer",
        "av",
        "matplotlib",
        "tensorboard",
    ],
    extras_require={"test": ["pytest"]},
)
