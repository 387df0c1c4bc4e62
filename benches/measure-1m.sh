#!/usr/bin/env bash
# measure-1m.sh — one million session-shaped keys in sessiond and in redis-server, same run.
#
# The dataset: 1,000,000 × `SET sess:<32 digits> <160 random base64 bytes> EX 3600` (a 37-byte
# key as the issues specify; random values so Redis's LZF compression of its snapshot gets no
# help it would not get from real session data). It is piped into both servers with
# `redis-cli --pipe`, then for each server the script reports:
#   memory   RSS (VmRSS of the process) before and after loading, and per key
#   idle     p50/p99 of `redis-benchmark GET` over the loaded keys (-c 50, hits only)
#   saving   the same benchmark while snapshots are written back to back (BGSAVE in a loop)
#   save     wall time of `redis-cli SAVE`, and the file size
#   load     wall time from starting the process to its first PONG, with the 1M keys loaded
# Save and load are repeated --rounds times; the medians are printed.
#
# Usage: benches/measure-1m.sh [--keys N] [--rounds N] [--requests N] [--memory-only] [--no-build]
#   --keys N       keys to load (default 1000000)
#   --rounds N     save/load repetitions (default 3)
#   --requests N   GETs per latency run (default 1000000)
#   --memory-only  load the keys and report memory only (no latency, save or load runs)
#   --no-build     use the release binary already in target/release
# Needs: redis-server, redis-cli and redis-benchmark (apt-get install redis-server redis-tools),
# python3, and cargo unless --no-build.
set -euo pipefail

keys=1000000
rounds=3
requests=1000000
build=1
memory_only=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --keys) keys="${2:?--keys needs a number}"; shift 2 ;;
        --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
        --requests) requests="${2:?--requests needs a number}"; shift 2 ;;
        --no-build) build=0; shift ;;
        --memory-only) memory_only=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "measure-1m.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done
for n in "$keys" "$rounds" "$requests"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "measure-1m.sh: '$n' is not a positive number" >&2; exit 64; }
done

missing=()
for tool in redis-server redis-benchmark redis-cli python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "measure-1m.sh: missing: ${missing[*]} (apt-get install redis-server redis-tools python3)" >&2
    exit 69
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/common.sh
. "$root/benches/common.sh"
if [[ $build == 1 ]]; then
    echo "== building sessiond (release)"
    (cd "$root" && cargo build --release --quiet -p sessiond)
fi
sessiond="${CARGO_TARGET_DIR:-$root/target}/release/sessiond"
[[ -x "$sessiond" ]] || { echo "measure-1m.sh: $sessiond not built (drop --no-build)" >&2; exit 69; }

work="$(mktemp -d)"
mkdir -p "$work/redis" "$work/sessiond"
declare -A pid=()
cleanup() {
    stop_pids "${pid[@]}"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

redis_port="$(free_port)"
sessiond_port="$(free_port)"
while [[ "$sessiond_port" == "$redis_port" ]]; do sessiond_port="$(free_port)"; done
declare -A port=([redis]="$redis_port" [sessiond]="$sessiond_port")

now_ms() { date +%s%3N; }

# Starts a server and sets $ready_ms to the milliseconds until it answered PONG (a loading
# Redis answers -LOADING, a loading sessiond does not listen yet: both count as not ready).
start() { # server
    local t0 p
    t0="$(now_ms)"
    if [[ $1 == redis ]]; then
        redis-server --port "${port[redis]}" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$work/redis" --dbfilename dump.rdb --daemonize no \
            --logfile "$work/redis.log" >/dev/null &
    else
        "$sessiond" --port "${port[sessiond]}" --data-dir "$work/sessiond" \
            --snapshot-interval 0 --appendonly no --log-level warn >/dev/null \
            2>>"$work/sessiond.log" &
    fi
    p=$!
    pid[$1]=$p
    for _ in $(seq 12000); do
        if [[ "$(redis-cli -p "${port[$1]}" PING 2>/dev/null)" == PONG ]]; then
            ready_ms=$(( $(now_ms) - t0 ))
            return
        fi
        if ! kill -0 "$p" 2>/dev/null; then
            echo "measure-1m.sh: $1 exited at start; logs in $work" >&2
            cat "$work/$1.log" >&2
            exit 1
        fi
        sleep 0.01
    done
    echo "measure-1m.sh: $1 not ready within 120 s" >&2
    exit 1
}

stop() { # server — without a final save
    redis-cli -p "${port[$1]}" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    wait "${pid[$1]}" 2>/dev/null || true
    unset "pid[$1]"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/${pid[$1]}/status"; }

dbsize() { redis-cli -p "${port[$1]}" DBSIZE; }

# `redis-benchmark GET` over the loaded keys: "<rps> <p50 ms> <p99 ms>".
get_latency() { # server
    redis-benchmark -h 127.0.0.1 -p "${port[$1]}" -c 50 -n "$requests" -r "$keys" --csv \
        GET 'sess:00000000000000000000__rand_int__' 2>/dev/null |
        awk -F'","' '/^"GET/ { gsub(/"/, "", $7); print $2, $5, $7 }'
}

bgsave_in_progress() { # server
    redis-cli -p "${port[$1]}" INFO persistence | tr -d '\r' |
        awk -F: '$1 == "rdb_bgsave_in_progress" { print $2 }'
}

# BGSAVE after BGSAVE until the file $work/stop-saving appears; counts the saves.
save_loop() { # server
    local saves=0
    while [[ ! -e "$work/stop-saving" ]]; do
        redis-cli -p "${port[$1]}" BGSAVE >/dev/null
        while [[ "$(bgsave_in_progress "$1")" == 1 ]]; do sleep 0.01; done
        saves=$((saves + 1))
    done
    echo "$saves" >"$work/saves"
}


echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
echo "== $(redis-server --version | cut -d' ' -f1-3); sessiond $("$sessiond" --version 2>/dev/null | awk '{print $NF}')"
echo "== generating $keys SET commands"
python3 - "$keys" >"$work/dataset.resp" <<'PY'
import base64, os, sys
n = int(sys.argv[1])
out = sys.stdout.buffer
for i in range(n):
    key = b"sess:%032d" % i
    value = base64.b64encode(os.urandom(120))  # 160 bytes
    out.write(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$4\r\n3600\r\n"
              % (len(key), key, len(value), value))
PY

results="$work/results"
: >"$results"
for server in redis sessiond; do
    start "$server"
    empty="$(rss_kib "$server")"
    redis-cli -p "${port[$server]}" --pipe <"$work/dataset.resp" >/dev/null
    [[ "$(dbsize "$server")" == "$keys" ]] || {
        echo "measure-1m.sh: $server holds $(dbsize "$server") keys, not $keys" >&2
        exit 1
    }
    loaded="$(rss_kib "$server")"
    echo "$server rss_empty_kib $empty" >>"$results"
    echo "$server rss_loaded_kib $loaded" >>"$results"
    echo "-- $server: $keys keys loaded, RSS $((empty / 1024)) MiB → $((loaded / 1024)) MiB"
    if [[ $memory_only == 1 ]]; then
        stop "$server"
        continue
    fi

    read -r rps p50 p99 <<<"$(get_latency "$server")"
    echo "$server idle $rps $p50 $p99" >>"$results"
    echo "-- $server: idle GET $rps rps, p50 $p50 ms, p99 $p99 ms"

    rm -f "$work/stop-saving" "$work/saves"
    save_loop "$server" &
    saver=$!
    read -r rps p50 p99 <<<"$(get_latency "$server")"
    touch "$work/stop-saving"
    wait "$saver"
    echo "$server saving $rps $p50 $p99" >>"$results"
    echo "-- $server: GET during $(cat "$work/saves") back-to-back snapshots $rps rps, p50 $p50 ms, p99 $p99 ms"

    for round in $(seq "$rounds"); do
        t0="$(now_ms)"
        redis-cli -p "${port[$server]}" SAVE >/dev/null
        save_ms=$(( $(now_ms) - t0 ))
        if [[ $server == redis ]]; then file="$work/redis/dump.rdb"; else file="$work/sessiond/dump.sdb"; fi
        size="$(stat -c %s "$file")"
        stop "$server"
        start "$server"
        load_ms=$ready_ms
        [[ "$(dbsize "$server")" == "$keys" ]] || {
            echo "measure-1m.sh: $server loaded $(dbsize "$server") keys, not $keys" >&2
            exit 1
        }
        echo "$server save_ms $save_ms" >>"$results"
        echo "$server load_ms $load_ms" >>"$results"
        echo "$server file_bytes $size" >>"$results"
        echo "-- $server round $round/$rounds: SAVE $save_ms ms, $((size / 1024 / 1024)) MiB file, start with load $load_ms ms"
    done
    stop "$server"
done

value() { awk -v s="$1" -v m="$2" '$1 == s && $2 == m { print $3 }' "$results" | median; }
field() { awk -v s="$1" -v m="$2" -v f="$3" '$1 == s && $2 == m { print $f }' "$results"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
printf '%-34s %14s %14s %8s\n' "measure ($keys keys)" "redis" "sessiond" "s/r"
measures="rss_loaded_kib save_ms load_ms file_bytes"
[[ $memory_only == 1 ]] && measures="rss_loaded_kib"
for m in $measures; do
    r="$(value redis "$m")"; s="$(value sessiond "$m")"
    printf '%-34s %14s %14s %8s\n' "$m" "$r" "$s" "$(ratio "$s" "$r")"
done
r=$(( $(value redis rss_loaded_kib) - $(value redis rss_empty_kib) ))
s=$(( $(value sessiond rss_loaded_kib) - $(value sessiond rss_empty_kib) ))
printf '%-34s %14s %14s %8s\n' "bytes per key (RSS growth / keys)" "$((r * 1024 / keys))" "$((s * 1024 / keys))" "$(ratio "$s" "$r")"
[[ $memory_only == 1 ]] && exit 0
for m in idle saving; do
    printf '%-34s %14s %14s %8s\n' "GET p99 ms, $m" "$(field redis "$m" 5)" "$(field sessiond "$m" 5)" \
        "$(ratio "$(field sessiond "$m" 5)" "$(field redis "$m" 5)")"
    printf '%-34s %14s %14s %8s\n' "GET rps, $m" "$(field redis "$m" 3)" "$(field sessiond "$m" 3)" \
        "$(ratio "$(field sessiond "$m" 3)" "$(field redis "$m" 3)")"
done
echo
echo "save_ms/load_ms/file_bytes: medians over $rounds rounds; load_ms = process start to first PONG"
