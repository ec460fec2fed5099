#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that the tests and the demo run against, from the
# Kubernetes and etcd Go modules pinned in e2e/kube-apiserver/go.mod, into
# e2e/kube-apiserver/bin (ignored by git), and puts the upstream Gateway API HTTPRoute CRD
# (from the sigs.k8s.io/gateway-api module) beside them for the Gateway API router's tests.
# Once per machine: later runs find the binaries up to date, and Go's module and build caches
# make a rebuild after a version bump quick.
set -euo pipefail
cd "$(dirname "$0")/../e2e/kube-apiserver"

# The official tarball's place, for shells whose PATH lacks it.
command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null 2>&1; then
  echo "build-kube-apiserver: Go is not installed; the tests and the demo need it to build" >&2
  echo "  kube-apiserver and etcd: Go >= 1.24 (Debian 12's golang-go is too old; see go.dev/dl)." >&2
  exit 1
fi

gateway_api=v1.3.0
httproute_crd=bin/crds/gateway.networking.k8s.io_httproutes.yaml

up_to_date() {
  [ -x bin/kube-apiserver ] && [ -x bin/etcd ] && [ -f "$httproute_crd" ] || return 1
  [ -z "$(find go.mod go.sum cmd -newer bin/kube-apiserver -print -quit)" ]
}
if up_to_date; then
  echo "build-kube-apiserver: bin/kube-apiserver and bin/etcd are up to date"
  exit 0
fi

echo "build-kube-apiserver: building kube-apiserver and etcd with $(go version | cut -d' ' -f3) (a few minutes the first time)"
start=$(date +%s)
mkdir -p bin
# The version the release build would stamp in, so /version and kubectl's skew checks see it.
version=$(go list -mod=readonly -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$version" | cut -d. -f2)
stamp="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
stamp="$stamp -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
# -mod=readonly: go.mod and go.sum are the pins; a build never edits them.
go build -mod=readonly -trimpath -ldflags="-s -w $stamp" -o bin/ ./cmd/kube-apiserver ./cmd/etcd
# Outside this module, so go.mod and go.sum stay the apiserver's pins only.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
gateway_dir=$(cd "$scratch" && go mod download -json "sigs.k8s.io/gateway-api@$gateway_api" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
mkdir -p bin/crds
cp "$gateway_dir/config/crd/standard/$(basename "$httproute_crd")" "$httproute_crd"
chmod u+w "$httproute_crd"
touch bin/kube-apiserver bin/etcd
echo "build-kube-apiserver: done in $(( $(date +%s) - start )) s ($(du -h bin/kube-apiserver | cut -f1) kube-apiserver, $(du -h bin/etcd | cut -f1) etcd)"
