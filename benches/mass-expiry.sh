#!/usr/bin/env bash
# mass-expiry.sh — one million keys expiring in the same millisecond while traffic runs, in
# sessiond and in redis-server, same run.
#
# For each server: load N keys `SET sess:<32 digits> <160 bytes> PXAT T` (every key has the
# same deadline T, a few seconds after the load), start `redis-benchmark GET` traffic on other
# keys (-c 50, persistent, hits), and from T on poll DBSIZE, used_memory and RSS every 50 ms.
# Reports how long after T the key count and used_memory were back to their baseline (before
# the load), RSS then, and the p99 of the traffic during the expiry against the p99 of the same
# traffic without an expiry.
#
# Usage: benches/mass-expiry.sh [--keys N] [--only redis|sessiond] [--no-build]
#   --only S   measure one server (to compare two builds of sessiond; ratios need both)
# SESSIOND_ARGS in the environment adds arguments to sessiond's (e.g. "--threads 1").
# Needs: redis-server, redis-cli, redis-benchmark, python3; cargo unless --no-build.
set -euo pipefail

keys=1000000
build=1
servers="redis sessiond"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --keys) keys="${2:?--keys needs a number}"; shift 2 ;;
        --no-build) build=0; shift ;;
        --only)
            case "${2:-}" in
                redis|sessiond) servers="$2"; shift 2 ;;
                *) echo "mass-expiry.sh: --only takes redis or sessiond" >&2; exit 64 ;;
            esac ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "mass-expiry.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done
[[ "$keys" =~ ^[1-9][0-9]*$ ]] || { echo "mass-expiry.sh: --keys must be a positive number" >&2; exit 64; }
for tool in redis-server redis-benchmark redis-cli python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "mass-expiry.sh: missing $tool (apt-get install redis-server redis-tools python3)" >&2; exit 69; }
done

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/common.sh
. "$root/benches/common.sh"
if [[ $build == 1 ]]; then
    (cd "$root" && cargo build --release --quiet -p sessiond)
fi
sessiond="${CARGO_TARGET_DIR:-$root/target}/release/sessiond"
[[ -x "$sessiond" ]] || { echo "mass-expiry.sh: $sessiond not built (drop --no-build)" >&2; exit 69; }

work="$(mktemp -d)"
server_pid=""
bench_pid=""
cleanup() {
    stop_pids "$bench_pid" "$server_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port="$(free_port)"
now_ms() { date +%s%3N; }
info_field() { redis-cli -p "$port" INFO "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }

start() { # server
    if [[ $1 == redis ]]; then
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
            --logfile "$work/redis.log" >/dev/null &
    else
        "$sessiond" --port "$port" --no-persistence --log-level warn ${SESSIOND_ARGS:-} >/dev/null 2>>"$work/sessiond.log" &
    fi
    server_pid=$!
    wait_for_pong "$port" && return
    echo "mass-expiry.sh: $1 did not start" >&2
    exit 1
}

# GET traffic on 1000 persistent keys for about `seconds`: "<p99 ms>" (from --csv).
traffic() { # seconds
    local n=$(( $1 * 40000 ))
    redis-benchmark -p "$port" -c 50 -n "$n" -r 1000 --csv GET 'other:__rand_int__' 2>/dev/null |
        awk -F'","' '/^"GET/ { gsub(/"/, "", $7); print $7 }'
}

echo "== machine: $(nproc) cores; $(redis-server --version | cut -d' ' -f1-3); $keys keys"
for server in $servers; do
    start "$server"
    for i in $(seq 0 999); do printf 'SET other:%012d x\r\n' "$i"; done | redis-cli -p "$port" --pipe >/dev/null
    base_keys="$(redis-cli -p "$port" DBSIZE)"
    base_used="$(info_field memory used_memory_dataset)"
    base_rss="$(rss_kib)"
    idle_p99="$(traffic 4)"

    deadline=$(( $(now_ms) + 20000 ))
    python3 - "$keys" "$deadline" >"$work/dataset.resp" <<'PY'
import base64, os, sys
n, deadline = int(sys.argv[1]), sys.argv[2].encode()
out = sys.stdout.buffer
value = base64.b64encode(os.urandom(120))
for i in range(n):
    key = b"sess:%032d" % i
    out.write(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$4\r\nPXAT\r\n$%d\r\n%s\r\n"
              % (len(key), key, len(value), value, len(deadline), deadline))
PY
    redis-cli -p "$port" --pipe <"$work/dataset.resp" >/dev/null
    loaded_keys="$(redis-cli -p "$port" DBSIZE)"
    loaded_used="$(info_field memory used_memory_dataset)"
    loaded_rss="$(rss_kib)"
    if (( $(now_ms) > deadline - 3000 )); then
        echo "mass-expiry.sh: loading took too long for the 20 s deadline" >&2
        exit 1
    fi
    # Traffic from 2 s before the deadline to well after it. Nothing else runs meanwhile: the
    # waits are single sleeps, and the polling after the deadline is one process on one
    # connection (a redis-cli and a `date` every 50 ms would take a core's share from the
    # traffic of their own: on 2 cores they alone raised its p99 by half).
    sleep "$(awk -v ms=$(( deadline - 2000 - $(now_ms) )) 'BEGIN { print (ms > 0 ? ms : 0) / 1000 }')"
    traffic 8 >"$work/p99" &
    bench_pid=$!
    read -r keys_back used_back < <(python3 - "$port" "$deadline" "$base_keys" \
        $(( base_used + base_used / 10 + 1048576 )) <<'PY'
import socket, sys, time
port, deadline, base_keys, used_limit = (int(a) for a in sys.argv[1:])
sock = socket.create_connection(("127.0.0.1", port))
buf = b""
def reply():
    """One RESP reply: an integer, or a bulk string's text."""
    global buf
    while b"\r\n" not in buf:
        buf += sock.recv(65536)
    line, buf = buf.split(b"\r\n", 1)
    if line[:1] == b":":
        return int(line[1:])
    size = int(line[1:])
    while len(buf) < size + 2:
        buf += sock.recv(65536)
    text, buf = buf[:size], buf[size + 2:]
    return text.decode()
time.sleep(max(0, deadline / 1000 - time.time()))
keys_back = used_back = "-"
for _ in range(400):
    t = int(time.time() * 1000) - deadline
    sock.sendall(b"*1\r\n$6\r\nDBSIZE\r\n*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")
    keys = reply()
    used = next(int(l.split(":")[1]) for l in reply().splitlines() if l.startswith("used_memory_dataset:"))
    if keys_back == "-" and keys <= base_keys:
        keys_back = t
    if used_back == "-" and used <= used_limit:
        used_back = t
    if keys_back != "-" and used_back != "-":
        break
    time.sleep(0.05)
print(keys_back, used_back)
PY
    )
    [[ "$keys_back" == - ]] && keys_back=""
    [[ "$used_back" == - ]] && used_back=""
    after_rss="$(rss_kib)"
    wait "$bench_pid"
    bench_pid=""
    expiry_p99="$(cat "$work/p99")"
    echo "-- $server: baseline $base_keys keys, used_memory $((base_used / 1024)) KiB, RSS $((base_rss / 1024)) MiB"
    echo "   loaded  $loaded_keys keys, used_memory $((loaded_used / 1048576)) MiB, RSS $((loaded_rss / 1024)) MiB"
    echo "   after the deadline: DBSIZE back to baseline in ${keys_back:-(not within 20 s)} ms," \
         "used_memory in ${used_back:-(not within 20 s)} ms; RSS then $((after_rss / 1024)) MiB"
    echo "   GET traffic p99: ${idle_p99} ms without expiry, ${expiry_p99} ms across the mass expiry"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    server_pid=""
done
