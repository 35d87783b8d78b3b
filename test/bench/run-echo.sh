#!/usr/bin/env bash
# run-echo.sh SERVER_CMD...
#
# Echo comparison: runs ref-echo and the server given on the command line
# (troupe-echo) under the same troupe-load runs, interleaved (ref, server,
# ref, server, ...), and prints medians and the ratios server/ref.
#
#   test/bench/run-echo.sh build/demo/troupe-echo --workers 1
#
# The server command gets "--listen 127.0.0.1:0 --codec $CODEC" appended and
# must print a line "listening on HOST:PORT"; SIGTERM must stop it. Servers
# run pinned to CPU $SERVER_CPU, the load to CPU $LOAD_CPU (taskset).
#
# Scenarios: 64-byte echo at 100 and 1,000 connections, 4 KiB at 100
# connections, pipeline 1, $ROUNDS rounds each; then RSS per idle connection
# with $HOLD_CONNS held connections (VmRSS before and after, divided by N).
#
# Environment (defaults in brackets):
#   BENCH_BIN_DIR  directory holding ref-echo and troupe-load [build/test/bench,
#                  or the first build*/test/bench that has them]
#   CODEC [length]  DURATION [5]  WARMUP [1]  ROUNDS [3]  LOAD_THREADS [1]
#   SCENARIOS ["64:100 64:1000 4096:100"] (SIZE:CONNS)  HOLD_CONNS [10000]
#   HOLD_SECONDS [3]  SERVER_CPU [0]  LOAD_CPU [1]  SKIP_HOLD [0]
#   QUIET_WAIT [0]  before each round, wait up to this many seconds for the
#                  machine to be under 15% busy (shared VMs: other people's
#                  jobs skew both servers; each run reports their share)
#
# Output: one line per scenario, then "RESULT bench=echo ..." (last line).
# Exit status 0 if every load run reported errors=0, else 1.

set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
SERVER_CMD=("$@")

CODEC=${CODEC:-length}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
LOAD_THREADS=${LOAD_THREADS:-1}
SCENARIOS=${SCENARIOS:-"64:100 64:1000 4096:100"}
HOLD_CONNS=${HOLD_CONNS:-10000}
HOLD_SECONDS=${HOLD_SECONDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_HOLD=${SKIP_HOLD:-0}
QUIET_WAIT=${QUIET_WAIT:-0}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BENCH_NAME=run-echo.sh
# shellcheck source=test/bench/bench-lib.sh
. "$here/bench-lib.sh"
if [[ -z ${BENCH_BIN_DIR:-} ]]; then
    for d in "$repo/build/test/bench" "$repo"/build*/test/bench; do
        if [[ -x $d/ref-echo && -x $d/troupe-load ]]; then
            BENCH_BIN_DIR=$d
            break
        fi
    done
fi
REF_ECHO=${BENCH_BIN_DIR:-}/ref-echo
LOAD=${BENCH_BIN_DIR:-}/troupe-load
if [[ ! -x $REF_ECHO || ! -x $LOAD ]]; then
    echo "run-echo.sh: ref-echo and troupe-load not found; build them and set BENCH_BIN_DIR" >&2
    exit 2
fi

tmp=$(mktemp -d /tmp/run-echo.XXXXXX)
server_pid=
errors=0
clk_tck=$(getconf CLK_TCK)

cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server ref|troupe LOG: starts the server pinned, sets server_pid and
# server_addr.
start_server() {
    local which=$1 log=$2
    local -a cmd
    if [[ $which == ref ]]; then
        cmd=("$REF_ECHO")
    else
        cmd=("${SERVER_CMD[@]}")
    fi
    taskset -c "$SERVER_CPU" "${cmd[@]}" --listen 127.0.0.1:0 --codec "$CODEC" >"$log" 2>&1 &
    server_pid=$!
    server_wait_addr "$log" 's/.*listening on \([^ ]*\).*/\1/p' "$which"
}

# Machine-wide CPU ticks summed over all CPUs (/proc/stat): "busy total".
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat
}

# wait_quiet: waits up to QUIET_WAIT seconds for a second under 15% busy.
wait_quiet() {
    local end=$((SECONDS + QUIET_WAIT)) m0 m1 busy
    while ((SECONDS < end)); do
        m0=$(machine_ticks)
        sleep 1
        m1=$(machine_ticks)
        busy=$(awk -v m0="$m0" -v m1="$m1" 'BEGIN {
            split(m0, a, " "); split(m1, b, " ")
            printf "%d", (b[2] > a[2] ? 100 * (b[1] - a[1]) / (b[2] - a[2]) : 0) }')
        ((busy < 15)) && return 0
    done
    if ((QUIET_WAIT > 0)); then
        echo "run-echo.sh: machine still busy after ${QUIET_WAIT}s; going on" >&2
    fi
}

# run_echo ref|troupe SIZE CONNS ROUND: one load run; sets out_rps, out_p99 (us),
# out_cpu (server CPU us per request, warm-up included; user + system time
# charged to the process, so not all of the softirq time of the TCP receive
# path, which is the same for both servers), out_lc (loader CPU %), out_sw
# and out_lw (% of the run the server / the loader spent runnable but
# waiting for its CPU: other people's jobs on a shared VM; ~0 when quiet).
# Runs in this shell (not $(...)) so errors and server_pid stick.
run_echo() {
    local which=$1 size=$2 conns=$3 round=$4
    local log=$tmp/$which-$size-$conns-r$round-server.log out=$tmp/$which-$size-$conns-r$round-load.out
    start_server "$which" "$log"
    local t0 t1 w0 w1 ns0 ns1 rc=0
    ns0=$(date +%s%N)
    w0=$(runq_wait_ns "$server_pid")
    t0=$(cpu_ticks "$server_pid")
    taskset -c "$LOAD_CPU" "$LOAD" echo --connect "$server_addr" -c "$conns" -s "$size" -p 1 \
        -d "$DURATION" --warmup "$WARMUP" --codec "$CODEC" --threads "$LOAD_THREADS" \
        >"$out" 2>&1 || rc=$?
    t1=$(cpu_ticks "$server_pid")
    w1=$(runq_wait_ns "$server_pid")
    ns1=$(date +%s%N)
    stop_server
    local res
    res=$(grep '^RESULT' "$out" | tail -n 1 || true)
    if [[ $rc -ne 0 || -z $res || $(field errors "$res") != 0 ]]; then
        echo "run-echo.sh: $which ${size}B x $conns: load failed (exit $rc); see $out" >&2
        tail -n 5 "$out" >&2
        errors=$((errors + 1))
    fi
    local total
    total=$(field total_requests "$res")
    out_rps=$(field req_per_s "$res")
    out_p99=$(field p99_us "$res")
    out_lc=$(field loader_cpu_pct "$res")
    out_cpu=$(awk -v ticks=$((t1 - t0)) -v hz="$clk_tck" -v n="${total:-0}" \
        'BEGIN { printf "%.2f", (n > 0 ? ticks / hz / n * 1e6 : 0) }')
    out_sw=$(awk -v w=$((w1 - w0)) -v t=$((ns1 - ns0)) 'BEGIN { printf "%.1f", (t > 0 ? 100 * w / t : 0) }')
    out_lw=$(field loader_wait_pct "$res")
    out_lw=${out_lw:-0}
    out_rps=${out_rps:-0} out_p99=${out_p99:-0} out_lc=${out_lc:-0}
}

# run_hold ref|troupe: sets out_bpc (server RSS bytes per held connection),
# out_rss0 and out_rss1 (VmRSS kB before and while holding).
run_hold() {
    local which=$1
    local log=$tmp/$which-hold-server.log out=$tmp/$which-hold-load.out
    start_server "$which" "$log"
    sleep 0.3
    local rss0 fd0 rss1 nfd i rc=0
    rss0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")
    # shellcheck disable=SC2012 # fd names are numbers
    fd0=$(ls "/proc/$server_pid/fd" | wc -l)
    taskset -c "$LOAD_CPU" "$LOAD" hold --connect "$server_addr" -c "$HOLD_CONNS" \
        -d "$HOLD_SECONDS" --verify --codec "$CODEC" >"$out" 2>&1 &
    local load_pid=$!
    # Count the server's fds: every held connection is accepted and set up.
    for ((i = 0; i < 300; i++)); do
        # shellcheck disable=SC2012
        nfd=$(ls "/proc/$server_pid/fd" | wc -l)
        ((nfd >= fd0 + HOLD_CONNS)) && break
        kill -0 "$load_pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 0.5
    rss1=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")
    wait "$load_pid" || rc=$?
    stop_server
    local res
    res=$(grep '^RESULT' "$out" | tail -n 1 || true)
    if [[ $rc -ne 0 || -z $res || $(field errors "$res") != 0 || $nfd -lt $((fd0 + HOLD_CONNS)) ]]; then
        echo "run-echo.sh: $which hold: failed (exit $rc, server fds $nfd); see $out" >&2
        tail -n 3 "$out" >&2
        errors=$((errors + 1))
    fi
    out_bpc=$(awk -v a="$rss0" -v b="$rss1" -v n="$HOLD_CONNS" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
    out_rss0=$rss0 out_rss1=$rss1
}

echo "run-echo: server '${SERVER_CMD[*]}' vs ref-echo; codec $CODEC, ${DURATION}s (+${WARMUP}s warm-up)" \
    "x $ROUNDS rounds, servers on CPU $SERVER_CPU, load on CPU $LOAD_CPU; logs in $tmp"
summary="RESULT bench=echo codec=$CODEC rounds=$ROUNDS duration_s=$DURATION"
max_wait=0
for sc in $SCENARIOS; do
    size=${sc%%:*}
    conns=${sc##*:}
    declare -a ref_rps=() ref_p99=() ref_cpu=() tr_rps=() tr_p99=() tr_cpu=()
    max_lc=0
    for ((r = 1; r <= ROUNDS; r++)); do
        wait_quiet
        for which in ref troupe; do
            run_echo "$which" "$size" "$conns" "$r"
            rps=$out_rps p99=$out_p99 cpu=$out_cpu lc=$out_lc
            echo "  round $r $which ${size}B x $conns: req/s $rps p99 ${p99}us server ${cpu}us CPU/req loader ${lc}% CPU; waited for a CPU: server ${out_sw}% loader ${out_lw}%"
            max_wait=$(awk -v a="$max_wait" -v b="$out_sw" -v c="$out_lw" 'BEGIN {
                m = a; if (b > m) m = b; if (c > m) m = c; print m }')
            if [[ $which == ref ]]; then
                ref_rps+=("$rps") ref_p99+=("$p99") ref_cpu+=("$cpu")
            else
                tr_rps+=("$rps") tr_p99+=("$p99") tr_cpu+=("$cpu")
            fi
            ((lc > max_lc)) && max_lc=$lc
        done
    done
    m_ref_rps=$(median "${ref_rps[@]}") m_tr_rps=$(median "${tr_rps[@]}")
    m_ref_p99=$(median "${ref_p99[@]}") m_tr_p99=$(median "${tr_p99[@]}")
    m_ref_cpu=$(median "${ref_cpu[@]}") m_tr_cpu=$(median "${tr_cpu[@]}")
    r_rps=$(ratio "$m_tr_rps" "$m_ref_rps")
    r_p99=$(ratio "$m_tr_p99" "$m_ref_p99")
    r_cpu=$(ratio "$m_tr_cpu" "$m_ref_cpu")
    printf 'echo %5sB x %4s conns: req/s ref %s troupe %s ratio %s | p99 us ref %s troupe %s ratio %s | server CPU us/req ref %s troupe %s ratio %s | loader max %s%% CPU\n' \
        "$size" "$conns" "$m_ref_rps" "$m_tr_rps" "$r_rps" "$m_ref_p99" "$m_tr_p99" "$r_p99" \
        "$m_ref_cpu" "$m_tr_cpu" "$r_cpu" "$max_lc"
    k="s${size}_c${conns}"
    summary+=" ${k}_ref_rps=$m_ref_rps ${k}_troupe_rps=$m_tr_rps ${k}_rps_ratio=$r_rps"
    summary+=" ${k}_ref_p99_us=$m_ref_p99 ${k}_troupe_p99_us=$m_tr_p99 ${k}_p99_ratio=$r_p99"
    summary+=" ${k}_cpu_ratio=$r_cpu"
done

if [[ $SKIP_HOLD != 1 ]]; then
    wait_quiet
    run_hold ref
    ref_bpc=$out_bpc ref_a=$out_rss0 ref_b=$out_rss1
    run_hold troupe
    tr_bpc=$out_bpc tr_a=$out_rss0 tr_b=$out_rss1
    printf 'hold %d idle conns: server RSS per conn ref %s B (%s -> %s kB) troupe %s B (%s -> %s kB)\n' \
        "$HOLD_CONNS" "$ref_bpc" "$ref_a" "$ref_b" "$tr_bpc" "$tr_a" "$tr_b"
    summary+=" hold_conns=$HOLD_CONNS hold_ref_bytes_per_conn=$ref_bpc hold_troupe_bytes_per_conn=$tr_bpc"
fi
if awk -v m="$max_wait" 'BEGIN { exit !(m > 5) }'; then
    echo "run-echo.sh: warning: a server or the loader waited for its CPU up to ${max_wait}% of a run" \
        "(other jobs on the machine); these numbers are disturbed: rerun when it is quiet" >&2
fi
echo "$summary max_cpu_wait_pct=$max_wait errors=$errors"
[[ $errors -eq 0 ]]
