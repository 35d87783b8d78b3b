#!/usr/bin/env bash
# Runs the actor kernels for troupe and its references (Erlang/OTP, CAF)
# interleaved, and prints per-kernel medians and troupe/reference ratios.
#
#   test/bench/run-actors.sh [--rounds N] [--workers N] [--noisy] [KERNEL...]
#
# For each kernel it runs troupe, erlang, caf, troupe, erlang, caf, ... for
# N rounds (default 3), each run a fresh process. Absolute times on a shared
# VM drift by tens of percent within minutes, so the ratios are taken per
# round, between runs made seconds apart, and the median of those is
# reported. A ratio above 1 means troupe does more per second.
#
# --noisy runs one busy-looping process (sh -c 'while :; do :; done')
# beside every run of every implementation, as on a shared server where
# some other process always wants a core.
#
# Environment: BUILD (build directory, default build), JOBS (default 2).
# As root it installs missing reference runtimes (erlang-base, libcaf-dev);
# otherwise it prints the apt-get line and runs without them.
set -euo pipefail

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
JOBS=${JOBS:-2}
ROUNDS=${ROUNDS:-3}
WORKERS=2
NOISY=0
KERNELS=()
ALL_KERNELS=(pingpong counting forkjoin threadring spawn)

while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --noisy) NOISY=1; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) KERNELS+=("$1"); shift ;;
    esac
done
[ ${#KERNELS[@]} -gt 0 ] || KERNELS=("${ALL_KERNELS[@]}")

# ---- reference runtimes ----
missing=""
for p in erlang-base libcaf-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing reference runtimes:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    else
        echo "reference runtimes missing; to compare against them run as root:"
        echo "  apt-get install -y$missing"
    fi
fi

# ---- build (re-configure so a freshly installed CAF is found) ----
if [ -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD" >/dev/null
else
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTROUPE_BUILD_TESTS=OFF \
        -DTROUPE_BUILD_DEMOS=OFF >/dev/null
fi
targets="--target troupe-actors"
if grep -q "^CAF_CORE_LIBRARY:FILEPATH=/" "$BUILD/CMakeCache.txt"; then
    targets="$targets --target caf-actors"
fi
cmake --build "$BUILD" -j"$JOBS" $targets >/dev/null

IMPLS=(troupe)
ERL_DIR="$BUILD/test/bench/erl"
if command -v erlc >/dev/null && command -v erl >/dev/null; then
    mkdir -p "$ERL_DIR"
    erlc -o "$ERL_DIR" test/bench/ref/actors.erl
    IMPLS+=(erlang)
else
    echo "erlang: not installed, skipped"
fi
if [ -x "$BUILD/test/bench/caf-actors" ]; then
    IMPLS+=(caf)
else
    echo "caf: not built (libcaf-dev missing), skipped"
fi

command_for() { # impl kernel: sets CMD
    case "$1" in
    troupe) CMD=("$BUILD/test/bench/troupe-actors" "$2" --workers "$WORKERS") ;;
    erlang) CMD=(erl -noshell +S "$WORKERS:$WORKERS" -pa "$ERL_DIR" -run actors main "$2") ;;
    caf) CMD=("$BUILD/test/bench/caf-actors" "$2" --workers "$WORKERS") ;;
    esac
}

# ---- run, interleaved ----
LOG="$BUILD/bench-actors.log"
RESULTS=$(mktemp)
: >"$LOG"
failed=0
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
echo "impls: ${IMPLS[*]}; workers=$WORKERS; rounds=$ROUNDS; noisy=$NOISY; raw output: $LOG"
NOISE_PID=""
noise_start() {
    [ "$NOISY" = 1 ] || return 0
    sh -c 'while :; do :; done' &
    NOISE_PID=$!
}
noise_stop() {
    [ -n "$NOISE_PID" ] || return 0
    kill "$NOISE_PID" 2>/dev/null || true
    wait "$NOISE_PID" 2>/dev/null || true
    NOISE_PID=""
}
trap 'noise_stop; rm -f "${RESULTS:-}"' EXIT
# Other processes on the machine skew cross-thread hand-offs most: say how
# busy it was (load average; share of time some task waited for a CPU).
contention() {
    echo "$1: load $(cut -d' ' -f1-3 /proc/loadavg)$(
        [ -r /proc/pressure/cpu ] && awk '/^some/ {sub("avg10=", ""); sub("avg60=", ""); printf ", cpu pressure %s%% (10 s) %s%% (60 s)", $2, $3}' /proc/pressure/cpu)"
}
contention before
for k in "${KERNELS[@]}"; do
    for r in $(seq 1 "$ROUNDS"); do
        for impl in "${IMPLS[@]}"; do
            command_for "$impl" "$k"
            noise_start
            out=$(timeout 900 "${CMD[@]}" 2>&1) || {
                echo "FAILED: $impl $k (round $r)"
                failed=1
            }
            noise_stop
            printf '%s\n' "$out" >>"$LOG"
            { printf '%s\n' "$out" | grep '^RESULT ' || true; } |
                sed "s/^RESULT /RESULT round=$r /" | tee -a "$RESULTS"
        done
    done
done

contention after

# ---- summarise ----
# Row key: the kernel plus troupe's placement when it has one; a reference
# row (no placement) is compared with every troupe row of its kernel.
echo
awk -v impls="${IMPLS[*]}" '
function field(name,   i, kv) {
    for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == name) return kv[2]
    }
    return ""
}
function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) {            # insertion sort, numeric
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    if (n == 0) return ""
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
    k = field("kernel"); p = field("placement"); impl = field("impl"); r = field("round")
    key = p == "" ? k : k "/" p
    if (!(key in seen)) { seen[key] = 1; order[++nkeys] = key; kernel_of[key] = k }
    per[impl, key] = per[impl, key] " " field("per_s")
    cpu[impl, key] = cpu[impl, key] " " field("cpu_s")
    wall[impl, key] = wall[impl, key] " " field("wall_s")
    rss[impl, key] = rss[impl, key] " " field("max_rss_kb")
    val[impl, key, r] = field("per_s")
    rounds[r] = 1
}
END {
    nimpl = split(impls, im, " ")
    printf "%-20s %-7s %14s %9s %9s %11s\n", "kernel", "impl", "median per_s", "wall_s", "cpu_s", "max_rss_kb"
    for (i = 1; i <= nkeys; i++) {
        key = order[i]
        for (j = 1; j <= nimpl; j++) {
            impl = im[j]
            src = key
            if (impl != "troupe") src = kernel_of[key]
            if (impl != "troupe" && key != src) continue   # reference row printed once
            if (per[impl, src] == "") continue
            printf "%-20s %-7s %14.0f %9.3f %9.3f %11.0f\n", src, impl, median(per[impl, src]),
                median(wall[impl, src]), median(cpu[impl, src]), median(rss[impl, src])
        }
    }
    print ""
    print "troupe/reference throughput ratio, median of the per-round ratios (min-max);"
    print "above 1: troupe does more per second"
    printf "%-20s", "kernel"
    for (j = 2; j <= nimpl; j++) printf " %22s", "vs " im[j]
    print ""
    for (i = 1; i <= nkeys; i++) {
        key = order[i]
        if (per["troupe", key] == "") continue
        printf "%-20s", key
        for (j = 2; j <= nimpl; j++) {
            list = ""; lo = ""; hi = ""
            for (r in rounds) {
                a = val["troupe", key, r]; b = val[im[j], kernel_of[key], r]
                if (a == "" || b == "" || b <= 0) continue
                x = a / b; list = list " " x
                if (lo == "" || x < lo) lo = x
                if (hi == "" || x > hi) hi = x
            }
            if (list == "") printf " %22s", "-"
            else printf " %22s", sprintf("%.2f (%.2f-%.2f)", median(list), lo, hi)
        }
        print ""
    }
}' "$RESULTS"
exit $failed
