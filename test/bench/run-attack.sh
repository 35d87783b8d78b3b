#!/usr/bin/env bash
# run-attack.sh [SERVER_BIN [SERVER_ARGS...]]
#
# Hostile peers against troupe-echo (line codec) on loopback, one attack at
# a time, each against a fresh server: troupe-attack prints, once a second,
# how many attackers are still connected, the server's RSS and a normal
# client's round trip; this script keeps each attack's RESULT line.
#
#   test/bench/run-attack.sh build/demo/troupe-echo
#   test/bench/run-attack.sh build/demo/troupe-echo --memory-budget 0 --frame-timeout 0
#
# Attacks (docs/benchmarks.md, "Under attack"):
#   partial    PARTIAL_CONNS [2000] connections x PARTIAL_BYTES [600000] of a
#              line that never ends, for PARTIAL_SECONDS [20]
#   slowloris  SLOW_CONNS [500] connections, one byte every SLOW_INTERVAL [5]
#              s, with --idle-timeout 10, for SLOW_SECONDS [40]
#   noread     NOREAD_CONNS [500] connections sending 4 KiB lines, never
#              reading, for NOREAD_SECONDS [20]
# ATTACKS ["partial slowloris noread"] picks some. Server: WORKERS [2].
# BENCH_BIN_DIR holds troupe-attack [build/test/bench].
# Output: the RESULT line of each attack, prefixed with "ATTACK".

set -euo pipefail

SERVER_BIN=${1:-build/demo/troupe-echo}
shift || true
EXTRA=("$@")
BIN=${BENCH_BIN_DIR:-build/test/bench}
ATTACKS=${ATTACKS:-"partial slowloris noread"}
WORKERS=${WORKERS:-2}
ulimit -n "$(ulimit -Hn)"

run_one() { # name idle_s attack-args...
    local name=$1 idle=$2
    shift 2
    local out port pid
    out=$(mktemp)
    "$SERVER_BIN" --listen 127.0.0.1:0 --codec line --workers "$WORKERS" \
        --idle-timeout "$idle" "${EXTRA[@]}" >"$out" 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do
        grep -q "listening on" "$out" && break
        sleep 0.1
    done
    port=$(sed -n 's/^listening on [^:]*:\([0-9]*\).*/\1/p' "$out")
    "$BIN/troupe-attack" --connect "127.0.0.1:$port" --server-pid "$pid" "$@" |
        tee /dev/stderr | sed -n 's/^RESULT/ATTACK/p'
    kill -TERM "$pid"
    wait "$pid" || true
    grep "^stopped" "$out" >&2 || true
    rm -f "$out"
}

for a in $ATTACKS; do
    case $a in
    partial)
        run_one partial 30 --mode partial --conns "${PARTIAL_CONNS:-2000}" \
            --bytes "${PARTIAL_BYTES:-600000}" --duration "${PARTIAL_SECONDS:-20}" ;;
    slowloris)
        run_one slowloris 10 --mode slowloris --conns "${SLOW_CONNS:-500}" \
            --interval "${SLOW_INTERVAL:-5}" --duration "${SLOW_SECONDS:-40}" ;;
    noread)
        run_one noread 30 --mode noread --conns "${NOREAD_CONNS:-500}" \
            --duration "${NOREAD_SECONDS:-20}" ;;
    *) echo "unknown attack $a" >&2; exit 2 ;;
    esac
done
