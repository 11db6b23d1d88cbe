#!/usr/bin/env bash
# The two set-up commands of the README:
#   ./run.sh quickstart   run notebooks/quickstart.ipynb (emulator when DASHSCOPE_API_KEY is unset)
#   ./run.sh test         install everything (Chromium included) and run the whole test suite
# Both work on a fresh Debian machine with python3; `test` installs apt packages as root.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${QAUDIO_VENV:-.venv}"
PY="$VENV/bin/python"

venv() {
    [ -x "$PY" ] || python3 -m venv "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
}

apt_packages() {  # chromium: browser tests; ffmpeg: the CLI the preparation benchmark compares against
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "run.sh: need root to install ${missing[*]}; browser tests will skip" >&2; return 0; }
        sudo="sudo"
    fi
    echo "run.sh: installing ${missing[*]} (Debian packages)..."
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

case "${1:-}" in
    quickstart)
        venv
        "$PY" -m pip install -q -e ".[notebook]"
        exec "$PY" scripts/run_notebook.py notebooks/quickstart.ipynb
        ;;
    test)
        apt_packages
        venv
        # The CPU build of torch first: a bare `torch` requirement would pull GBs of CUDA wheels.
        "$PY" -m pip install -q "torch==2.13.0"
        "$PY" -m pip install -q -e ".[local,test,bench,dev]"
        shift
        if [ $# -gt 0 ]; then
            "$PY" -m pytest "$@"
        else
            "$PY" -m ruff check qaudio_magic tests bench scripts
            "$PY" -m mypy qaudio_magic
            # Browser tests in their own process: Playwright's sync API keeps an event loop
            # registered in the main thread for as long as its browser lives.
            "$PY" -m pytest tests --ignore=tests/e2e
            "$PY" -m pytest tests/e2e
        fi
        "$PY" bench/run.py --quick
        ;;
    *)
        echo "usage: ./run.sh quickstart | ./run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
