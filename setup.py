"""espnet-mtsk: Matryoshka multimodal LLMs for adaptive AVSR as an ESPnet2 plugin."""

from setuptools import find_packages, setup

setup(
    name="espnet_mtsk",
    version="0.1.0",
    description="Llama-MTSK (Matryoshka audio-visual LLM) for ESPnet2",
    packages=find_packages(include=["espnet_mtsk", "espnet_mtsk.*"]),
    python_requires=">=3.10",
    install_requires=[
        # Upper bounds at the next major release, which nothing here is tested on.
        "torch>=2.6,<3",  # safe_globals' (object, "name") pairs for weights_only checkpoint loading
        "torchaudio>=2.6,<3",  # as torch: each release pins its torch
        "espnet==202511",  # the trainer and task internals subclassed here change between releases
        "espnet_model_zoo",
        "peft>=0.21,<1",
        "transformers>=5.24,<6",  # generate(cache=...), as in the 5.24 tested
        "sentencepiece",
        "jiwer",
        "av",
        "numpy",
        "soundfile",
        "matplotlib",
        "tensorboard",
        "tqdm",
        # Mouth crops: scikit-image's SimilarityTransform.from_estimate is new in 0.26;
        # mediapipe itself goes in with --no-deps (tools/install.sh: its metadata
        # pins numpy<2 and protobuf<5, which the rest of the stack outgrew).
        "scikit-image>=0.26,<1",
        "opencv-python-headless>=4.8,<5",
        # Long-form transcription: Silero VAD's model ships in its wheel (offline);
        # get_speech_timestamps' max_speech_duration_s splitting as in 5.1+.
        "silero-vad>=5.1,<7",
        "pysubs2>=1.6,<2",  # SRT and WebVTT writing (format_="vtt")
        # The per-utterance policy: its fitted condition estimate (a pipeline
        # of StandardScaler, PCA and LogisticRegression folded into one affine
        # map) and the softmax that applies it.
        "scikit-learn>=1.3,<2",
        "scipy",
    ],
    extras_require={"test": ["pytest"]},
)
