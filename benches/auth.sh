#!/usr/bin/env bash
# Auth overhead on L1 hits: the same cached URL through the release binary with
# auth = "off", with auth = "required" and an HS256 token, and with an ES256 token.
# Every request carries the same Authorization header, so the verified-token cache
# and the revocation view answer after the first request (no signature check, no
# store round trip). The origin is nginx with its own config on a free port; it
# answers `Cache-Control: public, max-age=3600`, so the answer is shared even with
# Authorization and every measured request is an L1 hit.
#
# Usage: benches/auth.sh [duration, default 10s]
# Needs: wrk, nginx, openssl, python3 (stdlib only), curl. Never binds port 80.
set -euo pipefail

DURATION="${1:-10s}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/gatehouse"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --quiet)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- origin (nginx)
ORIGIN_PORT="$(free_port)"
mkdir -p "$TMP/nginx/logs"
cat > "$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx;
  proxy_temp_path $TMP/nginx;
  fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx;
  scgi_temp_path $TMP/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    location / {
      default_type text/plain;
      add_header Cache-Control "public, max-age=3600";
      return 200 "participant 7\n";
    }
  }
}
EOF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
PIDS+=($!)

# ---------------------------------------------------------------- keys and tokens
SECRET="bench-secret-of-at-least-thirty-two-bytes"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/ec.pem" 2>/dev/null
openssl pkey -in "$TMP/ec.pem" -pubout -out "$TMP/ec.pub.pem" 2>/dev/null

# mint ALG: a JWT valid for an hour, signed with the openssl CLI.
mint() {
  python3 - "$1" "$SECRET" "$TMP/ec.pem" <<'PY'
import base64, hashlib, hmac, json, subprocess, sys, time
alg, secret, ec_key = sys.argv[1:4]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench-user", "jti": "bench-" + alg, "iat": now,
                       "exp": now + 3600, "aud": "bench"}).encode())
msg = f"{head}.{body}".encode()
if alg == "HS256":
    sig = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
else:
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", ec_key], input=msg,
                         capture_output=True, check=True).stdout
    # DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, 32 bytes each (JWS ES256).
    i = 2 if der[1] < 0x80 else 3
    def integer(i):
        n = der[i + 1]
        return der[i + 2:i + 2 + n], i + 2 + n
    r, i = integer(i)
    s, _ = integer(i)
    sig = r[-32:].rjust(32, b"\0") + s[-32:].rjust(32, b"\0")
print(f"{head}.{body}.{b64(sig)}")
PY
}
HS_TOKEN="$(mint HS256)"
ES_TOKEN="$(mint ES256)"

# ---------------------------------------------------------------- one run
# run NAME AUTH_TOML ROUTE_AUTH TOKEN
run() {
  local name="$1" auth="$2" mode="$3" token="$4"
  local listen api admin
  listen="$(free_port)"; api="$(free_port)"; admin="$(free_port)"
  cat > "$TMP/$name.toml" <<EOF
[server]
listen = "127.0.0.1:$listen"
api_listen = "127.0.0.1:$api"
admin_listen = "127.0.0.1:$admin"
shutdown_grace = "1s"

[origin]
url = "http://127.0.0.1:$ORIGIN_PORT"

[log]
level = "warn"

$auth

[[routes]]
path = "/api/participants/{id}"
ttl = "1h"
auth = "$mode"
EOF
  "$BIN" run --config "$TMP/$name.toml" &
  local pid=$!
  PIDS+=("$pid")
  local url="http://127.0.0.1:$listen/api/participants/7"
  for _ in $(seq 100); do
    curl -fs -o /dev/null -H "Authorization: Bearer $token" "$url" && break
    sleep 0.05
  done
  # The first request filled L1; this one must be a hit.
  local status
  status="$(curl -fs -D - -o /dev/null -H "Authorization: Bearer $token" "$url" | tr -d '\r' | grep -i '^cache-status:')"
  echo "== $name ($status)"
  wrk -t1 -c50 -d"$DURATION" -H "Authorization: Bearer $token" "$url" | grep -E 'Requests/sec|Latency|Non-2xx' || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

AUTH_HS=$(cat <<EOF
[auth]
audiences = ["bench"]
algorithms = ["HS256"]
hs_secret = "$SECRET"
EOF
)
AUTH_ES=$(cat <<EOF
[auth]
audiences = ["bench"]
algorithms = ["ES256"]
public_key_files = ["$TMP/ec.pub.pem"]
EOF
)

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(uname -sr)"
echo "wrk -t1 -c50 -d$DURATION, one cached URL, Authorization: Bearer <token> on every request"
run off "" off "$HS_TOKEN"
run hs256 "$AUTH_HS" required "$HS_TOKEN"
run es256 "$AUTH_ES" required "$ES_TOKEN"
run off-again "" off "$HS_TOKEN"
