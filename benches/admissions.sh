#!/usr/bin/env bash
# Admissions per second through gatehouse's api listener, beside the raw rate of the
# same script (lua/capacity_admit.lua) run by redis-benchmark via EVALSHA on the same
# redis-server — the limit gatehouse cannot beat. Also the memory store, for the
# sidecar's own cost without Redis.
#
#   benches/admissions.sh                 # 10s per run, 50 connections
#   DURATION=30 CONNECTIONS=100 benches/admissions.sh
#
# Needs redis-server, redis-cli, redis-benchmark, wrk, python3; builds a release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 200); do if eval "$1" >/dev/null 2>&1; then return 0; fi; sleep 0.05; done; echo "timed out: $1" >&2; exit 1; }

cargo build --release --bin gatehouse >&2
BIN=target/release/gatehouse

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
wait_for "redis-cli -p $REDIS_PORT ping"

run_gatehouse() { # $1 = store section; sets API (address) and GH_PID
  local admin proxy
  API="127.0.0.1:$(free_port)"; admin=$(free_port); proxy=$(free_port)
  cat >"$WORK/gatehouse.toml" <<TOML
[server]
listen = "127.0.0.1:$proxy"
api_listen = "$API"
admin_listen = "127.0.0.1:$admin"
[log]
level = "warn"
$1
TOML
  "$BIN" run --config "$WORK/gatehouse.toml" >&2 &
  GH_PID=$!
  PIDS+=("$GH_PID")
  wait_for "curl -sf http://127.0.0.1:$admin/readyz"
}

admissions_via_api() { # $1 = api address, $2 = label
  local url="http://$1/v1/capacity/bench/$2"
  curl -sf -X PUT "$url" -H 'content-type: application/json' -d '{"capacity": 4294967295}' >/dev/null
  echo "== gatehouse api ($2): wrk -t1 -c$CONNECTIONS -d${DURATION}s, distinct memberIds"
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/admissions.lua "http://$1" -- "/v1/capacity/bench/$2/admissions" \
    | grep -E "Requests/sec|Latency|status"
  echo "counter after the run: $(curl -sf "$url")"
}

run_gatehouse "[store]
backend = \"redis\"
url = \"redis://127.0.0.1:$REDIS_PORT\"
key_prefix = \"bench\""
admissions_via_api "$API" redis
kill "$GH_PID"

# The same script, straight into the same Redis: EVALSHA with the keys gatehouse uses.
NAME="raw/c1"
SHARD=$(( 16#$(printf '%s' "$NAME" | sha256sum | cut -c1-4) % 16 ))
TAG=$(printf 'bench:cap:{cap%02d}' "$SHARD")
SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$(cat lua/capacity_admit.lua)")
N=$(( DURATION * 50000 ))
echo "== redis-benchmark: EVALSHA capacity_admit.lua, -c$CONNECTIONS, -n $N, random memberIds"
redis-benchmark -p "$REDIS_PORT" -c "$CONNECTIONS" -n "$N" -r 100000000 -q \
  EVALSHA "$SHA" 3 "$TAG:$NAME" "$TAG:$NAME/members" "$TAG:dirty" "m-__rand_int__" 4294967295 "$NAME" \
  | tr '\r' '\n' | grep "requests per second" | sed 's/.*raw\/c1: //'
echo "counter after the run: count=$(redis-cli -p "$REDIS_PORT" SCARD "$TAG:$NAME/members")"

run_gatehouse "[store]
backend = \"memory\""
admissions_via_api "$API" memory
kill "$GH_PID"

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
