# Sourced by every recipe (a symlink in egs2/*/avsr1): the project's venv.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
if [ -e "${MAIN_ROOT}/tools/venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${MAIN_ROOT}/tools/venv/bin/activate"
fi
# The repository's top-level local/ (recipe tooling shared by the recipes).
export PYTHONPATH=${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}
export PYTHONUNBUFFERED=1
