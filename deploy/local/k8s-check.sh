#!/usr/bin/env bash
# Check the Helm chart and its manifests without a cluster (run by .ci/run through test.sh).
#
#   deploy/local/k8s-check.sh [check]   helm lint + helm template (default values, ci/full-values.yaml),
#                                       every rendered manifest validated by kubeconform, offline
#   deploy/local/k8s-check.sh tools     only build/fetch helm, kubeconform and the schemas (cached);
#                                       prints helm=, kubeconform=, compose_schema= paths (for tests/deploy)
#
# Tools are built from the Go module proxy (`go install`, helm ~3 min the first time) into
# $VSTREAM_CACHE/bin, with GOPATH/GOMODCACHE under $VSTREAM_CACHE so CI reuses them. Schemas:
# Kubernetes from the PyPI package kubernetes-validate (its JSON schemas, no install), KEDA's
# ScaledObject from the kedacore/keda Go module's CRD, converted by kubeconform's openapi2jsonschema.py;
# the Compose file schema from the compose-spec/compose-go module (used by tests/deploy/test_compose.py).
# Rendered manifests are left in <repo>/var/k8s-check/.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
CACHE="${VSTREAM_CACHE:-$HOME/.cache/vstream}"
VENV="$CACHE/venv"

HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.8.0
KEDA_VERSION=v2.21.0          # v2.21.1 needs Go >= 1.27; the CRD is the same API (keda.sh/v1alpha1)
KUBE_VALIDATE_VERSION=1.37.0
COMPOSE_GO_VERSION=v2.16.2    # compose-go: the library and JSON schema `docker compose` itself uses
# the newest Kubernetes the schemas cover and the oldest the chart claims (Chart.yaml kubeVersion)
KUBE_VERSIONS=(1.37.0 1.27.0)

BIN="$CACHE/bin"
SCHEMAS="$CACHE/k8s-schemas"
CHART="$REPO_ROOT/deploy/helm/vstream"
SERVICE=k8s-check
VAR_DIR="$REPO_ROOT/var/k8s-check"
LOCK_FILE="$CACHE/.k8s-check.lock"
PID_FILE=/dev/null
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

go_env() {
  local go
  go="$(command -v go || true)"
  [[ -n "$go" ]] || go=/usr/local/go/bin/go   # where this machine kind has it, off the default PATH
  [[ -x "$go" ]] || die "Go not found (PATH or /usr/local/go/bin/go): needed to build helm and kubeconform"
  export PATH="$(dirname "$go"):$PATH" GOPATH="$CACHE/go" GOMODCACHE="$CACHE/gomod"
  export GOFLAGS=-modcacherw GOTOOLCHAIN=local GOBIN="$BIN"
}

# have_version BINARY VERSION CMD...: the binary exists and CMD's output mentions VERSION
have_version() {
  local bin=$1 version=$2
  shift 2
  [[ -x "$bin" ]] && "$bin" "$@" 2>/dev/null | grep -q "${version#v}"
}

build_tools() {
  mkdir -p "$BIN"
  if ! have_version "$BIN/kubeconform" "$KUBECONFORM_VERSION" -v; then
    go_env
    log "building kubeconform $KUBECONFORM_VERSION"
    go install -ldflags "-X main.version=$KUBECONFORM_VERSION" \
      "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  fi
  if ! have_version "$BIN/helm" "$HELM_VERSION" version --template '{{.Version}}'; then
    go_env
    log "building helm $HELM_VERSION (a few minutes the first time)"
    # helm's version string is a link-time variable; without it `helm version` says v4-dev
    go install -ldflags "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
      "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  fi
}

fetch_schemas() {
  local kv="$SCHEMAS/kubernetes-validate-$KUBE_VALIDATE_VERSION" keda="$SCHEMAS/keda-$KEDA_VERSION" v
  local need=0
  for v in "${KUBE_VERSIONS[@]}"; do
    [[ -f "$kv/v$v-local-strict/deployment-apps-v1.json" ]] || need=1
  done
  if ((need)); then
    log "fetching kubernetes-validate $KUBE_VALIDATE_VERSION schemas"
    mkdir -p "$SCHEMAS/wheels" "$kv"
    "$VENV/bin/pip" download -q --no-deps -d "$SCHEMAS/wheels" "kubernetes-validate==$KUBE_VALIDATE_VERSION"
    "$VENV/bin/python" - "$SCHEMAS/wheels/kubernetes_validate-$KUBE_VALIDATE_VERSION-py3-none-any.whl" "$kv" \
      "${KUBE_VERSIONS[@]}" <<'EOF'
import json, os, sys, zipfile
wheel, out, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
base = "kubernetes_validate/kubernetes-json-schema/"
with zipfile.ZipFile(wheel) as z:
    wanted = [n for n in z.namelist() if any(n.startswith(f"{base}v{v}-local-strict/") for v in versions)]
    if not wanted:
        sys.exit(f"no schemas for {versions} in {wheel}")
    for name in wanted:
        target = f"{out}/{name[len(base):]}"
        os.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        # Each file's $id is a kubernetes.io URL its "/api/_definitions.json" refs resolve against; offline,
        # kubeconform must resolve them against the file itself: drop the $id, make the refs siblings.
        text = z.read(name).decode().replace('"/api/_definitions.json#', '"_definitions.json#')
        schema = json.loads(text)
        schema.pop("$id", None)
        with open(target, "w") as f:
            json.dump(schema, f)
EOF
  fi
  if [[ ! -f "$keda/scaledobject_v1alpha1.json" ]]; then
    go_env
    log "fetching the KEDA $KEDA_VERSION ScaledObject CRD"
    local dir conv
    dir="$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | "$VENV/bin/python" -c \
      'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])')"
    go mod download "github.com/yannh/kubeconform@$KUBECONFORM_VERSION"
    conv="$GOMODCACHE/github.com/yannh/kubeconform@$KUBECONFORM_VERSION/scripts/openapi2jsonschema.py"
    mkdir -p "$keda"
    # unknown fields at the root are refused too, as the API server does
    (cd "$keda" && DENY_ROOT_ADDITIONAL_PROPERTIES=1 "$VENV/bin/python" "$conv" \
      "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" "$dir/config/crd/bases/keda.sh_triggerauthentications.yaml" >/dev/null)
  fi
}

fetch_compose_schema() {
  local out="$SCHEMAS/compose-spec-$COMPOSE_GO_VERSION.json" dir
  [[ -f "$out" ]] && return 0
  go_env
  log "fetching the Compose schema (compose-go $COMPOSE_GO_VERSION)"
  dir="$(go mod download -json "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION" | "$VENV/bin/python" -c \
    'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])')"
  mkdir -p "$SCHEMAS"
  cp "$dir/schema/compose-spec.json" "$out.tmp" && mv "$out.tmp" "$out"
}

tools() {
  take_lock 900   # one build at a time (the pytest suite may ask for the tools as well)
  build_tools
  fetch_schemas
  fetch_compose_schema
  echo "helm=$BIN/helm"
  echo "kubeconform=$BIN/kubeconform"
  echo "compose_schema=$SCHEMAS/compose-spec-$COMPOSE_GO_VERSION.json"
}

validate() {
  local file=$1 v
  for v in "${KUBE_VERSIONS[@]}"; do
    "$BIN/kubeconform" -strict -summary -kubernetes-version "$v" \
      -schema-location "$SCHEMAS/kubernetes-validate-$KUBE_VALIDATE_VERSION/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -schema-location "$SCHEMAS/keda-$KEDA_VERSION/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
      "$file"
  done
}

check() {
  tools >/dev/null
  mkdir -p "$VAR_DIR"
  local name values
  for name in default full; do
    values=()
    [[ $name == full ]] && values=(-f "$CHART/ci/full-values.yaml")
    log "helm lint ($name values)"
    "$BIN/helm" lint --strict "$CHART" "${values[@]}"
    log "helm template ($name values) -> var/k8s-check/$name.yaml"
    "$BIN/helm" template vs "$CHART" "${values[@]}" --kube-version "${KUBE_VERSIONS[0]}" >"$VAR_DIR/$name.yaml"
    validate "$VAR_DIR/$name.yaml"
  done
  log "ok"
}

case "${1:-check}" in
  check) check ;;
  tools) tools ;;
  *) die "usage: $0 [check|tools]" ;;
esac
