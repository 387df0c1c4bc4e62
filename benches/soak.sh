#!/usr/bin/env bash
# soak.sh — a long run of the session-browse mix at 80% of sessiond's peak, with sessions
# expiring and being created throughout and periodic snapshots, reporting RSS over time, errors
# and p99 per minute.
#
# Starts a release sessiond on a free loopback port (persistence on, in a temporary data
# directory, a snapshot every --snapshot-interval), measures the peak of `sessiond-bench
# session-browse` (closed loop, 10 s), then runs the same mix open-loop (up to 16 requests in
# flight per connection) at --load percent of that peak for --minutes one-minute rounds. Every round is a new `sessiond-bench` run: its 50
# connections create --sessions sessions up front, create more throughout (4% of requests) and
# destroy some (1%); every session has a --idle idle timeout, so the sessions a round stops
# touching expire in the rounds after it. A sampler records RSS, DBSIZE and used_memory every
# 5 s. At the end it prints one line per round (throughput, p99, errors, misses, RSS at the
# round's end) and a verdict: errors must be zero and RSS flat (the largest RSS of the second
# half within 10% of the first half's, after the first round's warm-up).
#
# Usage: benches/soak.sh [--minutes N] [--load PCT] [--sessions N] [--idle DUR]
#                        [--snapshot-interval DUR] [--no-build]
#   --minutes N              one-minute rounds (default 10)
#   --load PCT               open-loop rate as a percentage of the measured peak (default 80)
#   --sessions N             sessions each round creates up front (default 20000)
#   --idle DUR               idle timeout of every session (default 20s)
#   --snapshot-interval DUR  sessiond's periodic snapshot (default 30s)
#   --no-build               use the release binaries already in target/release
# SESSIOND_ARGS in the environment adds arguments to sessiond's (e.g. "--threads 1").
# Exit code: 0 when the verdict holds, 1 when it does not.
# Needs: redis-cli (apt-get install redis-tools), jq, and cargo unless --no-build.
set -euo pipefail

minutes=10
load=80
sessions=20000
idle=20s
snapshot_interval=30s
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
        --load) load="${2:?--load needs a percentage}"; shift 2 ;;
        --sessions) sessions="${2:?--sessions needs a number}"; shift 2 ;;
        --idle) idle="${2:?--idle needs a duration}"; shift 2 ;;
        --snapshot-interval) snapshot_interval="${2:?--snapshot-interval needs a duration}"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done
for n in "$minutes" "$load" "$sessions"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: '$n' is not a positive number" >&2; exit 64; }
done
for tool in redis-cli jq; do
    command -v "$tool" >/dev/null 2>&1 || { echo "soak.sh: missing $tool (apt-get install redis-tools jq)" >&2; exit 69; }
done

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/common.sh
. "$root/benches/common.sh"
if [[ $build == 1 ]]; then
    echo "== building sessiond and sessiond-bench (release)"
    (cd "$root" && cargo build --release --quiet -p sessiond -p sessiond-bench)
fi
target="${CARGO_TARGET_DIR:-$root/target}/release"
for bin in sessiond sessiond-bench; do
    [[ -x "$target/$bin" ]] || { echo "soak.sh: $target/$bin not built (drop --no-build)" >&2; exit 69; }
done

work="$(mktemp -d)"
server_pid=""
sampler_pid=""
cleanup() {
    stop_pids "$sampler_pid" "$server_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port="$(free_port)"
mkdir "$work/data"
"$target/sessiond" --port "$port" --data-dir "$work/data" --snapshot-interval "$snapshot_interval" \
    --log-level warn ${SESSIOND_ARGS:-} >/dev/null 2>>"$work/sessiond.log" &
server_pid=$!
wait_for_pong "$port" || { echo "soak.sh: sessiond did not start" >&2; exit 1; }

bench() { # extra sessiond-bench arguments...
    "$target/sessiond-bench" session-browse -p "$port" -c 50 -r "$sessions" --ttl "$idle" \
        --json -q "$@"
}
info_field() { redis-cli -p "$port" INFO "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'; }

echo "== machine: $(nproc) cores; sessiond ${SESSIOND_ARGS:-(defaults)}; $minutes rounds of 60 s"
peak="$(bench --duration 10s | jq '.throughput_rps | floor')"
rate=$(( peak * load / 100 ))
echo "   peak (closed loop, 10 s): $peak req/s; soak at $load%: $rate req/s open loop"

# The sampler: seconds since start, RSS KiB, keys, used_memory, snapshots so far.
start_s=$(date +%s)
(
    while kill -0 "$server_pid" 2>/dev/null; do
        rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo 0)"
        keys="$(redis-cli -p "$port" DBSIZE 2>/dev/null || echo -)"
        used="$(info_field memory used_memory_dataset 2>/dev/null || echo -)"
        saves="$(info_field persistence rdb_saves 2>/dev/null || echo -)"
        echo "$(( $(date +%s) - start_s )) $rss $keys $used $saves"
        sleep 5
    done
) >"$work/samples" &
sampler_pid=$!

printf '   %-6s %10s %9s %7s %9s %10s %9s\n' round "req/s" "p99 ms" errors misses "RSS MiB" keys
errors_total=0
for round in $(seq "$minutes"); do
    # Up to 16 requests in flight per connection: with one, a connection's own round trip
    # caps it near the rate it must keep, and a pause (a snapshot, an expiry burst) leaves a
    # backlog its 50 connections cannot drain, which the open loop then reports as seconds
    # of latency. The server's load is the same; the client no longer limits the recovery.
    bench --duration 60s --rate "$rate" -P 16 >"$work/round-$round.json"
    report="$work/round-$round.json"
    errors="$(jq .errors "$report")"
    errors_total=$(( errors_total + errors ))
    rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")"
    echo "$round $rss" >>"$work/round-rss"
    printf '   %-6s %10.0f %9.3f %7s %9s %10.1f %9s\n' "$round" \
        "$(jq .throughput_rps "$report")" "$(jq .latency_ms.p99 "$report")" "$errors" \
        "$(jq .misses "$report")" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
        "$(redis-cli -p "$port" DBSIZE)"
    first_error="$(jq -r '.first_error // empty' "$report")"
    [[ -n "$first_error" ]] && echo "          first error: $first_error"
done

echo "   RSS samples (s, MiB, keys, used_memory MiB, snapshots):"
awk '{ printf "     %5d %8.1f %9s %8.1f %4s\n", $1, $2 / 1024, $3, ($4 == "-" ? 0 : $4 / 1048576), $5 }' \
    "$work/samples" | awk 'NR % 6 == 1'
saves="$(info_field persistence rdb_saves)"
save_status="$(info_field persistence rdb_last_bgsave_status)"
echo "   snapshots written: $saves, last status: $save_status"

# Flat: after round 1 (the warm-up that fills the allocator), the largest RSS at the end of a
# round in the second half is within 10% of the largest in the first half.
verdict="$(awk -v n="$minutes" '
    NR > 1 { if ($1 <= (n + 1) / 2) { a = ($2 > a ? $2 : a) } else { b = ($2 > b ? $2 : b) } }
    END {
        if (n < 3) { print "too short to judge RSS"; exit }
        printf "RSS first half max %.1f MiB, second half max %.1f MiB: %s", a / 1024, b / 1024,
            (b <= a * 1.10 ? "flat" : "GROWING")
    }' "$work/round-rss")"
echo "   $verdict; errors $errors_total"
if [[ "$errors_total" -ne 0 || "$verdict" == *GROWING* || "$save_status" != ok ]]; then
    echo "== soak: FAILED"
    exit 1
fi
echo "== soak: passed"
