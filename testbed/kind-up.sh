#!/usr/bin/env bash
# For users with Docker: a kind cluster with metrics-server and Prometheus, KUBECONFIG context kind-shoal.
# (CI has no Docker engine and uses the process-based test bed, `make cluster-up`.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "kind-up needs a running Docker engine" >&2; exit 1; }
KIND_VERSION=${KIND_VERSION:-v0.30.0}
kind_bin=$(command -v kind || true)
if [[ -z "$kind_bin" ]]; then
  GOBIN="${SHOAL_CACHE:-$HOME/.cache/shoal}/bin/kind-$KIND_VERSION" go install "sigs.k8s.io/kind@$KIND_VERSION"
  kind_bin="${SHOAL_CACHE:-$HOME/.cache/shoal}/bin/kind-$KIND_VERSION/kind"
fi
"$kind_bin" get clusters 2>/dev/null | grep -qx shoal || \
  "$kind_bin" create cluster --name shoal --image "kindest/node:$KUBERNETES_VERSION" --wait 120s
kubectl --context kind-shoal apply -f "$here/kind/metrics-server.yaml" -f "$here/kind/prometheus.yaml"
kubectl --context kind-shoal -n kube-system rollout status deploy/metrics-server --timeout=180s
kubectl --context kind-shoal -n monitoring rollout status deploy/prometheus --timeout=180s
kubectl --context kind-shoal apply --server-side -k "$here/../crds"
echo "kind cluster 'shoal' ready: kubectl --context kind-shoal get nodes"
echo "Prometheus for SHOAL_PROMETHEUS_URL: kubectl --context kind-shoal -n monitoring port-forward svc/prometheus 9090"
