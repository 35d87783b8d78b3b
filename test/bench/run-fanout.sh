#!/usr/bin/env bash
# run-fanout.sh
#
# Chat fan-out: troupe-chat against ref-broadcast (the minimal epoll loop)
# and redis-server pub/sub, all under the same troupe-fanout load, in one
# invocation, interleaved run by run (the first server of a round rotates,
# so none always runs first). For each scenario and each worker count W:
# troupe-chat --workers W, ref-broadcast --threads W, redis-server (one
# thread whatever W is; REDIS_IO_THREADS adds its write threads). Prints
# per-run lines, then per scenario and W a table of medians (p50, p99, max,
# deliveries/s, lost) and the p99 ratios troupe/ref and troupe/redis (of the
# medians, and round by round), then one RESULT line.
#
#   test/bench/run-fanout.sh
#   SCENARIOS=1x1000@1 WORKERS=2 ROUNDS=5 test/bench/run-fanout.sh
#
# A scenario is CHANNELSxUSERS@RATE: R channels of U users, each user
# sending RATE lines a second. troupe-chat runs with --http-listen off and
# limits raised so the load is never flood-kicked or over its send queue
# (--flood 1000:1000, --sendq 4 MiB, ref-broadcast's output bound). Servers
# and loader are not pinned (W=2 needs both cores). On a shared machine run
# it under the lock the others use (flock), one scenario and W at a time.
#
# Environment (defaults in brackets):
#   SCENARIOS ["1x1000@1 1x2000@0.5"]  WORKERS ["1 2"]  ROUNDS [3]
#   DURATION [8]  WARMUP [2]  (seconds, troupe-fanout's measured window)
#   LOADER_THREADS [1]  troupe-fanout --threads
#   BUSY [0]       1: a busy loop (sh -c 'while :; do :; done', unpinned)
#                  runs beside every run, as run-transports.sh NOISY=1 does
#   BENCH_BIN_DIR  [build-rel/test/bench]  holds troupe-fanout, ref-broadcast
#   TROUPE_CHAT    [build-rel/demo/troupe-chat]
#   REDIS_SERVER   [redis-server]  skipped, with a line saying so, if absent
#   REDIS_IO_THREADS [1]  >1 passes --io-threads N to redis-server
#   QUIET_WAIT [0] before each run, wait up to this many seconds for a
#                  second in which other processes use under 10% of the
#                  machine (shared machines; as run-echo.sh QUIET_WAIT)
#
# Everything below is over the loader's measured window (DURATION s;
# warm-up, setup and the stragglers' wait left out). CPU: user + system
# time as % of one core, the server's and the loader's (troupe-fanout
# loader_cpu_pct: near 100 per loader thread means the loader is
# saturated, and the latencies are partly its own queue); "waited for a
# CPU": % of the window runnable but without one, summed over threads
# (schedstat; with W=2 the server and the loader crowd each other on a
# 2-core machine). "others":
# CPU that other processes (not the server, the loader, this script or
# BUSY) used, as % of the machine: other people's jobs; more than a few %
# means the run was disturbed. "lost": lines not received by the end of
# the loader's 3 s wait for stragglers (late or never).
# Exit status 0 if every load run reported lost=0 and errors=0, else 1.

set -euo pipefail

SCENARIOS=${SCENARIOS:-"1x1000@1 1x2000@0.5"}
WORKERS=${WORKERS:-"1 2"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
LOADER_THREADS=${LOADER_THREADS:-1}
BUSY=${BUSY:-0}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_IO_THREADS=${REDIS_IO_THREADS:-1}
QUIET_WAIT=${QUIET_WAIT:-0}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BENCH_NAME=run-fanout.sh
# shellcheck source=test/bench/bench-lib.sh
. "$here/bench-lib.sh"
BENCH_BIN_DIR=${BENCH_BIN_DIR:-$repo/build-rel/test/bench}
TROUPE_CHAT=${TROUPE_CHAT:-$repo/build-rel/demo/troupe-chat}
LOAD=$BENCH_BIN_DIR/troupe-fanout
REF=$BENCH_BIN_DIR/ref-broadcast
for b in "$LOAD" "$REF" "$TROUPE_CHAT"; do
    if [[ ! -x $b ]]; then
        echo "run-fanout.sh: '$b' not found; build troupe-fanout, ref-broadcast and troupe-chat" \
            "(cmake --build build-rel) or set BENCH_BIN_DIR / TROUPE_CHAT" >&2
        exit 2
    fi
done
servers=(troupe ref redis)
if ! command -v "$REDIS_SERVER" >/dev/null; then
    echo "redis-server not installed: skipped"
    servers=(troupe ref)
fi

# 2,000 users need 2,000 sockets in every server and (Redis: subscriber +
# publisher) 4,000 in the loader.
ulimit -n "$(ulimit -Hn)"
need=0
for sc in $SCENARIOS; do
    r=${sc%%x*} rest=${sc#*x}
    u=${rest%%@*}
    if ((2 * r * u + 64 > need)); then
        need=$((2 * r * u + 64))
    fi
done
if (($(ulimit -n) < need)); then
    echo "run-fanout.sh: open-file limit $(ulimit -n) is below the $need these scenarios need" >&2
    exit 2
fi

tmp=$(mktemp -d /tmp/run-fanout.XXXXXX)
server_pid=
busy_pid=
errors=0
clk_tck=$(getconf CLK_TCK)

cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ -n $busy_pid ]]; then
        kill "$busy_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nothing listens on now, for redis-server (which cannot take port 0
# and tell us what it got). Someone may take it before Redis does; then
# start_redis tries another.
pick_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
}

# start_server NAME W LOG: starts it, waits (bounded) until it listens; sets
# server_pid and server_addr.
start_server() {
    local name=$1 w=$2 log=$3 try port i
    case $name in
    troupe)
        "$TROUPE_CHAT" --listen 127.0.0.1:0 --http-listen off --workers "$w" --max-clients 20000 \
            --flood 1000:1000 --sendq $((4 * 1024 * 1024)) >"$log" 2>&1 &
        server_pid=$!
        server_wait_addr "$log" 's/^IRC on \([^ ]*\).*/\1/p' troupe-chat
        ;;
    ref)
        "$REF" --listen 127.0.0.1:0 --threads "$w" >"$log" 2>&1 &
        server_pid=$!
        server_wait_addr "$log" 's/^listening on \([^ ]*\).*/\1/p' ref-broadcast
        ;;
    redis)
        local -a io=()
        if ((REDIS_IO_THREADS > 1)); then
            io=(--io-threads "$REDIS_IO_THREADS")
        fi
        for ((try = 0; try < 5; try++)); do
            port=$(pick_port)
            "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
                "${io[@]}" >"$log" 2>&1 &
            server_pid=$!
            # The ready line has no address: print the port we gave it.
            server_addr=
            for ((i = 0; i < 100; i++)); do
                grep -q 'Ready to accept connections' "$log" && server_addr=127.0.0.1:$port && return
                kill -0 "$server_pid" 2>/dev/null || break
                sleep 0.1
            done
            stop_server
        done
        echo "run-fanout.sh: redis-server did not start; its output:" >&2
        cat "$log" >&2
        exit 1
        ;;
    *) return 1 ;;
    esac
}

# others_ticks [PID...]: CPU ticks (user + system, reaped children
# included) of every process but this script and the PIDs given (the
# server, the loader, the busy loop): other people's jobs. A process that
# exits meanwhile still counts, in its parent's children's time (once its
# parent has reaped it: the figure is approximate, and clamped at 0).
others_ticks() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v skip="$$ $*" 'BEGIN { split(skip, k, " "); for (i in k) x[k[i]] = 1 }
        { pid = $1; sub(/^.*\) /, ""); if (!(pid in x)) s += $12 + $13 + $14 + $15 }
        END { printf "%.0f", s }'
}

# wait_quiet: waits up to QUIET_WAIT seconds for a quiet second.
wait_quiet() {
    local end=$((SECONDS + QUIET_WAIT)) o0 o1
    while ((SECONDS < end)); do
        o0=$(others_ticks)
        sleep 1
        o1=$(others_ticks)
        if ((100 * (o1 - o0) < 10 * clk_tck * $(nproc))); then
            return 0
        fi
    done
    if ((QUIET_WAIT > 0)); then
        echo "run-fanout.sh: machine still busy after ${QUIET_WAIT}s; going on" >&2
    fi
}

# run NAME W R U L ROUND: one server, one load; sets out_res (the RESULT
# line), and over the measured window out_scpu (% of one core), out_other
# (% of the machine), out_sw (% of it the server waited for a CPU).
run() {
    local name=$1 w=$2 r=$3 u=$4 l=$5 round=$6
    local tag=$name-${r}x$u@$l-w$w-r$round
    local log=$tmp/$tag-server.log out=$tmp/$tag-load.out
    local proto=irc
    [[ $name == redis ]] && proto=redis
    wait_quiet
    start_server "$name" "$w" "$log"
    if [[ $BUSY == 1 ]]; then
        sh -c 'while :; do :; done' &
        busy_pid=$!
    fi
    local t0=0 t1=0 w0=0 w1=0 o0=0 o1=0 ns0=0 ns1=1 rc=0 load_pid fd line
    "$LOAD" --connect "$server_addr" --proto "$proto" --channels "$r" --users "$u" \
        --rate "$l" --duration "$DURATION" --warmup "$WARMUP" --threads "$LOADER_THREADS" \
        >"$out" 2>&1 &
    load_pid=$!
    # Sample the server as the loader's measured window opens and closes
    # (it says so on stderr), so setup (troupe-chat tells every member of
    # every JOIN) and the stragglers' wait stay out of the figures. tail -f
    # wakes on each line: no polling beside the load.
    exec {fd}< <(tail -n +1 -f --pid="$load_pid" "$out")
    while IFS= read -r -u "$fd" line; do
        case $line in
        *"window open"*)
            ns0=$(date +%s%N) o0=$(others_ticks "$server_pid" "$load_pid" "$busy_pid")
            w0=$(runq_wait_ns "$server_pid") t0=$(cpu_ticks "$server_pid")
            ;;
        *"window closed"*)
            t1=$(cpu_ticks "$server_pid") w1=$(runq_wait_ns "$server_pid")
            o1=$(others_ticks "$server_pid" "$load_pid" "$busy_pid") ns1=$(date +%s%N)
            break
            ;;
        *) ;;
        esac
    done
    exec {fd}<&-
    wait "$load_pid" || rc=$?
    if [[ -n $busy_pid ]]; then
        kill "$busy_pid" 2>/dev/null || true
        wait "$busy_pid" 2>/dev/null || true
        busy_pid=
    fi
    stop_server
    out_res=$(grep '^RESULT' "$out" | tail -n 1 || true)
    if [[ $rc -ne 0 || -z $out_res || $(field errors "$out_res") != 0 || $(field lost "$out_res") != 0 ]]; then
        echo "run-fanout.sh: $name ${r}x$u@$l W=$w round $round: load failed (exit $rc); see $out" >&2
        grep -v '^troupe-fanout: window' "$out" | tail -n 3 >&2
        errors=$((errors + 1))
    fi
    out_scpu=$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" -v ns=$((ns1 - ns0)) \
        'BEGIN { printf "%.0f", 100 * t / hz / (ns / 1e9) }')
    out_other=$(awk -v o=$((o1 - o0)) -v hz="$clk_tck" -v ns=$((ns1 - ns0)) -v n="$(nproc)" \
        'BEGIN { o = 100 * o / hz / (ns / 1e9) / n; printf "%.1f", (o > 0 ? o : 0) }')
    out_sw=$(awk -v w=$((w1 - w0)) -v t=$((ns1 - ns0)) 'BEGIN { printf "%.1f", (t > 0 ? 100 * w / t : 0) }')
}

label() {
    case $1 in
    troupe) echo troupe-chat ;;
    ref) echo ref-broadcast ;;
    redis) echo redis-server ;;
    *) echo "$1" ;;
    esac
}

# The issue's goals for troupe-chat, in ms of p99 ("" if none).
goal_ms() {
    case $1 in
    1x1000@1) echo 15 ;;
    1x2000@0.5) echo 30 ;;
    *) echo "" ;;
    esac
}

ms() {
    awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'
}

echo "run-fanout: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //');" \
    "${DURATION}s (+${WARMUP}s warm-up) x $ROUNDS rounds; loader threads $LOADER_THREADS; busy=$BUSY;" \
    "load $(cut -d' ' -f1-3 /proc/loadavg); logs in $tmp"
if [[ " ${servers[*]} " == *" redis "* ]]; then
    io_note=
    if ((REDIS_IO_THREADS > 1)); then
        io_note=" (plus --io-threads $REDIS_IO_THREADS)"
    fi
    echo "redis-server: $("$REDIS_SERVER" --version | grep -o 'v=[^ ]*'), one thread for every W$io_note"
fi
summary="RESULT bench=fanout rounds=$ROUNDS duration_s=$DURATION loader_threads=$LOADER_THREADS busy=$BUSY"
max_other=0
for sc in $SCENARIOS; do
    if [[ ! $sc =~ ^([0-9]+)x([0-9]+)@([0-9.]+)$ ]]; then
        echo "run-fanout.sh: scenario '$sc' is not CHANNELSxUSERS@RATE" >&2
        exit 2
    fi
    r=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]} l=${BASH_REMATCH[3]}
    for w in $WORKERS; do
        declare -A p50=() p99=() mx=() dps=() lost=() scpu=() lcpu=()
        for ((round = 1; round <= ROUNDS; round++)); do
            n=${#servers[@]}
            for ((k = 0; k < n; k++)); do
                name=${servers[$(((k + round - 1) % n))]}
                run "$name" "$w" "$r" "$u" "$l" "$round"
                res=$out_res
                printf '  round %d %sx%s@%s W=%s %-13s %9s/s p50 %6s ms p99 %6s ms max %6s ms lost %s errors %s; CPU server %s%% loader %s%%; waited for a CPU: server %s%% loader %s%%; others %s%%\n' \
                    "$round" "$r" "$u" "$l" "$w" "$(label "$name")" "$(field deliveries_per_s "$res")" \
                    "$(ms "$(field p50_us "$res")")" "$(ms "$(field p99_us "$res")")" \
                    "$(ms "$(field max_us "$res")")" "$(field lost "$res")" "$(field errors "$res")" \
                    "$out_scpu" "$(field loader_cpu_pct "$res")" "$out_sw" \
                    "$(field loader_wait_pct "$res")" "$out_other"
                p50[$name]+="$(field p50_us "$res") " p99[$name]+="$(field p99_us "$res") "
                mx[$name]+="$(field max_us "$res") " dps[$name]+="$(field deliveries_per_s "$res") "
                lost[$name]+="$(field lost "$res") " scpu[$name]+="$out_scpu "
                lcpu[$name]+="$(field loader_cpu_pct "$res") "
                max_other=$(awk -v a="$max_other" -v b="$out_other" 'BEGIN { print (b > a ? b : a) }')
            done
        done
        echo "fan-out ${r}x$u@$l, W=$w (troupe-chat --workers $w, ref-broadcast --threads $w), medians of $ROUNDS rounds:"
        printf '  %-13s %8s %8s %8s %12s %6s %8s %8s\n' server "p50 ms" "p99 ms" "max ms" deliveries/s lost \
            "srv CPU" "ldr CPU"
        declare -A m99=()
        for name in "${servers[@]}"; do
            # shellcheck disable=SC2086 # word lists
            {
                m99[$name]=$(median ${p99[$name]})
                printf '  %-13s %8s %8s %8s %12s %6s %7s%% %7s%%\n' "$(label "$name")" \
                    "$(ms "$(median ${p50[$name]})")" "$(ms "${m99[$name]}")" \
                    "$(ms "$(median ${mx[$name]})")" "$(median ${dps[$name]})" \
                    "$(median ${lost[$name]})" "$(median ${scpu[$name]})" "$(median ${lcpu[$name]})"
            }
            summary+=" s${r}x${u}@${l}_w${w}_${name}_p99_us=${m99[$name]}"
        done
        for other in ref redis; do
            [[ -n ${m99[$other]:-} ]] || continue
            read -r -a a <<<"${p99[troupe]}"
            read -r -a b <<<"${p99[$other]}"
            per=()
            for ((i = 0; i < ${#a[@]}; i++)); do
                per+=("$(ratio "${a[$i]}" "${b[$i]}")")
            done
            rm_=$(ratio "${m99[troupe]}" "${m99[$other]}")
            echo "  p99 troupe/$other: $rm_ (ratio of medians); rounds ${per[*]}"
            summary+=" s${r}x${u}@${l}_w${w}_p99_troupe_over_$other=$rm_"
        done
        for name in "${servers[@]}"; do
            # shellcheck disable=SC2086
            nl=$(printf '%s\n' ${lost[$name]} | awk '$1 > 0 { n++ } END { print n + 0 }')
            if ((nl > 0)); then
                echo "  $(label "$name") lost lines in $nl of $ROUNDS rounds: it fell behind, and its" \
                    "latencies cover only the lines that came within the 3 s straggler wait"
            fi
        done
        goal=$(goal_ms "$sc")
        if [[ -n $goal ]]; then
            # shellcheck disable=SC2086
            met=$(awk -v p="${m99[troupe]}" -v g="$goal" -v l="$(printf '%s+' ${lost[troupe]})0" \
                'BEGIN { split(l, a, "+"); for (i in a) t += a[i]; print (p <= g * 1000 && t == 0 ? "met" : "NOT met") }')
            echo "  goal (troupe-chat): median p99 <= $goal ms, nothing lost in any round: $met"
        fi
        unset p50 p99 mx dps lost scpu lcpu m99 nl
    done
done
if awk -v m="$max_other" 'BEGIN { exit !(m > 5) }'; then
    echo "run-fanout.sh: warning: other jobs used up to ${max_other}% of the machine during a run;" \
        "these numbers are disturbed" >&2
fi
echo "$summary max_others_pct=$max_other errors=$errors"
[[ $errors -eq 0 ]]
