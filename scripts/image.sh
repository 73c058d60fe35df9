#!/usr/bin/env bash
# Builds the gatehouse OCI image without a container engine or a registry, and checks
# it without running a container engine. The Containerfile is the build for people
# who can pull base images; this script is the build that works where only Debian's,
# crates.io's, PyPI's and npm's registries are reachable (CI included):
#
#   bash scripts/image.sh                       # release binary (built when stale)
#   GATEHOUSE_IMAGE_BINARY=target/debug/gatehouse bash scripts/image.sh
#
# 1. The binary: $GATEHOUSE_IMAGE_BINARY, else target/release/gatehouse when it is
#    newer than the sources, else `cargo build --release --locked`. Stripped.
# 2. A root filesystem like distroless/cc's: the binary in /usr/local/bin, the shared
#    libraries it links (from `ldd`: glibc and libgcc_s of this Debian), /etc/passwd
#    and /etc/group with the nonroot user 65532, Debian's CA bundle, nsswitch.conf and
#    hosts, and the repository's config.toml as /etc/gatehouse/gatehouse.toml (every
#    key at its default) for the image's default command.
# 3. The image, with `buildah` when it works here (from scratch, copy, config,
#    commit, push to an oci-archive), else with tar, gzip, sha256sum and JSON written
#    by this script (the OCI image-layout: oci-layout, index.json, blobs for the
#    config, manifest and one gzip layer). GATEHOUSE_IMAGE_BUILDER=tar forces the
#    second way. Either way the result is .tools/image/gatehouse-<version>.oci.tar.
# 4. Checks on that archive, not on the builder's view of it: index -> manifest ->
#    config (user 65532, entrypoint, cmd, PATH, OCI labels, the same as the
#    Containerfile says), the layer unpacked with tar into a root filesystem, then
#    with chroot into it, as user 65532: `gatehouse --version`; `gatehouse check` on
#    the image's default config and on the chart's rendered config (helm template);
#    gatehouse run on the chart's config (ports and origin from GATEHOUSE_*
#    overrides) in front of `gatehouse demo-origin`, one curl for a miss and one for
#    a hit; then it is stopped. The uncompressed image must stay under 40 MB.
#
# Needs root (chroot, file ownership in the layer); installs buildah, binutils,
# ca-certificates and curl with apt when missing, and helm as scripts/test.sh does.

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
exec </dev/null
export DEBIAN_FRONTEND=noninteractive
started=$SECONDS

tools_dir="${GATEHOUSE_TOOLS_DIR:-$repo_root/.tools/bin}"
export PATH="$tools_dir:$PATH"
out="$repo_root/.tools/image"
image_name="${GATEHOUSE_IMAGE_NAME:-ghcr.io/gatehouse-dev/gatehouse}"
max_bytes=$((40 * 1000 * 1000))

step="setup"
work=""
pids=()
on_exit() {
  local status=$?
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$work" ] && [ -z "${GATEHOUSE_IMAGE_KEEP:-}" ]; then
    rm -rf "$work"
  fi
  if [ "$status" -ne 0 ]; then
    printf '\nimage: FAILED in: %s (exit %s)\n' "$step" "$status" >&2
  fi
}
trap on_exit EXIT
fail() {
  printf 'image: %s\n' "$*" >&2
  exit 1
}

. "$repo_root/scripts/lib.sh"

# --- tools ---------------------------------------------------------------------------
step="installing tools"
[ "$(id -u)" -eq 0 ] || fail "run as root: the checks chroot into the image and the layer keeps file owners"
command -v strip >/dev/null 2>&1 || apt_install binutils
command -v curl >/dev/null 2>&1 || apt_install curl
[ -s /etc/ssl/certs/ca-certificates.crt ] || apt_install ca-certificates
command -v helm >/dev/null 2>&1 || install_helm
builder="${GATEHOUSE_IMAGE_BUILDER:-buildah}"
case "$builder" in
  buildah)
    if ! command -v buildah >/dev/null 2>&1 && ! apt_install buildah; then
      echo "image: buildah did not install; using the tar fallback" >&2
      builder=tar
    fi
    ;;
  tar) ;;
  *) fail "GATEHOUSE_IMAGE_BUILDER must be buildah or tar, not $builder" ;;
esac
command -v python3 >/dev/null 2>&1 || apt_install python3

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
[ -n "$version" ] || fail "cannot read the package version from Cargo.toml"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
ref="$image_name:$version"

# --- 1. the binary ---------------------------------------------------------------------
step="the binary"
fresh() { # path: newer than every source that goes into it
  [ -x "$1" ] && [ -z "$(find src lua Cargo.toml Cargo.lock -newer "$1" -print -quit 2>/dev/null)" ]
}
binary="${GATEHOUSE_IMAGE_BINARY:-}"
if [ -n "$binary" ]; then
  [ -x "$binary" ] || fail "GATEHOUSE_IMAGE_BINARY=$binary is not an executable"
  fresh "$binary" || fail "$binary is older than the sources: rebuild it"
  profile="given ($binary)"
elif fresh target/release/gatehouse; then
  binary=target/release/gatehouse
  profile="release (reused)"
else
  echo "image: building the release binary (cargo build --release --locked)"
  cargo build --release --locked --bin gatehouse
  binary=target/release/gatehouse
  profile="release (built)"
fi
case "$binary" in
  */release/*) build_profile=release ;;
  */debug/*) build_profile=debug ;;
  *) build_profile=unknown ;;
esac
echo "image: binary $binary [$profile]"

# --- 2. the root filesystem ---------------------------------------------------------------
step="the root filesystem"
mkdir -p "$out"
work="$(mktemp -d "$out/work.XXXXXX")"
root="$work/rootfs"
mkdir -p "$root"/{usr/local/bin,etc/ssl/certs,etc/gatehouse,home/nonroot,tmp}
# Keep the host's merged-/usr layout (/lib -> usr/lib, ...), so the loader and the
# libraries sit where the binary's ELF header and ldd name them.
for d in bin sbin lib lib64; do
  if [ -L "/$d" ]; then
    ln -s "$(readlink "/$d")" "$root/$d"
    mkdir -p "$root/usr/$d"
  fi
done
strip --strip-all -o "$root/usr/local/bin/gatehouse" "$binary"
chmod 0755 "$root/usr/local/bin/gatehouse"
libs="$(ldd "$binary" | awk '/=> \// { print $3 } /^\t\// { print $1 }')"
[ -n "$libs" ] || fail "ldd $binary listed no libraries (a static binary needs no lib step, but this one is dynamic)"
for lib in $libs; do
  # The file, at its path with the directories resolved (/lib64 -> /usr/lib64), so
  # the path the binary asks for resolves inside the image too.
  dir="$(cd "$(dirname "$lib")" && pwd -P)"
  mkdir -p "$root$dir"
  cp -L "$lib" "$root$dir/$(basename "$lib")"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp config.toml "$root/etc/gatehouse/gatehouse.toml"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot"
find "$root" -exec touch -h -d "@$epoch" {} +
rootfs_bytes="$(du -sb "$root" | cut -f1)"
echo "image: root filesystem $((rootfs_bytes / 1000)) kB: $(echo "$libs" | xargs -n1 basename | tr '\n' ' ')"

# --- 3. the image ---------------------------------------------------------------------------
archive="$out/gatehouse-$version.oci.tar"
rm -f "$archive"
labels=(
  "org.opencontainers.image.title=gatehouse"
  "org.opencontainers.image.description=A caching, authorizing, coordinating sidecar for HTTP app servers"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.created=$created"
  "org.opencontainers.image.source=https://github.com/gatehouse-dev/gatehouse"
  "org.opencontainers.image.licenses=Apache-2.0"
  "org.opencontainers.image.ref.name=$version"
  "dev.gatehouse.build-profile=$build_profile"
)
entrypoint='["gatehouse"]'
cmd='["run","--config","/etc/gatehouse/gatehouse.toml"]'
env_path="PATH=/usr/local/bin:/usr/bin:/bin"

build_with_buildah() {
  local store="$work/storage" ctr label_args=() l
  local b=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
  for l in "${labels[@]}"; do
    label_args+=(--label "$l")
  done
  ctr="$("${b[@]}" from --quiet scratch)" || return 1
  # buildah copy makes everything root's unless told: the home directory is nonroot's.
  "${b[@]}" copy --quiet "$ctr" "$root/" / >/dev/null || return 1
  "${b[@]}" copy --quiet --chown 65532:65532 "$ctr" "$root/home" /home >/dev/null || return 1
  "${b[@]}" config \
    --entrypoint "$entrypoint" --cmd "$cmd" --user 65532:65532 --workingdir / \
    --env "$env_path" --port 8080/tcp --port 9100/tcp \
    --os linux --arch amd64 "${label_args[@]}" \
    --created-by "scripts/image.sh" "$ctr" || return 1
  "${b[@]}" commit --quiet --format oci --timestamp "$epoch" --rm "$ctr" "$ref" >/dev/null || return 1
  "${b[@]}" push --quiet "$ref" "oci-archive:$archive:$ref" || return 1
  "${b[@]}" rmi --all --force >/dev/null 2>&1 || true
}

build_with_tar() {
  local layout="$work/layout"
  mkdir -p "$layout/blobs/sha256"
  tar --sort=name --numeric-owner --mtime="@$epoch" -C "$root" -cf "$work/layer.tar" .
  gzip -n -9 -c "$work/layer.tar" >"$work/layer.tar.gz"
  local diff_id layer_digest
  diff_id="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
  layer_digest="$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)"
  mv "$work/layer.tar.gz" "$layout/blobs/sha256/$layer_digest"
  python3 - "$layout" "$diff_id" "$layer_digest" "$created" "$ref" "$version" "$entrypoint" "$cmd" "$env_path" "${labels[@]}" <<'PY'
import hashlib, json, os, sys

layout, diff_id, layer_digest, created, ref, version, entrypoint, cmd, env_path = sys.argv[1:10]
labels = dict(l.split("=", 1) for l in sys.argv[10:])
blobs = os.path.join(layout, "blobs", "sha256")

def blob(obj):
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}

config = blob({
    "created": created,
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "65532:65532",
        "Env": [env_path],
        "Entrypoint": json.loads(entrypoint),
        "Cmd": json.loads(cmd),
        "WorkingDir": "/",
        "ExposedPorts": {"8080/tcp": {}, "9100/tcp": {}},
        "Labels": labels,
    },
    "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
    "history": [{"created": created, "created_by": "scripts/image.sh"}],
})
layer_size = os.path.getsize(os.path.join(blobs, layer_digest))
manifest = blob({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
    "layers": [{
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": f"sha256:{layer_digest}",
        "size": layer_size,
    }],
    "annotations": {k: v for k, v in labels.items() if k.startswith("org.opencontainers.")},
})
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **manifest,
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }],
}
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump(index, f, separators=(",", ":"))
with open(os.path.join(layout, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
PY
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$epoch" -C "$layout" \
    -cf "$archive" oci-layout index.json blobs
}

step="the image ($builder)"
how=""
if [ "$builder" = buildah ]; then
  if build_with_buildah 2>"$work/buildah.log"; then
    how="buildah ($(buildah --version | awk '{print $3}'), vfs storage under $out, no daemon)"
  else
    echo "image: buildah could not build here; using the tar fallback. buildah said:" >&2
    sed 's/^/  /' "$work/buildah.log" >&2
    rm -f "$archive"
  fi
fi
if [ -z "$how" ]; then
  build_with_tar
  how="tar fallback (tar + gzip + sha256sum + JSON by this script)"
fi
echo "image: $ref built with $how"

# --- 4. checks on the archive -------------------------------------------------------------------
step="reading the OCI archive"
check="$work/check"
mkdir -p "$check/layout" "$check/rootfs"
tar -xf "$archive" -C "$check/layout"
layers="$(python3 - "$check/layout" "$version" "$entrypoint" "$cmd" "$env_path" Containerfile rust-toolchain.toml <<'PY'
import hashlib, json, os, re, sys

layout, version, entrypoint, cmd, env_path, containerfile, toolchain = sys.argv[1:8]
def fail(msg):
    print(f"image: {msg}", file=sys.stderr)
    sys.exit(1)
def blob(desc):
    algo, digest = desc["digest"].split(":", 1)
    path = os.path.join(layout, "blobs", algo, digest)
    data = open(path, "rb").read()
    if hashlib.sha256(data).hexdigest() != digest or len(data) != desc["size"]:
        fail(f"blob {desc['digest']} does not match its digest or size")
    return path, data

if json.load(open(os.path.join(layout, "oci-layout"))).get("imageLayoutVersion") != "1.0.0":
    fail("oci-layout is not version 1.0.0")
index = json.load(open(os.path.join(layout, "index.json")))
if len(index.get("manifests", [])) != 1:
    fail(f"index.json lists {len(index.get('manifests', []))} manifests, want 1")
_, data = blob(index["manifests"][0])
manifest = json.loads(data)
if manifest.get("mediaType", index["manifests"][0].get("mediaType")) != "application/vnd.oci.image.manifest.v1+json":
    fail(f"manifest media type {manifest.get('mediaType')}")
_, data = blob(manifest["config"])
config = json.loads(data)
c = config.get("config", {})
problems = []
want = {
    "User": "65532:65532",
    "Entrypoint": json.loads(entrypoint),
    "Cmd": json.loads(cmd),
}
for key, value in want.items():
    if c.get(key) != value:
        problems.append(f"config {key} is {c.get(key)!r}, want {value!r}")
if env_path not in c.get("Env", []):
    problems.append(f"config Env {c.get('Env')} lacks {env_path}")
if (config.get("os"), config.get("architecture")) != ("linux", "amd64"):
    problems.append(f"platform {config.get('os')}/{config.get('architecture')}")
labels = c.get("Labels") or {}
for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
    if not labels.get(f"org.opencontainers.image.{key}"):
        problems.append(f"label org.opencontainers.image.{key} missing")
if labels.get("org.opencontainers.image.version") != version:
    problems.append(f"label version {labels.get('org.opencontainers.image.version')}, want {version}")

# The Containerfile says the same as this image, and builds with the pinned toolchain.
text = open(containerfile).read()
channel = re.search(r'^channel\s*=\s*"([^"]+)"', open(toolchain).read(), re.M).group(1)
m = re.search(r"^ARG RUST_VERSION=(\S+)$", text, re.M)
if not m or m.group(1) != channel:
    problems.append(f"Containerfile ARG RUST_VERSION={m and m.group(1)} != rust-toolchain.toml channel {channel}")
for word, value in (("ENTRYPOINT", want["Entrypoint"]), ("CMD", want["Cmd"])):
    m = re.search(rf"^{word} (\[.*\])$", text, re.M)
    if not m or json.loads(m.group(1)) != value:
        problems.append(f"Containerfile {word} is not {json.dumps(value)}")
if not re.search(r"^USER 65532:65532$", text, re.M):
    problems.append("Containerfile has no USER 65532:65532")
if len(re.findall(r"^FROM ", text, re.M)) < 2:
    problems.append("Containerfile is not multi-stage")
if problems:
    fail("; ".join(problems))
compressed = manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
print(f"compressed {compressed}")
for l in manifest["layers"]:
    if not l["mediaType"].endswith("tar+gzip") and not l["mediaType"].endswith("tar"):
        fail(f"layer media type {l['mediaType']}")
    path, _ = blob(l)
    print(f"layer {path}")
PY
)" || fail "the OCI archive does not hold the image described above"
compressed="$(echo "$layers" | awk '/^compressed / { print $2 }')"
step="unpacking the layers"
echo "$layers" | awk '/^layer / { print $2 }' | while read -r layer; do
  tar --numeric-owner -xzf "$layer" -C "$check/rootfs" 2>/dev/null || tar --numeric-owner -xf "$layer" -C "$check/rootfs"
done
image_root="$check/rootfs"
unpacked="$(du -sb "$image_root" | cut -f1)"
echo "image: size $((unpacked / 1000)) kB unpacked, $((compressed / 1000)) kB compressed (config + layers)"
[ "$unpacked" -lt "$max_bytes" ] || fail "the unpacked image is $unpacked bytes, over the $max_bytes limit"
if readelf -S "$image_root/usr/local/bin/gatehouse" | grep -q '\.symtab'; then
  fail "/usr/local/bin/gatehouse in the image is not stripped"
fi
[ "$(stat -c %u "$image_root/home/nonroot")" = 65532 ] || fail "/home/nonroot is not owned by 65532"

chroot_bin="$(command -v chroot || true)"
[ -n "$chroot_bin" ] || fail "chroot (coreutils) not found on PATH"
in_image() { # VAR=value... chroot ...: with no environment but PATH and the given
  env -i PATH=/usr/local/bin:/usr/bin:/bin "$@"
}

step="gatehouse --version in the image"
said="$(in_image "$chroot_bin" --userspec=65532:65532 "$image_root" /usr/local/bin/gatehouse --version)"
[ "$said" = "gatehouse $version" ] || fail "gatehouse --version said: $said"
echo "image: chroot: $said"

step="gatehouse check in the image"
in_image "$chroot_bin" --userspec=65532:65532 "$image_root" gatehouse check --config /etc/gatehouse/gatehouse.toml >/dev/null ||
  fail "gatehouse check rejects the image's own /etc/gatehouse/gatehouse.toml"
mkdir -p "$image_root/etc/gatehouse/config"
helm template gh charts/gatehouse --show-only templates/configmap.yaml >"$work/configmap.yaml"
# The TOML is the block scalar under `gatehouse.toml: |`, indented by 4.
awk '/^  gatehouse\.toml: \|/ { on = 1; next } on && /^    / { print substr($0, 5); next } on && /^$/ { print ""; next } on { exit }' \
  "$work/configmap.yaml" >"$image_root/etc/gatehouse/config/gatehouse.toml"
grep -q '^\[server\]' "$image_root/etc/gatehouse/config/gatehouse.toml" || fail "no gatehouse.toml in the chart's rendered ConfigMap"
in_image "$chroot_bin" --userspec=65532:65532 "$image_root" gatehouse check --config /etc/gatehouse/config/gatehouse.toml
echo "image: chroot: gatehouse check passes the chart's rendered config"

step="gatehouse run in the image, in front of the demo origin"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
"$binary" demo-origin --listen 127.0.0.1:0 >"$work/origin.out" 2>&1 &
pids+=($!)
origin=""
for _ in $(seq 100); do
  origin="$(sed -n 's#^demo origin listening on \(http://.*\)$#\1#p' "$work/origin.out")"
  [ -n "$origin" ] && break
  sleep 0.1
done
[ -n "$origin" ] || { cat "$work/origin.out" >&2; fail "the demo origin did not start"; }
proxy_port="$(free_port)"
admin_port="$(free_port)"
api_port="$(free_port)"
# The chart's config, with this machine's free ports and the demo origin, and a
# default ttl so the demo origin's answers (no Cache-Control) are cached.
# Not through in_image: `&` on a function forks a subshell, and $! would be that
# subshell, not gatehouse.
env -i PATH=/usr/local/bin:/usr/bin:/bin \
  GATEHOUSE_SERVER_LISTEN="127.0.0.1:$proxy_port" \
  GATEHOUSE_SERVER_ADMIN_LISTEN="127.0.0.1:$admin_port" \
  GATEHOUSE_SERVER_API_LISTEN="127.0.0.1:$api_port" \
  GATEHOUSE_ORIGIN_URL="$origin" \
  GATEHOUSE_CACHE_DEFAULT_TTL=30s \
  GATEHOUSE_SERVER_DRAIN_DELAY=0s \
  "$chroot_bin" --userspec=65532:65532 "$image_root" gatehouse run --config /etc/gatehouse/config/gatehouse.toml \
  >"$work/run.out" 2>"$work/run.err" &
gh_pid=$!
pids+=("$gh_pid")
ready=0
for _ in $(seq 100); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$gh_pid" 2>/dev/null || break
  sleep 0.1
done
[ "$ready" -eq 1 ] || { cat "$work/run.err" >&2; fail "gatehouse in the image did not become ready"; }
status_of() {
  curl -fsS -o /dev/null -D - "http://127.0.0.1:$proxy_port/api/participants/7" | tr -d '\r' |
    sed -n 's/^cache-status: //Ip'
}
first="$(status_of)"
second="$(status_of)"
case "$first" in *fwd=miss*) ;; *) fail "first request: Cache-Status '$first', want a miss" ;; esac
case "$second" in "gatehouse; hit"*) ;; *) fail "second request: Cache-Status '$second', want a hit" ;; esac
echo "image: chroot: gatehouse run: '$first', then '$second'"
if ! head -n1 "$work/run.err" | python3 -c 'import json, sys; json.loads(sys.stdin.readline())["message"]'; then
  cat "$work/run.err" >&2
  fail "gatehouse's log (log.format = json in the chart) is not JSON lines with a message"
fi
kill -TERM "$gh_pid"
wait "$gh_pid" || fail "gatehouse in the image did not exit 0 on SIGTERM"
echo "image: chroot: gatehouse stopped on SIGTERM, exit 0"

step="done"
echo "image: ok: $archive ($((unpacked / 1000)) kB unpacked, $((compressed / 1000)) kB compressed; $how) in $((SECONDS - started))s"
