#!/usr/bin/env bash
# Is the suite green under load, every time? Runs the non-browser suite N times (default 10)
# and the browser suite B times (default 3), each with two CPU-bound busy loops running
# beside it, and prints "N/N green" for each. A round is green when pytest passes and the
# process ends within 5 s of pytest's summary line. The busy loops end with this script
# (Ctrl-C included). Logs of rounds that were not green stay in $STRESS_LOG_DIR.
#
#   scripts/stress_suite.sh [N [B]]        e.g. scripts/stress_suite.sh 3 1
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-10}"
BROWSER_ROUNDS="${2:-3}"
PY="${QAUDIO_VENV:-.venv}/bin/python"
LOGS="${STRESS_LOG_DIR:-${TMPDIR:-/tmp}/qaudio-stress}"
MAX_EXIT_GAP=5
mkdir -p "$LOGS"

BUSY=()
stop_busy() {
    local pid
    for pid in "${BUSY[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${BUSY[@]}"; do
        wait "$pid" 2>/dev/null
    done
    BUSY=()
}
trap stop_busy EXIT
trap 'exit 130' INT TERM
for _ in 1 2; do
    python3 -c "while True: pass" &
    BUSY+=($!)
done
echo "stress: busy loops ${BUSY[*]} beside the suite ($(nproc) CPUs)"

# round LABEL I N ARGS...: one pytest run; prints its line, returns 0 when green
round() {
    local label=$1 i=$2 n=$3
    shift 3
    local log="$LOGS/$label-$i.log" start summary_at="" line
    start=$(date +%s.%N)
    while IFS= read -r line; do
        printf '%s\n' "$line" >>"$log"
        if [[ "$line" =~ (passed|failed|error|skipped|no\ tests\ ran).*\ in\ [0-9.]+s ]]; then
            summary_at=$(date +%s.%N)
            summary=$line
        fi
    done < <("$PY" -m pytest "$@" -q -p no:cacheprovider 2>&1; echo "exit $?")
    local end rc
    end=$(date +%s.%N)
    rc=$(tail -1 "$log" | sed -n 's/^exit //p')
    local gap wall verdict="green"
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    if [ -n "$summary_at" ]; then
        gap=$(awk -v a="$summary_at" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    else
        gap="?"
        summary="(no summary line)"
    fi
    if [ "$rc" != "0" ]; then
        verdict="RED"
    elif [ "$gap" = "?" ] || awk -v g="$gap" -v m="$MAX_EXIT_GAP" 'BEGIN { exit !(g > m) }'; then
        verdict="RED (slow exit)"
    fi
    echo "stress: $label round $i/$n: $verdict — ${summary#"${summary%%[![:space:]=]*}"}, ${wall}s, exit ${gap}s after the summary"
    if [ "$verdict" = "green" ]; then
        rm -f "$log"
        return 0
    fi
    grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/stress:   /'
    echo "stress:   log: $log"
    return 1
}

green=0
for i in $(seq 1 "$ROUNDS"); do
    round suite "$i" "$ROUNDS" tests --ignore=tests/e2e && green=$((green + 1))
done
browser_green=0
for i in $(seq 1 "$BROWSER_ROUNDS"); do
    round browser "$i" "$BROWSER_ROUNDS" tests/e2e && browser_green=$((browser_green + 1))
done
echo "stress: non-browser suite $green/$ROUNDS green"
echo "stress: browser suite $browser_green/$BROWSER_ROUNDS green"
[ "$green" -eq "$ROUNDS" ] && [ "$browser_green" -eq "$BROWSER_ROUNDS" ]
