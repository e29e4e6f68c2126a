#!/usr/bin/env bash
# Builds the pinned control-plane binaries from the Go module proxy into a cache outside the
# work tree, keyed by version, and skips whatever is already there.
# `build-cluster-bin.sh argo-workflows` builds only Argo Workflows' controller, for
# `make bench-argo` (about 5 min cold on 2 cores).
#
# Why a wrapper module for Kubernetes: k8s.io/kubernetes replaces its staging modules with local
# paths, so `go install k8s.io/kubernetes/cmd/...@vX` refuses; pinning each staging module to its
# published v0.X.Y makes an ordinary module build work.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../operator/kubedag/testbed/versions.env
source "$here/../operator/kubedag/testbed/versions.env"

cache_root="${KUBEDAG_CACHE:-$HOME/.cache/kubedag}"
bindir="$cache_root/bin/$K8S_VERSION-etcd$ETCD_VERSION-kwok$KWOK_VERSION-helm$HELM_VERSION"
workdir="$cache_root/build"
mkdir -p "$bindir" "$workdir"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath

log() { printf '[cluster-bin %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "Go is not installed; install Go >= $GO_MIN_VERSION (https://go.dev/dl/) and retry."

check_proxy() {
  if ! go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" >/dev/null 2>"$workdir/proxy-check.err"; then
    cat "$workdir/proxy-check.err" >&2
    die "cannot reach the Go module proxy ($(go env GOPROXY)). Check network access or set GOPROXY to a reachable proxy, then rerun 'make cluster-bin'."
  fi
}

have() { [ -x "$bindir/$1" ]; }

build_kubernetes() {
  if have kube-apiserver && have kube-controller-manager && have kube-scheduler && have kubectl && have kubelet; then
    log "kubernetes $K8S_VERSION: cached"; return
  fi
  log "kubernetes $K8S_VERSION: preparing wrapper module (downloads ~0.8 GB on a cold cache)"
  local mod="$workdir/kubernetes-$K8S_VERSION" staging_version="v0${K8S_VERSION#v1}"
  rm -rf "$mod"; mkdir -p "$mod"; cd "$mod"
  local upstream_gomod
  upstream_gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  go mod init kubedag.local/kubernetes-build >/dev/null 2>&1
  go mod edit -go=1.26.0
  echo 'godebug default=go1.26' >> go.mod
  local replaces=()
  while read -r staged; do
    replaces+=("-replace=$staged=$staged@$staging_version")
  done < <(sed -nE 's#^[[:space:]]*(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\1#p' "$upstream_gomod")
  [ "${#replaces[@]}" -gt 0 ] || die "found no staging replaces in $upstream_gomod"
  log "kubernetes: pinning ${#replaces[@]} staging modules to $staging_version"
  go mod edit "${replaces[@]}" "-require=k8s.io/kubernetes@$K8S_VERSION"
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  log "kubernetes: go mod tidy"
  go mod tidy
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  # The kubelet runs the test bed's real node (kubedag.testbed.realnode) beside the kwok nodes.
  log "kubernetes: compiling kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet (about 5-6 min cold)"
  go build -mod=mod -ldflags "$ldflags" -o "$bindir/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
  log "kubernetes: done"
}

build_etcd() {
  if have etcd; then log "etcd $ETCD_VERSION: cached"; return; fi
  log "etcd $ETCD_VERSION: building (about 20 s cold)"
  local mod="$workdir/etcd-$ETCD_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"; cd "$mod"
  go mod init kubedag.local/etcd-build >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -ldflags "-s -w" -o "$bindir/etcd" go.etcd.io/etcd/server/v3
  log "etcd: done"
}

build_kwok() {
  if have kwok; then log "kwok $KWOK_VERSION: cached"; return; fi
  log "kwok $KWOK_VERSION: building (about 1 min cold)"
  GOBIN="$bindir" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # The upstream Stage files ship inside the module; the runner copies the ones it uses.
  local src; src="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$bindir/kwok-stages"; cp -r "$src/kustomize/stage" "$bindir/kwok-stages"; chmod -R u+w "$bindir/kwok-stages"
  log "kwok: done"
}

build_helm() {
  if have helm; then log "helm $HELM_VERSION: cached"; return; fi
  log "helm $HELM_VERSION: building (about 1 min cold)"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local x="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    x+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$bindir" go install -ldflags "-s -w $x" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "helm: done"
}

# A real dynamic storage provisioner for the test bed (kubedag.testbed.provisioner runs it on the
# host, out of cluster). Its version is stamped into the binary, so a new pin rebuilds it.
build_local_path_provisioner() {
  if have local-path-provisioner && "$bindir/local-path-provisioner" --version 2>/dev/null | grep -qF "$LOCAL_PATH_PROVISIONER_VERSION"; then
    log "local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION: cached"; return
  fi
  log "local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION: building (about 2-3 min cold)"
  GOBIN="$bindir" go install -ldflags "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
  log "local-path-provisioner: done"
}

build_prometheus() {
  local want="2.${PROMETHEUS_VERSION#v0.}"
  if have prometheus && have promtool && "$bindir/prometheus" --version 2>/dev/null | grep -qF "version $want "; then
    log "prometheus $want: cached"; return
  fi
  log "prometheus $want: building prometheus and promtool (about 3 min cold)"
  # Its go.mod replaces klog, so `go install pkg@version` refuses: a wrapper module repeats the
  # replaces (the same trick as for Kubernetes).
  local mod="$workdir/prometheus-$PROMETHEUS_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"; cd "$mod"
  go mod init kubedag.local/prometheus-build >/dev/null 2>&1
  go mod edit -go=1.26.0 "-require=github.com/prometheus/prometheus@$PROMETHEUS_VERSION" \
    -replace=k8s.io/klog=github.com/simonpasquier/klog-gokit@v0.3.0 \
    -replace=k8s.io/klog/v2=github.com/simonpasquier/klog-gokit/v3@v3.3.0
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
GO
  go mod tidy
  go build -mod=mod -ldflags "-s -w -X github.com/prometheus/common/version.Version=$want" \
    -o "$bindir/" github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
  log "prometheus: done"
}

# Kueue's manager (kubedag.testbed.kueue runs it on the host, out of cluster), with the CRDs and
# webhook manifests of the same release copied beside it: the test bed applies those, so they
# always match the binary. Each pin gets its own folder, so a new KUEUE_VERSION rebuilds.
#
# Kueue reads its metrics serving certificate from a fixed path (/etc/kueue/metrics/certs in
# cmd/kueue/main.go) whenever its internal cert management is off, and exits if it is missing.
# A test bed must not write to /etc, so the build compiles Kueue's own main.go in a wrapper
# module with that one literal replaced by a variable that honours KUEUE_METRICS_CERT_DIR (same
# default); every other line, and every package, is the release's. The sed refuses to go on when
# the literal is not found, so a new pin that moved it fails here rather than at run time.
build_kueue() {
  local dest="$bindir/kueue-$KUEUE_VERSION"
  if [ -x "$dest/kueue" ] && [ -d "$dest/crd/bases" ] && [ -f "$dest/webhook/manifests.yaml" ]; then
    log "kueue $KUEUE_VERSION: cached"; return
  fi
  log "kueue $KUEUE_VERSION: building the manager (about 6 min cold)"
  local src mod="$workdir/kueue-$KUEUE_VERSION" staging="$dest.partial"
  src="$(go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$mod" "$staging"; mkdir -p "$mod" "$staging"; cd "$mod"
  go mod init kubedag.local/kueue-build >/dev/null 2>&1
  # The release's own language version, so its GODEBUG defaults are the ones it was tested with.
  go mod edit "-go=$(sed -nE 's/^go ([0-9.]+)$/\1/p' "$src/go.mod")" "-require=sigs.k8s.io/kueue@$KUEUE_VERSION"
  local literal='"/etc/kueue/metrics/certs"'
  grep -qF "metricsCertPath := $literal" "$src/cmd/kueue/main.go" \
    || die "kueue $KUEUE_VERSION: cmd/kueue/main.go no longer sets metricsCertPath := $literal; update build_kueue"
  sed "s#metricsCertPath := $literal#metricsCertPath := metricsCertDir()#" "$src/cmd/kueue/main.go" > main.go
  cat > metrics_cert_dir.go <<'GO'
package main

import "os"

// metricsCertDir is where the metrics server's tls.crt and tls.key are read from: upstream's
// fixed path unless KUEUE_METRICS_CERT_DIR names another (added by kubedag's build).
func metricsCertDir() string {
	if dir := os.Getenv("KUEUE_METRICS_CERT_DIR"); dir != "" {
		return dir
	}
	return "/etc/kueue/metrics/certs"
}
GO
  # -mod=mod resolves the rest from Kueue's own go.mod (it has no replaces), and unlike
  # `go mod tidy` downloads no module that only tests need.
  go build -mod=mod -o "$staging/kueue" -ldflags "-s -w \
    -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION \
    -X sigs.k8s.io/kueue/pkg/version.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
  cp -r "$src/config/components/crd" "$staging/crd"
  mkdir -p "$staging/webhook"; cp "$src/config/components/webhook/manifests.yaml" "$staging/webhook/"
  chmod -R u+w "$staging"
  rm -rf "$dest"; mv "$staging" "$dest"
  log "kueue: done"
}

# Argo Workflows' workflow-controller, for `make bench-argo` only (bench/argo.py runs it beside
# kubedag on the same control plane). Its go.mod replaces one module, so `go install pkg@version`
# refuses: the wrapper module takes upstream's go.mod whole (its requires pin every dependency to
# the versions the release was tested with, and its one replace comes along), renamed, plus a
# require of the release itself. The minimal CRDs of the same release are copied beside the
# binary, so what the bench applies always matches what runs.
build_argo_workflows() {
  local dest="$bindir/argo-workflows-$ARGO_VERSION"
  if [ -x "$dest/workflow-controller" ] && [ -d "$dest/crds" ]; then
    log "argo-workflows $ARGO_VERSION: cached"; return
  fi
  log "argo-workflows $ARGO_VERSION: building the workflow-controller (about 5 min cold)"
  local module="github.com/argoproj/argo-workflows/v3" info src upstream_gomod
  info="$(go mod download -json "$module@$ARGO_VERSION")"
  src="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' <<<"$info")"
  upstream_gomod="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"$info")"
  local mod="$workdir/argo-workflows-$ARGO_VERSION" staging="$dest.partial"
  rm -rf "$mod" "$staging"; mkdir -p "$mod" "$staging"; cd "$mod"
  cp "$upstream_gomod" go.mod; chmod u+w go.mod
  go mod edit -module=kubedag.local/argo-workflows-build "-require=$module@$ARGO_VERSION"
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller"
GO
  go build -mod=mod -ldflags "-s -w -X $module.version=$ARGO_VERSION" \
    -o "$staging/workflow-controller" "$module/cmd/workflow-controller"
  cp -r "$src/manifests/base/crds/minimal" "$staging/crds"
  chmod -R u+w "$staging"
  rm -rf "$dest"; mv "$staging" "$dest"
  log "argo-workflows: done"
}

main() {
  local start=$SECONDS
  log "binaries go to $bindir"
  # `build-cluster-bin.sh argo-workflows` builds only Argo's controller (make bench-argo): it is
  # no part of the test bed, so the default run leaves it out.
  if [ "${1:-}" = argo-workflows ]; then
    build_argo_workflows
    log "argo-workflows ready in $((SECONDS - start)) s"
    echo "$bindir/argo-workflows-$ARGO_VERSION"
    return
  fi
  if ! { have kube-apiserver && have kube-controller-manager && have kube-scheduler && have kubectl && have kubelet && have etcd && have kwok && have helm && have local-path-provisioner && have prometheus && have promtool && have "kueue-$KUEUE_VERSION/kueue"; }; then
    check_proxy
  fi
  build_etcd
  build_kwok
  build_helm
  build_local_path_provisioner
  build_prometheus
  build_kueue
  build_kubernetes
  log "all binaries ready in $((SECONDS - start)) s"
  echo "$bindir"
}

main "$@"
