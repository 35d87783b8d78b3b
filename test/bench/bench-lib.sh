# shellcheck shell=bash
# bench-lib.sh: shell helpers the bench scripts share (run-echo.sh,
# run-transports.sh). Sourced, never run. The caller sets BENCH_NAME (for
# messages) and uses server_pid / server_addr as below.

# server_wait_addr LOG SED_EXPR WHAT: waits up to 10 s for the server
# (server_pid) to print its address, which SED_EXPR extracts from LOG into
# server_addr; exits 1 with the server's output if it does not.
server_wait_addr() {
    local log=$1 expr=$2 what=$3 i
    server_addr=
    for ((i = 0; i < 100; i++)); do
        server_addr=$(sed -n "$expr" "$log" | head -n 1)
        [[ -n $server_addr ]] && return 0
        if ! kill -0 "$server_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "$BENCH_NAME: $what server did not say where it listens; its output:" >&2
    cat "$log" >&2
    exit 1
}

# stop_server: SIGTERM to server_pid, SIGKILL after 10 s; reaps it.
stop_server() {
    local i
    kill -TERM "$server_pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "$BENCH_NAME: server $server_pid ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# Nanoseconds the process's threads have waited on a run queue (schedstat
# field 2): time the server could have run but something else had its CPU.
runq_wait_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $2 } END { printf "%.0f", s }'
}

# CPU ticks (user + system) the process has used.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# field NAME LINE: the value of NAME=... in a RESULT line.
field() {
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }'
}
