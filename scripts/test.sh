#!/usr/bin/env bash
# THE test command: what a newcomer runs on a fresh Debian machine, and all CI runs
# (.ci/run execs this file). It installs only what is missing (redis-server for the
# integration tests; helm and promtool when the repo has charts; buildah for the
# image), then runs, in order: cargo fmt --check, cargo clippy -D warnings, cargo
# test, the chart checks, and the image build and its checks (scripts/image.sh, as
# root). Exits non-zero on the first failure, naming the step.
#
# It never starts, stops or talks to a Redis already running on the machine: the
# tests start their own redis-server processes on free ports.
#
# Works non-interactively (CI=true, no stdin). Environment:
#   GATEHOUSE_TOOLS_DIR  where helm is installed when missing (default: .tools/bin)

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

tools_dir="${GATEHOUSE_TOOLS_DIR:-$repo_root/.tools/bin}"
export PATH="$tools_dir:$PATH"
export DEBIAN_FRONTEND=noninteractive
# Cargo and apt must never wait for a terminal.
exec </dev/null

current_step="setup"
started_at=$SECONDS

section() {
  current_step="$1"
  printf '\n==> %s\n' "$1"
}

on_exit() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    printf '\n==> FAILED: %s (exit %s)\n' "$current_step" "$status" >&2
  else
    printf '\n==> all checks passed in %ss\n' "$((SECONDS - started_at))"
    # The whole suite's count, as the last line.
    printf 'tests: %s passed, %s failed\n' "${passed:-0}" "${failed:-0}"
  fi
}
trap on_exit EXIT

. "$repo_root/scripts/lib.sh"

# promtool alone, from Debian's prometheus package: unpacked into the tools
# directory, not installed, so no Prometheus server is set up or started.
install_promtool() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update
    apt_updated=1
  fi
  local work
  work="$(mktemp -d)"
  (
    cd "$work"
    apt-get download -o APT::Sandbox::User=root prometheus
    dpkg-deb --fsys-tarfile ./prometheus_*.deb | tar -x ./usr/bin/promtool
  )
  mkdir -p "$tools_dir"
  install -m 0755 "$work/usr/bin/promtool" "$tools_dir/promtool"
  rm -rf "$work"
}

has_charts() {
  compgen -G "charts/*/Chart.yaml" >/dev/null
}

# Every check of the Helm charts lives here.
# Lint, render, schema-validate and consistency-check every chart (and, when the
# binary built by cargo test is there, `gatehouse check` each rendered config).
check_charts() {
  bash scripts/chart-check.sh
}

section "prerequisites"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs); rust-toolchain.toml pins the version" >&2
  exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is missing (the integration tests start their own): installing"
  apt_install redis-server
fi
if has_charts && ! command -v helm >/dev/null 2>&1; then
  echo "helm is missing (the repo has charts): installing into $tools_dir"
  install_helm
fi
if has_charts && ! command -v promtool >/dev/null 2>&1; then
  echo "promtool is missing (the chart's alert rules are checked with it): unpacking it into $tools_dir"
  install_promtool
fi
# The image is built and checked as root (chroot, file owners in the layer).
if [ "$(id -u)" -eq 0 ] && ! command -v buildah >/dev/null 2>&1; then
  echo "buildah is missing (scripts/image.sh builds the OCI image with it): installing"
  apt_install buildah || echo "buildah did not install: scripts/image.sh will use its tar fallback"
fi
echo "cargo:        $(cargo --version)"
echo "redis-server: $(redis-server --version | head -n1)"
if has_charts; then
  echo "helm:         $(helm version --short)"
  echo "promtool:     $(promtool --version 2>&1 | head -n1)"
fi
if command -v buildah >/dev/null 2>&1; then
  echo "buildah:      $(buildah --version)"
fi

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --all-targets -- -D warnings

section "cargo test"
# --all-targets runs unit and integration tests and each bench once in test mode.
# (The crate has no Rust documentation examples: its doc code blocks are text.)
test_log="$(mktemp)"
if ! cargo test --all-targets 2>&1 | tee "$test_log"; then
  rm -f "$test_log"
  exit 1
fi
read -r passed failed < <(awk '/^test result: / {
    for (i = 1; i < NF; i++) {
      if ($(i + 1) ~ /^passed/) p += $i
      if ($(i + 1) ~ /^failed/) f += $i
    }
  } END { print p + 0, f + 0 }' "$test_log")
rm -f "$test_log"

if has_charts; then
  section "helm charts"
  check_charts
fi

section "image"
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: scripts/image.sh runs as root (it chroots into the image to check it)"
elif [ -x target/release/gatehouse ] &&
  [ -z "$(find src lua Cargo.toml Cargo.lock -newer target/release/gatehouse -print -quit)" ]; then
  bash scripts/image.sh
else
  # No fresh release binary: the image is assembled and checked around the binary
  # cargo test just built (stripped), which keeps this step to seconds instead of a
  # release build's minutes. `bash scripts/image.sh` alone builds the release image.
  GATEHOUSE_IMAGE_BINARY=target/debug/gatehouse bash scripts/image.sh
fi
