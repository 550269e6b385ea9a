#!/usr/bin/env bash
# System packages for the test bed and tests: Prometheus (Debian's build), openssl, chromium, faketime, and
# the image tools (mmdebstrap, umoci, skopeo). Go must already be on PATH.
set -euo pipefail
need=()
command -v prometheus >/dev/null || [[ -x /usr/bin/prometheus ]] || need+=(prometheus)
command -v openssl >/dev/null || need+=(openssl)
command -v chromium >/dev/null || need+=(chromium)  # screenshots of the training stream in the tests
[[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]] || need+=(faketime)  # a replica with a skewed clock (leader tests)
# make image: a Debian root filesystem, packed as an OCI image, written as an archive (images/build.sh)
for tool in mmdebstrap umoci skopeo; do command -v $tool >/dev/null || need+=($tool); done
[[ -e /usr/share/keyrings/debian-archive-keyring.gpg ]] || need+=(debian-archive-keyring)
if ((${#need[@]})); then
  echo "[deps] installing ${need[*]} with apt-get"
  sudo=()
  ((EUID == 0)) || sudo=(sudo)  # root installs directly; anyone else through sudo
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "[deps] Go is required to build the test bed (https://go.dev/dl)" >&2; exit 1; }
echo "[deps] ok: $(go version), prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
