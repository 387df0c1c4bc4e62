# common.sh — helpers the comparison scripts in benches/ share; sourced, not run.

# A loopback port nothing listens on (a connection to it is refused), below the kernel's
# ephemeral range: a port in that range may be the local end of a benchmark client's connection
# in TIME_WAIT, and a server cannot bind it (Linux's bind conflicts with such a socket unless
# both set SO_REUSEADDR; a client's does not).
free_port() {
    local port low=32768 range
    if read -r range _ 2>/dev/null </proc/sys/net/ipv4/ip_local_port_range && ((range > 2048)); then
        low=$range
    fi
    for _ in $(seq 100); do
        port=$((1024 + RANDOM % (low - 1024)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "${0##*/}: no free port found" >&2
    exit 1
}

# The median of the numbers on standard input, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Stops the processes given (empty arguments are skipped) and reaps them. Each stop stands
# alone: under `set -e`, the status `wait` returns for a killed child must not end a cleanup
# trap before the next process is stopped.
stop_pids() {
    local p
    for p in "$@"; do
        [[ -n "$p" ]] || continue
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

# Waits up to 5 s for a server on loopback port $1 to answer PING; fails if none did.
wait_for_pong() {
    for _ in $(seq 500); do
        [[ "$(redis-cli -p "$1" PING 2>/dev/null)" == PONG ]] && return 0
        sleep 0.01
    done
    return 1
}
