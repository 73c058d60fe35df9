#!/usr/bin/env python3
"""Load harness: gatehouse, nginx proxy_cache and Varnish in front of one origin,
every request shape users run, alternated in one run.

One origin (`gatehouse demo-origin`, `GET /bench/bytes/{size}/{key}?delay_ms=N`) and,
in front of it, each started once and kept for the whole run:

  gatehouse   release binary, memory store, plain listener (HTTP/1.1 and h2c)
  gatehouse-tls  the same with [server.tls] (HTTP/1.1 and h2 by ALPN)
  gatehouse-l2   redis store on a redis-server of its own, cache.max_bytes 8 MiB
  nginx       nginx proxy_cache (worker_processes auto, sendfile, tcp_nopush, keepalive
              upstream; a second one with tcp_nopush off for the 100 KiB shapes):
              one plain HTTP/1.1 listener, one h2c, one TLS (h1 and h2 by ALPN)
  varnish     varnishd, malloc storage, feature=+http2 (no TLS: Varnish has none)

Every cached shape is warmed and checked (gatehouse `Cache-Status: ...; hit`, nginx
`X-Cache-Status: HIT`, Varnish `X-Cache: HIT`) before it is loaded; then each target
runs ROUNDS rounds, the order rotating every round. Shapes (name: tool, what):

  h1-1k-c50, h1-1k-c500, h1-100k-c50, h1-100k-c500   wrk, L1 hits of one URL
  h2-c50x10        h2load -c50 -m10 (h2c), L1 hits
  tls-h1-c50       wrk over TLS, L1 hits
  tls-h2-c50x10    h2load over TLS (ALPN h2), L1 hits
  l2-zipf          wrk + benches/zipf.lua over 80 000 1 KiB keys (10x the 8 MiB L1 of
                   gatehouse-l2; zipf s=1), beside `redis-benchmark GET -d 1024`
                   on gatehouse-l2's own Redis
  auth             gatehouse L1 hits with auth off, HS256 and ES256 tokens
  miss-20          wrk + benches/mix.lua: 80 % hits of 100 keys, 20 % never-seen
                   keys from an origin answering after 5 ms

and two memory readings of gatehouse: idle RSS after start, and RSS per L1 entry
(beyond key and body) after filling 100 000 entries of 16 bytes over a redis store.

Prints markdown: per shape, every round, then medians with min..max and the ratio
to nginx (and Varnish). PROFILE=1 records `perf record -g` of gatehouse during its
first round of each shape and writes the top of the report to
benches/profiles/<shape>.txt with the commit measured.

Usage: benches/shapes.py   (env: ROUNDS=3 DURATION=10 (seconds) SHAPES=a,b,...
        SKIP_BUILD=1 to reuse target/release/gatehouse, PROFILE=1, KEEP=1 keeps the
        work directory)
Needs: cargo, nginx, varnishd, wrk, h2load, redis-server, redis-benchmark, openssl,
curl (Debian: nginx-light varnish wrk nghttp2-client redis-server openssl curl).
Everything listens on 127.0.0.1, on free ports; every process started is stopped.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHES = os.path.join(ROOT, "benches")
BIN = os.path.join(ROOT, "target", "release", "gatehouse")

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "10"))
PROFILE = os.environ.get("PROFILE") == "1"
ALL_SHAPES = [
    "h1-1k-c50",
    "h1-1k-c500",
    "h1-100k-c50",
    "h1-100k-c500",
    "h2-c50x10",
    "tls-h1-c50",
    "tls-h2-c50x10",
    "l2-zipf",
    "auth",
    "miss-20",
    "memory",
]
SHAPES = [s for s in os.environ.get("SHAPES", ",".join(ALL_SHAPES)).split(",") if s]

L2_KEYS = 80_000
L2_L1_BYTES = "8MiB"
FILL_ENTRIES = 100_000
FILL_BODY = 16
SECRET = "bench-secret-of-at-least-thirty-two-bytes"

procs = []


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, argv, work, **kw):
    out = open(os.path.join(work, f"{name}.log"), "w")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_http(url, headers=None, insecure=False, timeout=15, process=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            return curl_head(url, headers, insecure)
        except RuntimeError as e:
            last = e
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url} within {timeout} s: {last}")


def curl_head(url, headers=None, insecure=False, http2=False):
    """GET url with curl; returns the response headers as a lowercase dict."""
    argv = ["curl", "-fsS", "-o", "/dev/null", "-D", "-"]
    if insecure:
        argv.append("-k")
    if http2:
        argv.append("--http2-prior-knowledge" if url.startswith("http:") else "--http2")
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    r = subprocess.run(argv + [url], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    heads = {}
    for line in r.stdout.splitlines()[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            heads[k.strip().lower()] = v.strip()
    return heads


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ------------------------------------------------------------------ setup


def certificate(work):
    key = os.path.join(work, "tls.key")
    crt = os.path.join(work, "tls.crt")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True)
    return crt, key


def es_keys(work):
    key = os.path.join(work, "ec.pem")
    pub = os.path.join(work, "ec.pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub],
                   check=True, capture_output=True)
    return key, pub


def mint(alg, ec_key):
    """A JWT valid for two hours, signed with HS256 (the bench secret) or ES256."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    now = int(time.time())
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "bench-user", "jti": "bench-" + alg, "iat": now,
                           "exp": now + 7200, "aud": "bench"}).encode())
    msg = f"{head}.{body}".encode()
    if alg == "HS256":
        sig = hmac.new(SECRET.encode(), msg, hashlib.sha256).digest()
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
    return f"{head}.{body}.{b64(sig)}"


def start_origin(work):
    p = start("origin", [BIN, "demo-origin", "--listen", "127.0.0.1:0"], work)
    path = os.path.join(work, "origin.log")
    for _ in range(100):
        m = re.search(r"http://([0-9.:]+)", open(path).read())
        if m:
            return m.group(1)
        time.sleep(0.1)
    raise RuntimeError("the demo origin printed no address: " + open(path).read())


def start_redis(work, name):
    port = free_port()
    start(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", work], work)
    for _ in range(100):
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                           text=True)
        if r.stdout.strip() == "PONG":
            return port
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not start")


def start_gatehouse(work, name, origin, store="memory", redis_port=None, tls=None,
                    max_bytes="256MiB", auth=None):
    port, api, admin = free_port(), free_port(), free_port()
    store_toml = 'backend = "memory"'
    if store == "redis":
        store_toml = (f'backend = "redis"\nurl = "redis://127.0.0.1:{redis_port}"\n'
                      f'key_prefix = "bench:{name}"')
    tls_toml = ""
    if tls:
        tls_toml = f'[server.tls]\ncert = "{tls[0]}"\nkey = "{tls[1]}"\n'
    auth_toml = ""
    if auth == "HS256":
        auth_toml = ('[auth]\naudiences = ["bench"]\nalgorithms = ["HS256"]\n'
                     f'hs_secret = "{SECRET}"\n')
    elif auth:
        # ES256: `auth` is the public key file (HS* and public keys never mix).
        auth_toml = ('[auth]\naudiences = ["bench"]\nalgorithms = ["ES256"]\n'
                     f'public_key_files = ["{auth}"]\n')
    config = f"""
[server]
listen = "127.0.0.1:{port}"
api_listen = "127.0.0.1:{api}"
admin_listen = "127.0.0.1:{admin}"
shutdown_grace = "1s"
max_connections = 20000
{tls_toml}
[origin]
url = "http://{origin}"
pool_max_idle = 1024

[store]
{store_toml}

[cache]
max_bytes = "{max_bytes}"

[log]
level = "warn"
access = false

{auth_toml}
[[routes]]
path = "/bench/bytes/{{size}}/authed"
ttl = "2h"
auth = "{'required' if auth else 'off'}"
key_by = "{'sub' if auth else 'shared'}"

[[routes]]
path = "/bench/bytes/{{size}}/{{key}}"
ttl = "2h"
"""
    cfg = os.path.join(work, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(config)
    p = start(name, [BIN, "run", "--config", cfg], work)
    try:
        wait_http(f"http://127.0.0.1:{admin}/readyz", process=p)
    except RuntimeError:
        sys.exit(f"{name} did not start:\n" + open(os.path.join(work, f"{name}.log")).read())
    scheme = "https" if tls else "http"
    return {"pid": p.pid, "base": f"{scheme}://127.0.0.1:{port}",
            "api": f"http://127.0.0.1:{api}", "admin": f"http://127.0.0.1:{admin}"}


def start_nginx(work, origin, tls, nopush=True):
    """nginx at its best for the shape: `tcp_nopush on` (the usual production setting)
    sends a small answer's head and body in one segment; for 100 KiB answers at 50
    connections it made each wait for a delayed ACK (~40 ms: 1.2k req/s instead of 23k
    with it off), so those shapes get an nginx with it off."""
    d = os.path.join(work, "nginx" if nopush else "nginx-nopush-off")
    os.makedirs(os.path.join(d, "cache"))
    os.makedirs(os.path.join(d, "tmp"))
    user = ""
    if os.getuid() == 0:
        # Workers of a root master run as nobody: they need to reach and fill the cache.
        os.chmod(work, 0o755)
        subprocess.run(["chown", "-R", "nobody", d], check=True)
        user = "user nobody nogroup;"
    h1, h2c, ssl_port = free_port(), free_port(), free_port()
    conf = f"""
{user}
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush {"on" if nopush else "off"};
    keepalive_requests 100000000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:64m max_size=4g inactive=2h use_temp_path=off;
    ssl_certificate {tls[0]};
    ssl_certificate_key {tls[1]};
    upstream origin {{
        server {origin};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{h1};
        listen 127.0.0.1:{h2c} http2;
        listen 127.0.0.1:{ssl_port} ssl http2;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_key $proxy_host$request_uri;
            proxy_cache_valid 200 2h;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    p = start("nginx", ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", path, "-g",
                        "daemon off;"], work)
    wait_http(f"http://127.0.0.1:{h1}/bench/bytes/1/ping")
    return {"pid": p.pid, "h1": f"http://127.0.0.1:{h1}", "h2c": f"http://127.0.0.1:{h2c}",
            "tls": f"https://127.0.0.1:{ssl_port}"}


def start_varnish(work, origin):
    d = os.path.join(work, "varnish")
    os.makedirs(d)
    host, port = origin.rsplit(":", 1)
    vcl = os.path.join(d, "bench.vcl")
    with open(vcl, "w") as f:
        f.write(f"""vcl 4.1;
backend origin {{ .host = "{host}"; .port = "{port}"; }}
sub vcl_backend_response {{ set beresp.ttl = 2h; }}
sub vcl_deliver {{
    if (obj.hits > 0) {{ set resp.http.X-Cache = "HIT"; }} else {{ set resp.http.X-Cache = "MISS"; }}
}}
""")
    os.chmod(work, 0o755)
    os.chmod(d, 0o755)
    os.chmod(vcl, 0o644)
    listen = free_port()
    p = start("varnish", ["varnishd", "-F", "-n", d, "-a", f"127.0.0.1:{listen}", "-f", vcl,
                          "-s", "malloc,2g", "-T", f"127.0.0.1:{free_port()}",
                          "-p", "feature=+http2", "-p", "thread_pool_min=200"], work)
    wait_http(f"http://127.0.0.1:{listen}/bench/bytes/1/ping", timeout=30)
    return {"pid": p.pid, "h1": f"http://127.0.0.1:{listen}"}


# ------------------------------------------------------------------ load tools


def to_ms(v):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", v)
    n = float(m.group(1))
    return {"us": n / 1000, "ms": n, "s": n * 1000}[m.group(2)]


def wrk(url, connections, headers=None, script=None, args=()):
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{DURATION}s", "--latency"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    if script:
        argv += ["-s", os.path.join(BENCHES, script)]
    argv.append(url)
    if args:
        argv += ["--"] + list(args)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = sum(int(x) for x in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)[: ]\s*(\d+)", out))
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "raw": out}


def h2load(url, connections, streams, headers=None):
    argv = ["h2load", f"-c{connections}", f"-m{streams}", "-t1", f"-D{DURATION}",
            "--warm-up-time=1"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run(argv + [url], capture_output=True, text=True).stdout
    m = re.search(r"finished in [^,]+, ([0-9.]+) req/s", out)
    if not m:
        raise RuntimeError("h2load printed no result:\n" + out)
    rps = float(m.group(1))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1)
    failed = re.search(r"requests: .*?(\d+) failed, (\d+) errored", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    return {"rps": rps, "p50": to_ms(mean), "p99": float("nan"),
            "errors": int(failed.group(1)) + int(failed.group(2)) if failed else -1,
            "proto": proto.group(1) if proto else "?", "raw": out}


def redis_benchmark(port):
    subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set", "-d", "1024", "-r",
                    str(L2_KEYS), "-n", str(L2_KEYS * 2), "-q"], capture_output=True,
                   check=True)
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-d", "1024",
                          "-r", str(L2_KEYS), "-c", "50", "-n", "1000000", "--csv"],
                         capture_output=True, text=True, check=True).stdout
    row = [r for r in out.splitlines() if r.startswith('"GET"')][0]
    cells = [c.strip('"') for c in row.split(",")]
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    return {"rps": float(cells[1]), "p50": float(cells[4]), "p99": float(cells[6]),
            "errors": 0}


# ------------------------------------------------------------------ the run


def check_hit(name, url, headers=None, insecure=False, http2=False):
    for _ in range(3):
        h = curl_head(url, headers, insecure, http2)
    ok = ("hit" in h.get("cache-status", "") and "fwd=" not in h.get("cache-status", "")) \
        or h.get("x-cache-status") == "HIT" or h.get("x-cache") == "HIT"
    if not ok:
        raise RuntimeError(f"{name} does not answer {url} from its cache: {h}")


def profile_start(pid, shape, work):
    out = os.path.join(work, f"perf-{shape}.data")
    p = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p",
                          str(pid), "-o", out], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    return p, out


def profile_stop(p, out, shape, commit):
    p.send_signal(signal.SIGINT)
    p.wait()
    rep = subprocess.run(["perf", "report", "-i", out, "--stdio", "--no-children",
                          "--percent-limit", "0.7", "-g", "none", "--sort", "symbol"],
                         capture_output=True, text=True).stdout
    os.makedirs(os.path.join(BENCHES, "profiles"), exist_ok=True)
    with open(os.path.join(BENCHES, "profiles", f"{shape}.txt"), "w") as f:
        f.write(f"# perf record -e cpu-clock -g of gatehouse during one round of '{shape}'\n")
        f.write(f"# commit {commit}, benches/shapes.py, {time.strftime('%Y-%m-%d')}\n")
        f.write("\n".join(line for line in rep.splitlines() if line.strip()
                          and not line.startswith("# ")) + "\n")


def rounds(shape, runners, gh_pid, commit, work):
    """runners: ordered dict name -> zero-arg function returning a result."""
    names = list(runners)
    results = {n: [] for n in names}
    for r in range(ROUNDS):
        for i in range(len(names)):
            n = names[(i + r) % len(names)]
            log(f"{shape} round {r + 1}/{ROUNDS}: {n}")
            prof = None
            if PROFILE and r == 0 and n.startswith("gatehouse") and gh_pid:
                prof = profile_start(gh_pid, shape, work)
            res = runners[n]()
            if prof:
                profile_stop(*prof, shape, commit)
            results[n].append(res)
    return results


def fmt(x, d=0):
    if x != x:  # nan
        return "–"
    return f"{x:.{d}f}"


def report(shape, what, results, base="nginx"):
    print(f"\n### {shape}: {what}\n")
    print("| target | rounds req/s | median req/s (min..max) | p50 ms | p99 ms | errors | ratio to nginx | ratio to varnish |")
    print("|---|---|---|---|---|---|---|---|")
    med = {n: statistics.median(r["rps"] for r in rs) for n, rs in results.items()}
    for n, rs in results.items():
        rps = [r["rps"] for r in rs]
        p50 = statistics.median(r["p50"] for r in rs)
        p99s = [r["p99"] for r in rs]
        p99 = statistics.median(p99s) if all(p == p for p in p99s) else float("nan")
        errs = sum(r["errors"] for r in rs)
        ratio = fmt(med[n] / med[base], 2) if base in med else "–"
        vratio = fmt(med[n] / med["varnish"], 2) if "varnish" in med else "–"
        print(f"| {n} | {' '.join(fmt(x) for x in rps)} | {fmt(med[n])} ({fmt(min(rps))}..{fmt(max(rps))}) "
              f"| {fmt(p50, 3)} | {fmt(p99, 3)} | {errs} | {ratio} | {vratio} |")
    sys.stdout.flush()
    return med


def fill(url_base, keys, size, prefix, connections=8):
    """Requests /bench/bytes/{size}/{prefix}{i} for every i < keys once, over
    `connections` keep-alive connections, so that each is a miss and then cached.
    (wrk cannot stop after a number of requests: `wrk.thread:stop()` still waits out
    its -d duration.)"""
    import http.client
    import threading

    host = url_base.split("//", 1)[1]
    failures = []

    def worker(start):
        conn = http.client.HTTPConnection(host, timeout=30)
        for i in range(start, keys, connections):
            conn.request("GET", f"/bench/bytes/{size}/{prefix}{i}")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                failures.append(r.status)
        conn.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"filling {url_base}: {len(failures)} answers were not 200")


def main():
    for tool in ["nginx", "varnishd", "wrk", "h2load", "redis-server", "redis-benchmark",
                 "openssl", "curl"]:
        if not shutil.which(tool):
            sys.exit(f"shapes.py needs {tool} (Debian: apt-get install nginx-light varnish "
                     "wrk nghttp2-client redis-server openssl curl)")
    if PROFILE and not shutil.which("perf"):
        sys.exit("PROFILE=1 needs perf (Debian: linux-perf)")
    if os.environ.get("SKIP_BUILD") != "1":
        log("building the release binary")
        subprocess.run(["cargo", "build", "--release", "--bin", "gatehouse"], cwd=ROOT,
                       check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if dirty:
        commit += "+changes"
    work = tempfile.mkdtemp(prefix="gatehouse-shapes-")
    try:
        run(work, commit)
    finally:
        stop_all()
        if os.environ.get("KEEP") == "1":
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(work, commit):
    cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p' | head -1"],
                         capture_output=True, text=True).stdout.strip()
    versions = {
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "varnish": subprocess.run(["varnishd", "-V"], capture_output=True, text=True).stderr.splitlines()[0],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        "h2load": subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip(),
    }
    print(f"## shapes.py run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"- gatehouse {commit}; {os.cpu_count()} cores ({cpu}), {os.uname().sysname} "
          f"{os.uname().release}; " + "; ".join(versions.values()))
    print(f"- `ROUNDS={ROUNDS} DURATION={DURATION} benches/shapes.py`; wrk -t1, h2load -t1; "
          "every process on 127.0.0.1 sharing the cores")

    crt, key = certificate(work)
    ec_key, ec_pub = es_keys(work)
    origin = start_origin(work)
    log(f"origin at {origin}")
    gh = start_gatehouse(work, "gatehouse", origin, auth="HS256")
    gh_tls = start_gatehouse(work, "gatehouse-tls", origin, tls=(crt, key))
    ng = start_nginx(work, origin, (crt, key))
    ng_big = start_nginx(work, origin, (crt, key), nopush=False)
    vn = start_varnish(work, origin)

    def target(path, big=False):
        return {"gatehouse": gh["base"] + path, "nginx": (ng_big if big else ng)["h1"] + path,
                "varnish": vn["h1"] + path}

    summary = {}

    for shape in SHAPES:
        if shape.startswith("h1-"):
            _, size, conns = shape.split("-")
            size = {"1k": 1024, "100k": 102400}[size]
            path = f"/bench/bytes/{size}/hot"
            urls = target(path, big=size > 1024)
            for n, u in urls.items():
                check_hit(n, u)
            c = int(conns[1:])
            res = rounds(shape, {n: (lambda u=u: wrk(u, c)) for n, u in urls.items()},
                         gh["pid"], commit, work)
            summary[shape] = report(shape, f"HTTP/1.1, one cached {size}-byte URL, wrk -c{c}", res)
        elif shape == "h2-c50x10":
            path = "/bench/bytes/1024/hot"
            urls = {"gatehouse": gh["base"] + path, "nginx": ng["h2c"] + path,
                    "varnish": vn["h1"] + path}
            for n, u in urls.items():
                check_hit(n, u, http2=True)
            res = rounds(shape, {n: (lambda u=u: h2load(u, 50, 10)) for n, u in urls.items()},
                         gh["pid"], commit, work)
            summary[shape] = report(shape, "h2c (prior knowledge), 1 KiB, h2load -c50 -m10; "
                                    "p50 column is h2load's mean", res)
        elif shape.startswith("tls-"):
            path = "/bench/bytes/1024/hot"
            urls = {"gatehouse-tls": gh_tls["base"] + path, "nginx": ng["tls"] + path}
            for n, u in urls.items():
                check_hit(n, u, insecure=True)
            if shape == "tls-h1-c50":
                fns = {n: (lambda u=u: wrk(u, 50)) for n, u in urls.items()}
                what = "HTTP/1.1 over TLS 1.3 (ECDSA P-256), 1 KiB, wrk -c50"
            else:
                fns = {n: (lambda u=u: h2load(u, 50, 10)) for n, u in urls.items()}
                what = "h2 over TLS by ALPN, 1 KiB, h2load -c50 -m10; p50 column is h2load's mean"
            res = rounds(shape, fns, gh_tls["pid"], commit, work)
            summary[shape] = report(shape, what, res)
        elif shape == "l2-zipf":
            redis_port = start_redis(work, "redis-l2")
            l2 = start_gatehouse(work, "gatehouse-l2", origin, store="redis",
                                 redis_port=redis_port, max_bytes=L2_L1_BYTES)
            urls = {"gatehouse-l2": l2["base"], "nginx": ng["h1"], "varnish": vn["h1"]}
            for n, u in urls.items():
                log(f"filling {L2_KEYS} keys into {n}")
                fill(u, L2_KEYS, 1024, "z")
            before = metrics(l2["admin"])
            res = rounds(shape, {n: (lambda u=u: wrk(u, 50, script="zipf.lua",
                                                     args=(str(L2_KEYS), "1024", "z")))
                                 for n, u in urls.items()}, l2["pid"], commit, work)
            after = metrics(l2["admin"])
            res["redis-benchmark GET"] = [redis_benchmark(redis_port) for _ in range(ROUNDS)]
            med = report(shape, f"{L2_KEYS} keys of 1 KiB, zipf s=1 (wrk + zipf.lua, -c50); "
                         f"gatehouse-l2: redis store, cache.max_bytes {L2_L1_BYTES}", res)
            print("\ngatehouse-l2 answers during the rounds: " + lookups(before, after))
            print(f"gatehouse-l2 / redis-benchmark GET: "
                  f"{med['gatehouse-l2'] / med['redis-benchmark GET']:.2f}")
            summary[shape] = med
        elif shape == "auth":
            hs, es = mint("HS256", ec_key), mint("ES256", ec_key)
            gh_es = start_gatehouse(work, "gatehouse-es", origin, auth=ec_pub)
            off = gh["base"] + "/bench/bytes/1024/hot"
            authed = gh["base"] + "/bench/bytes/1024/authed"
            authed_es = gh_es["base"] + "/bench/bytes/1024/authed"
            check_hit("gatehouse", off)
            check_hit("gatehouse", authed, headers={"Authorization": f"Bearer {hs}"})
            check_hit("gatehouse-es", authed_es, headers={"Authorization": f"Bearer {es}"})
            fns = {
                # No token: a shared route's stored answer is not used for a request
                # carrying Authorization (RFC 9111 §3.5), so a token sent to an auth-off
                # route would measure the origin, not a hit.
                "gatehouse auth off": lambda: wrk(off, 50),
                "gatehouse HS256": lambda: wrk(authed, 50, headers={"Authorization": f"Bearer {hs}"}),
                "gatehouse ES256": lambda: wrk(authed_es, 50, headers={"Authorization": f"Bearer {es}"}),
                "nginx": lambda: wrk(ng["h1"] + "/bench/bytes/1024/hot", 50),
            }
            res = rounds(shape, fns, gh["pid"], commit, work)
            med = report(shape, "L1 hits of 1 KiB, wrk -c50, the same bearer token on every "
                         "request (auth off: no token)", res)
            for n in ("gatehouse HS256", "gatehouse ES256"):
                print(f"{n} costs {100 * (1 - med[n] / med['gatehouse auth off']):.1f} % of "
                      "hit throughput")
            summary[shape] = med
        elif shape == "miss-20":
            urls = {"gatehouse": gh["base"], "nginx": ng["h1"], "varnish": vn["h1"]}
            for n, u in urls.items():
                fill(u, 100, 1024, "mixhot")
            nonce = iter(range(1, 1_000_000))
            res = rounds(shape, {n: (lambda u=u, n=n: wrk(u, 50, script="mix.lua",
                                                          args=(f"{n.replace(' ', '')}{next(nonce)}",)))
                                 for n, u in urls.items()}, gh["pid"], commit, work)
            summary[shape] = report(shape, "80 % hits of 100 cached keys, 20 % new keys from an "
                                    "origin answering after 5 ms, 1 KiB, wrk -c50", res)
        elif shape == "memory":
            memory(work, origin)
        else:
            sys.exit(f"unknown shape {shape}")

    print("\n### summary: median req/s ratio to nginx\n")
    print("| shape | " + " | ".join(["target", "ratio"]) + " |")
    print("|---|---|---|")
    for shape, med in summary.items():
        base = med.get("nginx")
        for n, v in med.items():
            if n != "nginx" and base:
                print(f"| {shape} | {n} | {v / base:.2f} |")


def metrics(admin):
    with urllib.request.urlopen(admin + "/metrics") as r:
        return r.read().decode()


def lookups(before, after):
    """The change of gatehouse_cache_lookups_total by result between two scrapes."""
    def parse(text):
        out = {}
        for line in text.splitlines():
            if line.startswith("gatehouse_cache_lookups_total{"):
                labels, value = line.rsplit(" ", 1)
                out[labels] = float(value)
        return out
    b, a = parse(before), parse(after)
    diffs = {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0) > 0}
    total = sum(diffs.values()) or 1
    return ", ".join(f"{k[len('gatehouse_cache_lookups_total'):]} {100 * v / total:.1f} %"
                     for k, v in sorted(diffs.items(), key=lambda kv: -kv[1]))


def memory(work, origin):
    idle = start_gatehouse(work, "gatehouse-idle", origin)
    time.sleep(1)
    idle_kib = rss_kib(idle["pid"])
    redis_port = start_redis(work, "redis-fill")
    g = start_gatehouse(work, "gatehouse-fill", origin, store="redis", redis_port=redis_port,
                        max_bytes="2GiB")
    # Warm the code paths and the pools (a few hundred entries), then measure.
    fill(g["base"], 500, FILL_BODY, "warm")
    time.sleep(1)
    before = rss_kib(g["pid"])
    fill(g["base"], FILL_ENTRIES, FILL_BODY, "e")
    time.sleep(2)
    after = rss_kib(g["pid"])
    with urllib.request.urlopen(g["api"] + "/v1/cache/stats") as r:
        stats = json.loads(r.read())
    host = g["base"].split("//", 1)[1]
    key_and_body = sum(len(host) + len(f"/bench/bytes/{FILL_BODY}/e{i}") + FILL_BODY
                       for i in range(FILL_ENTRIES))
    per_entry = ((after - before) * 1024 - key_and_body) / FILL_ENTRIES
    print("\n### memory\n")
    print(f"- idle RSS after start (memory store, nothing cached): {idle_kib / 1024:.1f} MiB")
    print(f"- L1 fill: {FILL_ENTRIES} entries of {FILL_BODY} bytes over a redis store: RSS "
          f"{before / 1024:.1f} -> {after / 1024:.1f} MiB; /v1/cache/stats: {json.dumps(stats)}")
    print(f"- RSS per L1 entry beyond key and body: {per_entry:.0f} bytes")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    main()
