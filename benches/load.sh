#!/usr/bin/env bash
# Load harness: one origin, three ways to reach it, measured side by side in one run.
#
#   origin    the demo origin directly (`gatehouse demo-origin`, GET /bench/static, 1 KiB)
#   gatehouse gatehouse (memory store, route ttl 10m) in front of it: every request an L1 hit
#   nginx     nginx proxy_cache in front of the same origin: every request a cache HIT
#   nginx-1w  the same with `worker_processes 1`
#
# Each target is warmed, checked to answer from its cache, then loaded with
# `wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency`, $ROUNDS rounds, the order
# rotating each round so no target always runs first. Prints a markdown table (req/s,
# p50, p99 per target and round, then the medians). Everything listens on 127.0.0.1
# on free ports; every process started here is stopped on exit.
#
# Fairness: nginx gets `worker_processes auto` (one worker per core) because
# gatehouse runs a multi-threaded runtime on every core; with wrk on the same two
# cores one worker may sit descheduled with its connections, so `nginx-1w` shows
# nginx with a single worker too. Both keep idle upstream
# connections (nginx `keepalive`, gatehouse's pool); nginx's access log is off
# (gatehouse writes none); nginx's `keepalive_requests` is raised so that neither
# closes client connections during a run.
#
# Usage: benches/load.sh   (env: ROUNDS=3 DURATION=10s CONNECTIONS=50 THREADS=1
#                            SKIP_BUILD=1 to reuse target/release/gatehouse)
# Needs: cargo, nginx, wrk, curl.

set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-1}"
TARGETS=(origin gatehouse nginx nginx-1w)
PATH_UNDER_TEST="/bench/static"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

for tool in cargo nginx wrk curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "load.sh needs $tool (Debian: apt-get install nginx-light wrk curl)" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '==> %s\n' "$*" >&2; }

# A port nobody listens on now (probed with bash's /dev/tcp).
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}

# Waits (at most 10 s) until `curl URL` succeeds.
wait_http() {
  local url="$1"
  for _ in $(seq 100); do
    if curl -fs -o /dev/null "$url"; then
      return
    fi
    sleep 0.1
  done
  echo "nothing answered at $url within 10 s" >&2
  return 1
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building the release binary"
  cargo build --release --bin gatehouse
fi
bin="$repo_root/target/release/gatehouse"

log "starting the demo origin"
"$bin" demo-origin --listen 127.0.0.1:0 >"$work/origin.out" 2>&1 &
pids+=("$!")
origin_addr=""
for _ in $(seq 100); do
  origin_addr="$(grep -o 'http://[0-9.:]*' "$work/origin.out" || true)"
  [ -n "$origin_addr" ] && break
  sleep 0.1
done
if [ -z "$origin_addr" ]; then
  cat "$work/origin.out" >&2
  exit 1
fi
origin_addr="${origin_addr#http://}"

log "starting gatehouse"
gh_port="$(free_port)"
gh_admin="$(free_port)"
cat >"$work/gatehouse.toml" <<EOF
[server]
listen = "127.0.0.1:$gh_port"
api_listen = "127.0.0.1:$(free_port)"
admin_listen = "127.0.0.1:$gh_admin"

[origin]
url = "http://$origin_addr"

[store]
backend = "memory"

[log]
level = "warn"

[[routes]]
path = "$PATH_UNDER_TEST"
ttl = "10m"
EOF
"$bin" run --config "$work/gatehouse.toml" >"$work/gatehouse.log" 2>&1 &
pids+=("$!")
wait_http "http://127.0.0.1:$gh_admin/readyz"

# Starts nginx with proxy_cache in front of the origin; sets `nginx_started_port`.
# (Not run in a subshell, so that its pid reaches `pids` for the cleanup.)
start_nginx() {
  local name="$1" workers="$2" port dir user=""
  port="$(free_port)"
  dir="$work/$name"
  mkdir -p "$dir/cache" "$dir/tmp"
  if [ "$(id -u)" -eq 0 ]; then
    # Workers of a root master run as nobody: they need to reach and fill the cache.
    chmod 755 "$work"
    chown -R nobody "$dir"
    user="user nobody nogroup;"
  fi
  cat >"$dir/nginx.conf" <<EOF
$user
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    proxy_cache_path $dir/cache levels=1:2 keys_zone=bench:10m max_size=100m inactive=10m use_temp_path=off;
    upstream origin {
        server $origin_addr;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF
  nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
  pids+=("$!")
  wait_http "http://127.0.0.1:$port$PATH_UNDER_TEST"
  nginx_started_port="$port"
}

log "starting nginx (worker_processes auto, and 1)"
start_nginx nginx auto
nginx_port="$nginx_started_port"
start_nginx nginx-1w 1
nginx_1w_port="$nginx_started_port"

declare -A url=(
  [origin]="http://$origin_addr$PATH_UNDER_TEST"
  [gatehouse]="http://127.0.0.1:$gh_port$PATH_UNDER_TEST"
  [nginx]="http://127.0.0.1:$nginx_port$PATH_UNDER_TEST"
  [nginx-1w]="http://127.0.0.1:$nginx_1w_port$PATH_UNDER_TEST"
)

log "warming and checking that the caches answer"
for _ in 1 2 3; do
  for t in "${TARGETS[@]}"; do curl -fs -o /dev/null "${url[$t]}"; done
done
gh_status="$(curl -fsi "${url[gatehouse]}" | tr -d '\r' | grep -i '^cache-status:' || true)"
case "$gh_status" in *"gatehouse; hit"*) ;; *) echo "gatehouse is not answering from L1: $gh_status" >&2; exit 1 ;; esac
for t in nginx nginx-1w; do
  nginx_status="$(curl -fsi "${url[$t]}" | tr -d '\r' | grep -i '^x-cache-status:' || true)"
  case "$nginx_status" in *HIT*) ;; *) echo "$t is not answering from its cache: $nginx_status" >&2; exit 1 ;; esac
done
origin_total() { curl -fs "http://$origin_addr/__origin/stats" | grep -o '"total":[0-9]*' | cut -d: -f2; }
origin_before="$(origin_total)"

# Latency as wrk prints it (`812.00us`, `1.20ms`, `1.01s`) -> milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n = n * 1000
    printf "%.3f", n
  }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A rps p50 p99
rows=()
direct_requests=0
for round in $(seq "$ROUNDS"); do
  for i in "${!TARGETS[@]}"; do
    t="${TARGETS[$(((i + round - 1) % ${#TARGETS[@]}))]}"
    log "round $round/$ROUNDS: $t"
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${url[$t]}")"
    echo "$out" >"$work/wrk-$t-$round.txt"
    r="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")"
    l50="$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")"
    l99="$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
    e="$(awk '/Non-2xx|Socket errors/ { found = 1; print } END { if (!found) print "0" }' <<<"$out" | paste -sd ' ')"
    if [ "$t" = origin ]; then
      direct_requests=$((direct_requests + $(awk '/requests in/ { print $1 }' <<<"$out")))
    fi
    rps[$t]+="$r "
    p50[$t]+="$l50 "
    p99[$t]+="$l99 "
    rows+=("| $t | $round | $r | $l50 | $l99 | $e |")
  done
done

origin_after="$(origin_total)"

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, GET $PATH_UNDER_TEST (1 KiB), $ROUNDS rounds"
echo
echo "| target | round | req/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "| target | median req/s | median p50 ms | median p99 ms |"
echo "|---|---|---|---|"
for t in "${TARGETS[@]}"; do
  # shellcheck disable=SC2086 # the lists are space-separated numbers
  echo "| $t | $(median ${rps[$t]}) | $(median ${p50[$t]}) | $(median ${p99[$t]}) |"
done
echo
# wrk does not count the requests still in flight when it stops, so up to
# CONNECTIONS per direct round reach the origin uncounted; more means cache misses.
echo "origin requests beyond those wrk counted on the origin target:" \
  "$((origin_after - origin_before - direct_requests))" \
  "(<= $((CONNECTIONS * ROUNDS)) expected: requests in flight when wrk stops)"
