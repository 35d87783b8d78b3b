#!/usr/bin/env bash
# run-transports.sh [TROUPE_ECHO]
#
# The transport comparisons of the "transports" issue, each against a
# reference measured in the same invocation, interleaved run by run, over
# $ROUNDS rounds; prints medians, ratios and RESULT lines:
#
#   tls        troupe-echo --tls echo req/s / troupe-echo TCP     (goal >= 0.8)
#   handshake  troupe-echo --tls handshakes/s / ref-tls           (goal >= 0.9)
#   unix       troupe-echo --unix echo req/s / troupe-echo TCP    (goal >= 1.2)
#   udp        troupe-echo --udp datagrams/s / ref-udp            (goal >= 0.9)
#
# Echo loads: 64 B, $CONNS connections, pipeline 1, length codec (TLS 1.3
# handshakes done before the run). Handshake load: $HS_SLOTS slots of
# connect, full handshake, one 64 B round trip, close_notify, close (raw
# codec: ref-tls echoes bytes). UDP load: $CONNS sockets, 64 B datagrams,
# pipeline 1; lost datagrams are counted, not errors. One troupe worker;
# ref-udp one thread. Servers run pinned to CPU $SERVER_CPU, the load to
# CPU $LOAD_CPU (taskset). The certificate is made now (openssl req, EC
# P-256, self-signed) in a temp dir.
#
# Environment (defaults in brackets):
#   BENCH_BIN_DIR [build-rel/test/bench, or the first build*/test/bench
#                 with troupe-load, ref-tls and ref-udp]
#   TROUPE_ECHO [the first build*/demo/troupe-echo]  DURATION [4]  WARMUP [1]
#   ROUNDS [3]  CONNS [100]  HS_SLOTS [64]  SERVER_CPU [0]  LOAD_CPU [1]
#   SCENARIOS ["tls handshake unix udp"]
#   NOISY [0]   1: a busy loop (sh -c 'while :; do :; done', unpinned) runs
#               beside every run, as run-actors.sh --noisy does
# On a shared machine run it under the lock the other benchmarks use, so no
# two of them overlap (flock /tmp/troupe-bench.lock test/bench/run-transports.sh).
#
# Every run line says how long the server and the loader waited for a CPU
# (schedstat run delay, % of the run) and the server's CPU per operation
# (user + system ticks over all operations, warm-up included).
# Exit status 0 if every run worked (errors=0 from every load), else 1.

set -euo pipefail

DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-100}
HS_SLOTS=${HS_SLOTS:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SCENARIOS=${SCENARIOS:-"tls handshake unix udp"}
NOISY=${NOISY:-0}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BENCH_NAME=run-transports.sh
# shellcheck source=test/bench/bench-lib.sh
. "$here/bench-lib.sh"
if [[ $# -ge 1 ]]; then
    TROUPE_ECHO=$1
fi
for d in "$repo/build-rel" "$repo/build" "$repo"/build*; do
    if [[ -z ${BENCH_BIN_DIR:-} && -x $d/test/bench/ref-tls && -x $d/test/bench/ref-udp ]]; then
        BENCH_BIN_DIR=$d/test/bench
    fi
    if [[ -z ${TROUPE_ECHO:-} && -x $d/demo/troupe-echo ]]; then
        TROUPE_ECHO=$d/demo/troupe-echo
    fi
done
LOAD=${BENCH_BIN_DIR:-}/troupe-load
REF_TLS=${BENCH_BIN_DIR:-}/ref-tls
REF_UDP=${BENCH_BIN_DIR:-}/ref-udp
for b in "$LOAD" "$REF_TLS" "$REF_UDP" "${TROUPE_ECHO:-}"; do
    if [[ ! -x $b ]]; then
        echo "run-transports.sh: '$b' not found; build troupe-load, ref-tls, ref-udp and" \
            "troupe-echo, and set BENCH_BIN_DIR / pass TROUPE_ECHO" >&2
        exit 2
    fi
done

tmp=$(mktemp -d /tmp/run-transports.XXXXXX)
server_pid=
noise_pid=
errors=0
clk_tck=$(getconf CLK_TCK)

cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ -n $noise_pid ]]; then
        kill "$noise_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >"$tmp/openssl.log" 2>&1 || {
    echo "run-transports.sh: openssl req failed:" >&2
    cat "$tmp/openssl.log" >&2
    exit 1
}

# server_cmd NAME: the server command of a run, into cmd.
server_cmd() {
    local echo_args=("$TROUPE_ECHO" --workers 1 --listen 127.0.0.1:0)
    case $1 in
    tcp) cmd=("${echo_args[@]}" --codec length) ;;
    tls) cmd=("${echo_args[@]}" --codec length --tls "$tmp/cert.pem" "$tmp/key.pem") ;;
    unix) cmd=("$TROUPE_ECHO" --workers 1 --unix "$tmp/echo.sock" --codec length) ;;
    ref-tls) cmd=("$REF_TLS" --cert "$tmp/cert.pem" --key "$tmp/key.pem") ;;
    troupe-hs) cmd=("${echo_args[@]}" --codec raw --tls "$tmp/cert.pem" "$tmp/key.pem") ;;
    ref-udp) cmd=("$REF_UDP" --threads 1) ;;
    troupe-udp) cmd=("${echo_args[@]}" --codec raw --udp 127.0.0.1:0) ;;
    *) return 1 ;;
    esac
}

# load_cmd NAME ADDR: the troupe-load command of a run, into lcmd.
load_cmd() {
    local common=(-d "$DURATION" --warmup "$WARMUP")
    case $1 in
    tcp | unix) lcmd=("$LOAD" echo --connect "$2" -c "$CONNS" -s 64 -p 1 --codec length "${common[@]}") ;;
    tls) lcmd=("$LOAD" echo --connect "$2" -c "$CONNS" -s 64 -p 1 --codec length --tls "${common[@]}") ;;
    ref-tls | troupe-hs) lcmd=("$LOAD" handshake --connect "$2" -c "$HS_SLOTS" -s 64 --codec raw "${common[@]}") ;;
    ref-udp | troupe-udp) lcmd=("$LOAD" udp --connect "$2" -c "$CONNS" -s 64 -p 1 "${common[@]}") ;;
    *) return 1 ;;
    esac
}

# The line a server prints with the address the load should use.
addr_pattern() {
    case $1 in
    ref-udp | troupe-udp) printf '%s\n' 's/^datagrams on \([^ ]*\).*/\1/p' ;;
    *) printf '%s\n' 's/^listening on \([^ ]*\).*/\1/p' ;;
    esac
}

start_server() {
    local name=$1 log=$2
    server_cmd "$name"
    rm -f "$tmp/echo.sock"
    taskset -c "$SERVER_CPU" "${cmd[@]}" >"$log" 2>&1 &
    server_pid=$!
    server_wait_addr "$log" "$(addr_pattern "$name")" "$name"
}

sum() {
    printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%d", s }'
}

# run NAME ROUND: one server, one load; sets out_rate (req/s, handshakes/s
# or datagrams/s), out_p99, out_cpu (server CPU us per operation), out_sw,
# out_lw (CPU wait %), out_lost.
run() {
    local name=$1 round=$2
    local log=$tmp/$name-r$round-server.log out=$tmp/$name-r$round-load.out
    start_server "$name" "$log"
    if [[ $NOISY == 1 ]]; then
        sh -c 'while :; do :; done' &
        noise_pid=$!
    fi
    local t0 t1 w0 w1 ns0 ns1 rc=0
    ns0=$(date +%s%N)
    w0=$(runq_wait_ns "$server_pid")
    t0=$(cpu_ticks "$server_pid")
    load_cmd "$name" "$server_addr"
    taskset -c "$LOAD_CPU" "${lcmd[@]}" >"$out" 2>&1 || rc=$?
    t1=$(cpu_ticks "$server_pid")
    w1=$(runq_wait_ns "$server_pid")
    ns1=$(date +%s%N)
    if [[ -n $noise_pid ]]; then
        kill "$noise_pid" 2>/dev/null || true
        wait "$noise_pid" 2>/dev/null || true
        noise_pid=
    fi
    stop_server
    local res total
    res=$(grep '^RESULT' "$out" | tail -n 1 || true)
    if [[ $rc -ne 0 || -z $res || $(field errors "$res") != 0 ]]; then
        echo "run-transports.sh: $name round $round: load failed (exit $rc); see $out" >&2
        tail -n 5 "$out" >&2
        errors=$((errors + 1))
    fi
    case $name in
    ref-tls | troupe-hs) out_rate=$(field hs_per_s "$res") total=$(field total_handshakes "$res") ;;
    ref-udp | troupe-udp) out_rate=$(field dgram_per_s "$res") total=$(field total_datagrams "$res") ;;
    *) out_rate=$(field req_per_s "$res") total=$(field total_requests "$res") ;;
    esac
    out_p99=$(field p99_us "$res")
    out_lost=$(field lost "$res")
    out_rate=${out_rate:-0} out_p99=${out_p99:-0} out_lost=${out_lost:-0}
    out_cpu=$(awk -v ticks=$((t1 - t0)) -v hz="$clk_tck" -v n="${total:-0}" \
        'BEGIN { printf "%.2f", (n > 0 ? ticks / hz / n * 1e6 : 0) }')
    out_sw=$(awk -v w=$((w1 - w0)) -v t=$((ns1 - ns0)) 'BEGIN { printf "%.1f", (t > 0 ? 100 * w / t : 0) }')
    out_lw=$(field loader_wait_pct "$res")
    out_lw=${out_lw:-0}
}

# The two runs of each comparison (reference first) and its goal.
pair() {
    case $1 in
    tls) echo "tcp tls 0.8" ;;
    handshake) echo "ref-tls troupe-hs 0.9" ;;
    unix) echo "tcp unix 1.2" ;;
    udp) echo "ref-udp troupe-udp 0.9" ;;
    *) return 1 ;;
    esac
}

declare -A rate p99 cpu lost
echo "run-transports: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //');" \
    "troupe-echo $TROUPE_ECHO; ${DURATION}s (+${WARMUP}s warm-up) x $ROUNDS rounds; servers on CPU" \
    "$SERVER_CPU, load on CPU $LOAD_CPU; noisy=$NOISY; load $(cut -d' ' -f1-3 /proc/loadavg); logs in $tmp"
max_wait=0
for ((r = 1; r <= ROUNDS; r++)); do
    done_runs=" "
    for sc in $SCENARIOS; do
        read -r a b goal <<<"$(pair "$sc")" || {
            echo "run-transports.sh: unknown scenario '$sc'" >&2
            exit 2
        }
        for name in $a $b; do
            [[ $done_runs == *" $name "* ]] && continue # tcp serves tls and unix
            done_runs+="$name "
            run "$name" "$r"
            printf '  round %d %-10s %10s/s p99 %8sus server %6sus CPU/op lost %s; waited for a CPU: server %s%% loader %s%%\n' \
                "$r" "$name" "$out_rate" "$out_p99" "$out_cpu" "$out_lost" "$out_sw" "$out_lw"
            rate[$name]+="$out_rate " p99[$name]+="$out_p99 " cpu[$name]+="$out_cpu " lost[$name]+="$out_lost "
            max_wait=$(awk -v a="$max_wait" -v b="$out_sw" -v c="$out_lw" 'BEGIN {
                m = a; if (b > m) m = b; if (c > m) m = c; print m }')
        done
    done
done

summary="RESULT bench=transports rounds=$ROUNDS duration_s=$DURATION conns=$CONNS hs_slots=$HS_SLOTS noisy=$NOISY"
for sc in $SCENARIOS; do
    read -r a b goal <<<"$(pair "$sc")"
    # shellcheck disable=SC2086 # word lists
    {
        m_a=$(median ${rate[$a]}) m_b=$(median ${rate[$b]})
        c_a=$(median ${cpu[$a]}) c_b=$(median ${cpu[$b]})
        p_a=$(median ${p99[$a]}) p_b=$(median ${p99[$b]})
        read -r -a ra <<<"${rate[$a]}"
        read -r -a rb <<<"${rate[$b]}"
        l_a=$(sum ${lost[$a]}) l_b=$(sum ${lost[$b]})
    }
    rr=()
    for ((i = 0; i < ${#ra[@]}; i++)); do
        rr+=("$(ratio "${rb[$i]}" "${ra[$i]}")")
    done
    ratio_m=$(ratio "$m_b" "$m_a")
    range="$(printf '%s\n' "${rr[@]}" | sort -g | head -n 1)-$(printf '%s\n' "${rr[@]}" | sort -g | tail -n 1)"
    met=$(awk -v r="$ratio_m" -v g="$goal" 'BEGIN { print (r >= g ? "met" : "NOT met") }')
    printf '%-9s %s %s/s vs %s %s/s: ratio %s (rounds %s), goal >= %s %s | p99 us %s / %s | server CPU us/op %s / %s (ratio %s)%s\n' \
        "$sc" "$b" "$m_b" "$a" "$m_a" "$ratio_m" "$range" "$goal" "$met" "$p_b" "$p_a" "$c_b" "$c_a" \
        "$(ratio "$c_b" "$c_a")" "$([[ $sc == udp ]] && echo " | datagrams lost: $b $l_b, $a $l_a")"
    summary+=" ${sc}_ref=$m_a ${sc}_troupe=$m_b ${sc}_ratio=$ratio_m ${sc}_goal=$goal"
    summary+=" ${sc}_cpu_ratio=$(ratio "$c_b" "$c_a")"
    if [[ $sc == udp ]]; then
        summary+=" udp_lost_ref=$l_a udp_lost_troupe=$l_b"
    fi
done
if awk -v m="$max_wait" 'BEGIN { exit !(m > 5) }'; then
    echo "run-transports.sh: warning: a server or the loader waited for its CPU up to ${max_wait}% of a run" \
        "(other jobs, or NOISY=1); these numbers are disturbed" >&2
fi
echo "$summary max_cpu_wait_pct=$max_wait errors=$errors"
[[ $errors -eq 0 ]]
