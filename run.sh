#!/usr/bin/env bash
# The two set-up commands of the README:
#   ./run.sh quickstart   run notebooks/quickstart.ipynb (emulator when DASHSCOPE_API_KEY is unset)
#   ./run.sh test         install everything (Chromium included) and run the whole test suite
# Both work on a fresh Debian machine with python3; `test` installs apt packages as root.
#
# `test` prints one line per stage with its duration, goes on to the browser tests and the
# quick benchmark after a failed stage, and exits non-zero naming every stage that failed.
# `./run.sh test ARGS` runs pytest with ARGS instead of the stages after the installs.
# QAUDIO_LOCAL=0 ./run.sh test   skips torch and transformers (the local-backend tests skip).
set -uo pipefail
cd "$(dirname "$0")"
VENV="${QAUDIO_VENV:-.venv}"
PY="$VENV/bin/python"
TORCH="2.13.0"                               # the version the local backend is tested with
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"
LOG_DIR="${QAUDIO_LOG_DIR:-${TMPDIR:-/tmp}/qaudio-run}"
FAILED=()

venv() {
    [ -x "$PY" ] || python3 -m venv "$VENV" || return 1
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
}

apt_packages() {  # chromium: browser tests; ffmpeg: the CLI the preparation benchmark compares against
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
    if [ ${#missing[@]} -eq 0 ]; then
        STAGE_NOTE="chromium and ffmpeg present"
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            STAGE_NOTE="need root to install ${missing[*]}: browser tests will skip"
            return 0
        fi
        sudo="sudo"
    fi
    $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null || return 1
    STAGE_NOTE="installed ${missing[*]}"
}

reachable() {  # reachable URL: an answer within 10 s (no proxy guessing, no retries)
    "$PY" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=10).close()
EOF
}

torch() {
    # PyPI's Linux wheels of torch are CUDA builds: ~530 MB plus ~17 nvidia packages, about
    # 3 GB in all. The CPU build (~190 MB, ~750 MB installed) is all the local-backend tests
    # need; it lives on PyTorch's own index, or in a local wheel directory or mirror.
    if [ "${QAUDIO_LOCAL:-1}" = "0" ]; then
        STAGE_NOTE="skipped (QAUDIO_LOCAL=0): the local-backend tests will skip"
        return 0
    fi
    local have
    if have=$("$PY" -c "import importlib.metadata as m; print(m.version('torch'))" 2>/dev/null); then
        STAGE_NOTE="torch $have already installed"
        return 0
    fi
    if reachable "$TORCH_CPU_INDEX/torch/"; then
        "$PY" -m pip install -q "torch==$TORCH+cpu" --index-url "$TORCH_CPU_INDEX" || return 1
        STAGE_NOTE="torch $TORCH+cpu from $TORCH_CPU_INDEX (CPU only, ~190 MB)"
    elif "$PY" -m pip install -q "torch==$TORCH+cpu" 2>/dev/null; then
        STAGE_NOTE="torch $TORCH+cpu from pip's configured sources ($TORCH_CPU_INDEX unreachable)"
    else
        echo "run.sh: no CPU-only torch here: $TORCH_CPU_INDEX is unreachable and pip's" \
            "configured sources have no torch==$TORCH+cpu. Installing torch==$TORCH from PyPI:" \
            "the CUDA build, ~530 MB plus ~17 nvidia packages (~3 GB). QAUDIO_LOCAL=0 skips it." >&2
        "$PY" -m pip install -q "torch==$TORCH" || return 1
        STAGE_NOTE="torch $TORCH from PyPI (CUDA build: no CPU-only source reachable)"
    fi
}

installs() {
    local extras="test,bench,dev"
    [ "${QAUDIO_LOCAL:-1}" = "0" ] || extras="local,$extras"
    "$PY" -m pip install -q -e ".[$extras]" || return 1
    STAGE_NOTE="qaudio_magic[$extras] (editable)"
}

pytest_stage() {  # pytest_stage ARGS...: the summary line is the note
    local log="$LOG_DIR/pytest-$STAGE_SLUG.log"
    "$PY" -m pytest "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    STAGE_NOTE=$(grep -E '(passed|failed|errors?|skipped|no tests ran).* in [0-9.]+s' "$log" |
        tail -1 | sed -E 's/^=+ //; s/ =+$//')
    # rc 5: nothing collected (e.g. -k matched nothing here): not a failure of the suite
    [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]
}

# stage NAME COMMAND...: run it, then print "==> NAME: ok|FAILED in Ns (note)"
stage() {
    local name=$1
    shift
    STAGE_NOTE=""
    STAGE_SLUG=${name// /-}
    echo "==> $name..."
    local start=$SECONDS rc=0
    "$@" || rc=$?
    local took=$((SECONDS - start)) verdict="ok"
    if [ "$rc" -ne 0 ]; then
        verdict="FAILED (exit $rc)"
        FAILED+=("$name")
    fi
    STAGE_LINES+=("$(printf '%-14s %-18s %4ds  %s' "$name" "$verdict" "$took" "$STAGE_NOTE")")
    echo "==> $name: $verdict in ${took}s${STAGE_NOTE:+ ($STAGE_NOTE)}"
    return "$rc"
}

summary() {
    echo
    echo "run.sh test: stage          result             time  note"
    for line in "${STAGE_LINES[@]}"; do
        echo "run.sh test: $line"
    done
    if [ ${#FAILED[@]} -eq 0 ]; then
        echo "run.sh test: all stages passed in ${SECONDS}s"
        return 0
    fi
    echo "run.sh test: FAILED: ${FAILED[*]} (logs in $LOG_DIR)"
    return 1
}

case "${1:-}" in
    quickstart)
        set -e
        venv
        "$PY" -m pip install -q -e ".[notebook]"
        exec "$PY" scripts/run_notebook.py notebooks/quickstart.ipynb
        ;;
    test)
        shift
        mkdir -p "$LOG_DIR"
        STAGE_LINES=()
        stage apt apt_packages
        # without a Python environment nothing below can run: stop here
        stage venv venv || { summary; exit 1; }
        stage torch torch
        stage installs installs || { summary; exit 1; }
        if [ $# -gt 0 ]; then
            stage pytest pytest_stage "$@"
        else
            stage ruff "$PY" -m ruff check qaudio_magic tests bench scripts
            stage mypy "$PY" -m mypy qaudio_magic
            # Browser tests in their own process: Playwright's sync API keeps an event loop
            # registered in the main thread for as long as its browser lives.
            stage tests pytest_stage tests --ignore=tests/e2e
            stage "browser tests" pytest_stage tests/e2e
            stage bench "$PY" bench/run.py --quick
        fi
        summary
        ;;
    *)
        echo "usage: ./run.sh quickstart | ./run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
