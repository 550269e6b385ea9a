#!/usr/bin/env bash
# Builds the test bed's binaries from pinned Go modules into ~/.cache/shoal/bin/<component>-<version>/.
# Nothing is downloaded at run time: this is the only step that reaches the Go module proxy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${SHOAL_CACHE:-$HOME/.cache/shoal}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0
log() { printf '[testbed build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# go install pkg@version into an isolated GOBIN; skipped when the binary is cached.
install_tool() { # name version pkg@version
  local name=$1 version=$2 pkg=$3 dest="$cache/bin/$1-$2"
  if [[ -x "$dest/$name" ]]; then log "$name $version: cached"; return; fi
  log "$name $version: building (go install $pkg)"
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  GOBIN="$dest.tmp" go install "$pkg"
  rm -rf "$dest"; mv "$dest.tmp" "$dest"
  log "$name $version: done"
}

bin_name() { if [[ $1 == *=* ]]; then echo "${1#*=}"; else echo "${1##*/}"; fi; }

# Modules whose go.mod replaces sibling modules with local paths (k8s.io/kubernetes, etcd's server)
# cannot be `go install`ed. A small wrapper module requires them and maps each local-path replace to
# that sibling's published version; the list is read from the downloaded go.mod, never hard-coded.
build_wrapped() { # name module version sibling-version ldflags cmd-package[=binary-name]...
  local name=$1 module=$2 version=$3 sibling=$4 ldflags=$5; shift 5
  local dest="$cache/bin/$name-$version" cmd ok=1
  for cmd in "$@"; do [[ -x "$dest/$(bin_name "$cmd")" ]] || ok=0; done
  if ((ok)); then log "$name $version: cached"; return; fi
  local work="$cache/src/$name-wrapper-$version"
  rm -rf "$work"; mkdir -p "$work"; cd "$work"
  log "$name $version: resolving $module"
  go mod init "shoal.dev/testbed-$name" >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "$module@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  python3 - "$gomod" "$sibling" "$module" "$version" >>go.mod <<'PY'
import re, sys
gomod, sibling, module, version = sys.argv[1:]
text = open(gomod).read()
lines = [l for block in re.findall(r"^replace \((.*?)^\)", text, flags=re.S | re.M) for l in block.splitlines()]
lines += re.findall(r"^replace (.+)$", text, flags=re.M)
out = ["", f"require {module} {version}", "", "replace ("]
for line in lines:
    line = line.split("//")[0].strip()
    if "=>" not in line:
        continue
    old, new = (s.strip() for s in line.split("=>"))
    if "FORBIDDEN" in new:  # etcd's guard against importing its root module: not a real dependency
        continue
    if new.startswith("."):
        new = f"{old.split()[0]} {sibling}"
    out.append(f"\t{old} => {new}")
out.append(")")
out += re.findall(r"^godebug .+$", text, flags=re.M)
print("\n".join(out))
PY
  local pkgs=()
  for cmd in "$@"; do pkgs+=("${cmd%%=*}@$version"); done
  # go get (not tidy) resolves only what the commands import, not the tests of every dependency.
  go get "${pkgs[@]}" >/dev/null
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  for cmd in "$@"; do
    log "$name $version: building $(bin_name "$cmd") (a cold build takes minutes on 2 cores)"
    go build -trimpath -ldflags "$ldflags" -o "$dest.tmp/$(bin_name "$cmd")" "${cmd%%=*}"
  done
  rm -rf "$dest"; mv "$dest.tmp" "$dest"
  log "$name $version: done"
}

k8s_ldflags="-s -w"
minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  k8s_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
build_wrapped kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION" "v0.${KUBERNETES_VERSION#v1.}" "$k8s_ldflags" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
build_wrapped etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" "-s -w" go.etcd.io/etcd/server/v3=etcd
install_tool kwok "$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
install_tool helm "$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
install_tool metrics-server "$METRICS_SERVER_VERSION" "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"

# A controller built from its module's source (its go.mod needs no wrapper), with the CRDs it serves.
build_module() { # name module version package crd-file...
  local name=$1 module=$2 version=$3 pkg=$4 dest="$cache/bin/$1-$3"; shift 4
  if [[ -x "$dest/$name" ]]; then log "$name $version: cached"; return; fi
  local src work="$cache/src/$name-$version"
  src=$(go mod download -json "$module@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$work" "$dest.tmp"; mkdir -p "$(dirname "$work")" "$dest.tmp/crds"
  cp -r "$src" "$work"; chmod -R u+w "$work"  # the module cache is read-only; go build writes go.sum
  log "$name $version: building ./$pkg (about 80 s cold on 2 cores)"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$dest.tmp/$name" "./$pkg")
  for crd in "$@"; do cp "$work/$crd" "$dest.tmp/crds/"; done
  rm -rf "$dest"; mv "$dest.tmp" "$dest"; rm -rf "$work"
  log "$name $version: done"
}
build_module jobset sigs.k8s.io/jobset "$JOBSET_VERSION" . config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml
build_module trainer-controller-manager github.com/kubeflow/trainer/v2 "$KUBEFLOW_TRAINER_VERSION" \
  cmd/trainer-controller-manager manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml \
  manifests/base/crds/trainer.kubeflow.org_trainingruntimes.yaml \
  manifests/base/crds/trainer.kubeflow.org_clustertrainingruntimes.yaml

# KWOK's own default stages and metric definitions from the pinned release, for kwok --config.
assets="$cache/bin/kwok-$KWOK_VERSION/assets"
if [[ ! -f "$assets/pod-ready.yaml" ]]; then
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$assets"
  cp "$src"/kustomize/stage/node/fast/node-initialize.yaml \
     "$src"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
     "$src"/kustomize/stage/pod/fast/pod-ready.yaml "$src"/kustomize/stage/pod/fast/pod-complete.yaml \
     "$src"/kustomize/stage/pod/fast/pod-delete.yaml \
     "$src"/kustomize/metrics/resource/metrics-resource.yaml \
     "$src"/kustomize/metrics/usage/usage-from-annotation.yaml "$assets/"
  chmod -R u+w "$assets"
fi
log "all binaries ready under $cache/bin"
