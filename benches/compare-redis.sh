#!/usr/bin/env bash
# compare-redis.sh — sessiond against redis-server on this machine, with the same clients, in
# the same run.
#
# Starts redis-server (--save '' --appendonly no) and a release sessiond on free loopback
# ports, then, for several rounds, runs against each server in turn the chosen workloads:
#   get, set  redis-benchmark -t set,get -c 50 -d 160 -r 100000 -n N -P 1   (and -P 16)
#             sessiond-bench  set|get   -c 50 -d 160 -r 100000 -n N -P 1   (and -P 16)
#   evalsha   phpredis's session lock release, loaded with SCRIPT LOAD on each server first:
#             redis-benchmark -c 50 -r 100000 -n N -P 1 EVALSHA <sha> 1 key:__rand_int__ token
#             sessiond-bench  evalsha -c 50 -r 100000 -n N -P 1      (and both at -P 16)
#   multi     sessiond-bench  multi -c 50 -d 160 -r 100000 -n N -P 1 (and -P 16): Go scs's
#             save, MULTI; SET; PEXPIREAT; EXEC, each transaction one request
#   publish   sessiond-bench  publish --subscribers S -c 50 -d 160 -n M -P 1 (and -P 16), for
#             S = 1, 100 and 1000 subscribed connections: PUBLISH's rate, and the messages the
#             subscribers received per second ("delivered" rows). M = min(N, 25 N / S): a run
#             delivers at most 25 N messages, so that 1000 subscribers do not take 1000 times
#             as long. A server without pub/sub is reported and skipped.
# A server that refuses SCRIPT LOAD (no scripting) is reported and skipped for evalsha.
# The order of the two servers alternates from round to round. For every workload it prints
# the median throughput on each server, the median of the per-round ratios sessiond/redis
# (the machine is noisy; a ratio within one round compares like with like), the geometric
# mean of those ratios with a 95% confidence interval (Student's t over the rounds: when it
# straddles 1.00, the run cannot tell the two servers apart), and the median p99 latency on
# each server. Both servers are stopped when the script exits, however it exits.
#
# Usage: benches/compare-redis.sh [--rounds N] [--requests N] [--workloads LIST]
#                                 [--servers LIST] [--no-build]
#   --rounds N        rounds (default 3)
#   --requests N      requests per -P 1 run, for both tools (default 200000); a -P 16 run makes
#                     five times as many, so that it lasts about as long
#   --workloads LIST  comma-separated, among get,set,multi,evalsha,publish (default: all)
#   --servers LIST    comma-separated, among redis,sessiond (default: both)
#   --no-build        use the release binaries already in target/release
# SESSIOND_ARGS in the environment adds arguments to sessiond's (e.g. "--threads 1").
# Needs: redis-server and redis-benchmark (Debian/Ubuntu: apt-get install redis-server
# redis-tools), jq, and cargo unless --no-build.
set -euo pipefail

rounds=3
requests=200000
build=1
workloads=get,set,multi,evalsha,publish
servers=redis,sessiond
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
        --requests) requests="${2:?--requests needs a number}"; shift 2 ;;
        --workloads) workloads="${2:?--workloads needs a list}"; shift 2 ;;
        --servers) servers="${2:?--servers needs a list}"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare-redis.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare-redis.sh: --rounds must be a positive number" >&2; exit 64; }
[[ "$requests" =~ ^[1-9][0-9]*$ ]] || { echo "compare-redis.sh: --requests must be a positive number" >&2; exit 64; }
# Whether the comma-separated list $1 names $2.
listed() { [[ ",$1," == *",$2,"* ]]; }
for workload in ${workloads//,/ }; do
    case "$workload" in
        get|set|multi|evalsha|publish) ;;
        *) echo "compare-redis.sh: --workloads: unknown workload '$workload' (get, set, multi, evalsha, publish)" >&2; exit 64 ;;
    esac
done
for server in ${servers//,/ }; do
    case "$server" in
        redis|sessiond) ;;
        *) echo "compare-redis.sh: --servers: unknown server '$server' (redis, sessiond)" >&2; exit 64 ;;
    esac
done
[[ -n "${workloads//,/}" ]] || { echo "compare-redis.sh: --workloads is empty" >&2; exit 64; }
[[ -n "${servers//,/}" ]] || { echo "compare-redis.sh: --servers is empty" >&2; exit 64; }

# phpredis's session lock release (redis_session.c), verbatim, and its SHA1.
lock_release='if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end'
lock_release_sha=b70c2384248f88e6b75b9f89241a180f856ad852

# The neutral client's parameters (issue 5): 50 connections, 160-byte values, 100,000 keys.
clients=50
value_size=160
keyspace=100000

missing=()
for tool in redis-server redis-benchmark redis-cli jq; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "compare-redis.sh: missing: ${missing[*]}" >&2
    echo "  install them with: apt-get install redis-server redis-tools jq" >&2
    exit 69
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/common.sh
. "$root/benches/common.sh"
if [[ $build == 1 ]]; then
    echo "== building sessiond and sessiond-bench (release)"
    (cd "$root" && cargo build --release --quiet -p sessiond -p sessiond-bench)
fi
target="${CARGO_TARGET_DIR:-$root/target}/release"
sessiond="$target/sessiond"
bench="$target/sessiond-bench"
for binary in "$sessiond" "$bench"; do
    [[ -x "$binary" ]] || { echo "compare-redis.sh: $binary not built (drop --no-build)" >&2; exit 69; }
done

work="$(mktemp -d)"
redis_pid=""
sessiond_pid=""
cleanup() {
    local pid
    for pid in "$redis_pid" "$sessiond_pid"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# Requests per run at a pipeline depth: deeper pipelines run that much faster.
requests_at() { # pipeline
    if (( $1 > 1 )); then echo $((requests * 5)); else echo "$requests"; fi
}

wait_ready() { # name port pid log
    for _ in $(seq 100); do
        if redis-cli -p "$2" PING 2>/dev/null | grep -q PONG; then
            return
        fi
        if ! kill -0 "$3" 2>/dev/null; then
            echo "compare-redis.sh: $1 exited at start; its log:" >&2
            cat "$4" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "compare-redis.sh: $1 did not answer PING on port $2 within 10 s" >&2
    exit 1
}

redis_port=""
sessiond_port=""
if listed "$servers" redis; then
    redis_port="$(free_port)"
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$work/redis.log" &
    redis_pid=$!
    wait_ready redis-server "$redis_port" "$redis_pid" "$work/redis.log"
fi

if listed "$servers" sessiond; then
    sessiond_port="$(free_port)"
    while [[ "$sessiond_port" == "$redis_port" ]]; do sessiond_port="$(free_port)"; done
    # shellcheck disable=SC2086 # SESSIOND_ARGS is a list of arguments
    # No append-only log, as Redis here (--appendonly no): the log is on by default.
    "$sessiond" --port "$sessiond_port" --appendonly no --log-level warn ${SESSIOND_ARGS:-} \
        2>"$work/sessiond.log" &
    sessiond_pid=$!
    wait_ready sessiond "$sessiond_port" "$sessiond_pid" "$work/sessiond.log"
fi

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
[[ -z "$redis_port" ]] || echo "== $(redis-server --version | cut -d' ' -f1-3) on port $redis_port"
[[ -z "$sessiond_port" ]] || echo "== sessiond $("$sessiond" --version 2>/dev/null | awk '{print $NF}') ${SESSIOND_ARGS:-} on port $sessiond_port"
echo "== $rounds rounds of $requests requests per -P 1 run and $(requests_at 16) per -P 16 run, -c $clients -d $value_size -r $keyspace"
echo "== workloads: $workloads"

# results: one line per run: workload server rps p99_ms
results="$work/results"
: >"$results"

run_redis_benchmark() { # server port pipeline tests
    local csv
    csv="$(redis-benchmark -h 127.0.0.1 -p "$2" -t "$4" -c "$clients" -d "$value_size" \
        -r "$keyspace" -n "$(requests_at "$3")" -P "$3" --csv 2>/dev/null)"
    # "SET","81037.28","avg","min","p50","p95","p99","max"
    awk -F'","' -v server="$1" -v p="$3" '
        /^"(SET|GET)"/ { gsub(/"/, "", $1); gsub(/"/, "", $7);
                         printf "redis-benchmark_%s_-P_%s %s %s %s\n", $1, p, server, $2, $7 }' \
        <<<"$csv" >>"$results"
}

run_redis_benchmark_evalsha() { # server port pipeline
    local csv
    csv="$(redis-benchmark -h 127.0.0.1 -p "$2" -c "$clients" -r "$keyspace" \
        -n "$(requests_at "$3")" -P "$3" --csv \
        EVALSHA "$lock_release_sha" 1 key:__rand_int__ token 2>/dev/null)"
    # "EVALSHA <sha> 1 key:__rand_int__ token","8163.27","avg","min","p50","p95","p99","max"
    awk -F'","' -v server="$1" -v p="$3" '
        /^"EVALSHA / { gsub(/"/, "", $7);
                       printf "redis-benchmark_EVALSHA_-P_%s %s %s %s\n", p, server, $2, $7 }' \
        <<<"$csv" >>"$results"
}

# Loads the lock release script; fails, saying why, if the server does not answer its SHA1.
load_script() { # server port
    local sha
    sha="$(redis-cli -p "$2" SCRIPT LOAD "$lock_release" 2>&1)"
    if [[ "$sha" != "$lock_release_sha" ]]; then
        echo "compare-redis.sh: $1 refused SCRIPT LOAD ($sha); evalsha skipped on it" >&2
        return 1
    fi
}

run_sessiond_bench() { # server port pipeline workload
    local json
    json="$("$bench" "$4" --host 127.0.0.1 --port "$2" -c "$clients" -d "$value_size" \
        -r "$keyspace" -n "$(requests_at "$3")" -P "$3" --json)"
    if [[ "$(jq .errors <<<"$json")" != 0 ]]; then
        echo "compare-redis.sh: sessiond-bench $4 against $1 had errors: $(jq -r .first_error <<<"$json")" >&2
    fi
    jq -r --arg name "sessiond-bench_${4^^}_-P_$3" --arg server "$1" \
        '"\($name) \($server) \(.throughput_rps) \(.latency_ms.p99)"' <<<"$json" >>"$results"
}

# PUBLISH to 1, 100 and 1000 subscribers: two rows per run, PUBLISH's rate and the messages
# delivered per second (each with PUBLISH's p99).
run_publish() { # server port pipeline
    local subscribers json n
    for subscribers in 1 100 1000; do
        n=$((requests * 25 / subscribers))
        (( n <= requests )) || n=$requests
        if ! json="$("$bench" publish --host 127.0.0.1 --port "$2" --subscribers "$subscribers" \
            -c "$clients" -d "$value_size" -n "$n" -P "$3" --json)"; then
            echo "compare-redis.sh: sessiond-bench publish failed against $1 (see above); publish skipped on it" >&2
            return 0
        fi
        if [[ "$(jq .errors <<<"$json")" != 0 ]]; then
            echo "compare-redis.sh: sessiond-bench publish --subscribers $subscribers against $1 had errors: $(jq -r .first_error <<<"$json")" >&2
        fi
        jq -r --arg name "publish_${subscribers}_subs_-P_$3" --arg server "$1" \
            '"\($name) \($server) \(.throughput_rps) \(.latency_ms.p99)"' <<<"$json" >>"$results"
        jq -r --arg name "delivered_${subscribers}_subs_-P_$3" --arg server "$1" \
            '"\($name) \($server) \(.delivery.messages_per_s) \(.latency_ms.p99)"' <<<"$json" >>"$results"
    done
}

one_server() { # server port pipeline
    local tests=""
    redis-cli -p "$2" FLUSHALL >/dev/null
    listed "$workloads" set && tests+=set,
    listed "$workloads" get && tests+=get,
    if [[ -n "$tests" ]]; then
        run_redis_benchmark "$1" "$2" "$3" "${tests%,}"
    fi
    listed "$workloads" set && run_sessiond_bench "$1" "$2" "$3" set
    listed "$workloads" get && run_sessiond_bench "$1" "$2" "$3" get
    listed "$workloads" multi && run_sessiond_bench "$1" "$2" "$3" multi
    if listed "$workloads" evalsha && load_script "$1" "$2"; then
        run_redis_benchmark_evalsha "$1" "$2" "$3"
        run_sessiond_bench "$1" "$2" "$3" evalsha
    fi
    listed "$workloads" publish && run_publish "$1" "$2" "$3"
    return 0
}

for round in $(seq "$rounds"); do
    for pipeline in 1 16; do
        if (( round % 2 )); then
            order="redis sessiond"
        else
            order="sessiond redis"
        fi
        for server in $order; do
            listed "$servers" "$server" || continue
            if [[ $server == redis ]]; then port=$redis_port; else port=$sessiond_port; fi
            echo "-- round $round/$rounds, -P $pipeline, $server"
            one_server "$server" "$port" "$pipeline"
        done
    done
done


# The geometric mean of ratios (one per line) and its 95% confidence interval: "mean low high".
geomean_interval() {
    awk '
        # Student t, two-sided 95%, by degrees of freedom (1.96 beyond 30).
        BEGIN { split("12.71 4.30 3.18 2.78 2.57 2.45 2.36 2.31 2.26 2.23 2.20 2.18 2.16 2.14 2.13 " \
                      "2.12 2.11 2.10 2.09 2.09 2.08 2.07 2.07 2.06 2.06 2.06 2.05 2.05 2.05 2.04", t, " ") }
        $1 > 0 { x[++n] = log($1); sum += x[n] }
        END {
            if (n == 0) { print "nan nan nan"; exit }
            mean = sum / n
            if (n == 1) { printf "%f nan nan\n", exp(mean); exit }
            for (i = 1; i <= n; i++) ss += (x[i] - mean) ^ 2
            half = ((n - 1 <= 30) ? t[n - 1] : 1.96) * sqrt(ss / (n - 1) / n)
            printf "%f %f %f\n", exp(mean), exp(mean - half), exp(mean + half)
        }'
}

# The median of the numbers on standard input, or nothing when there are none.
median_of() { local figures; figures="$(cat)"; if [[ -n "$figures" ]]; then median <<<"$figures"; fi; }

# $1 printed with format $2, or "-" when there is no figure.
number() { if [[ -n "$1" ]]; then printf "$2" "$1"; else echo -; fi; }

echo
printf '%-30s %11s %12s %6s %17s %10s %12s\n' "workload" "redis rps" "sessiond rps" "ratio" "geomean [95% CI]" "redis p99" "sessiond p99"
for workload in $(awk '{ print $1 }' "$results" | awk '!seen[$0]++'); do
    redis_rps="$(awk -v w="$workload" '$1 == w && $2 == "redis" { print $3 }' "$results" | median_of)"
    sessiond_rps="$(awk -v w="$workload" '$1 == w && $2 == "sessiond" { print $3 }' "$results" | median_of)"
    redis_p99="$(awk -v w="$workload" '$1 == w && $2 == "redis" { print $4 }' "$results" | median_of)"
    sessiond_p99="$(awk -v w="$workload" '$1 == w && $2 == "sessiond" { print $4 }' "$results" | median_of)"
    # Pairwise: the i-th sessiond run against the i-th redis run of the same workload (same round).
    ratios="$(paste <(awk -v w="$workload" '$1 == w && $2 == "sessiond" { print $3 }' "$results") \
                    <(awk -v w="$workload" '$1 == w && $2 == "redis" { print $3 }' "$results") |
              awk '$2 > 0 { print $1 / $2 }')"
    if [[ -z "$ratios" ]]; then
        # One server only (--servers, or one refused the workload): its figures, no ratio.
        printf '%-30s %11s %12s %6s %17s %10s %12s\n' "${workload//_/ }" \
            "$(number "$redis_rps" %.0f)" "$(number "$sessiond_rps" %.0f)" - - \
            "$(number "$redis_p99" %.3fms)" "$(number "$sessiond_p99" %.3fms)"
        continue
    fi
    ratio="$(median <<<"$ratios")"
    read -r mean low high <<<"$(geomean_interval <<<"$ratios")"
    printf '%-30s %11.0f %12.0f %6.2f %5.2f [%.2f-%.2f] %8.3fms %10.3fms\n' "${workload//_/ }" \
        "$redis_rps" "$sessiond_rps" "$ratio" "$mean" "$low" "$high" "$redis_p99" "$sessiond_p99"
done
echo
echo "ratio: median over rounds of sessiond rps / redis rps in the same round (> 1: sessiond faster)"
echo "geomean: geometric mean of the same ratios, with its 95% confidence interval over the rounds"
echo "p99: median over rounds, milliseconds"
if listed "$workloads" publish; then
    echo "publish: PUBLISH requests/s; delivered: messages the subscribers received per second (p99: PUBLISH's)"
fi
