#!/usr/bin/env bash
# Builds Shoal's images as OCI archives without Docker or any container registry:
#   1. a Debian root filesystem from Debian's own packages (mmdebstrap: python3, ca-certificates);
#   2. the project's wheel and its pinned dependencies from PyPI, into /opt/shoal inside it (pip runs
#      in the root filesystem, so compiled wheels match its Python);
#   3. one layer packed by umoci, with its entrypoint (shoal, or shoal-agent for the trainer), a user
#      that is not root (10001) and its ports, written as an oci-archive by skopeo (load it into kind,
#      or push it with skopeo copy: docs/operations.md).
# usage: images/build.sh operator|trainer [archive]   (default dist/<name>-<version>.oci.tar)
# Needs root (mmdebstrap's root mode, umoci's ownership) and the packages mmdebstrap, umoci, skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: images/build.sh operator|trainer [archive]}
version=$(grep -m1 '^version' pyproject.toml | cut -d'"' -f2)
case $kind in
  operator) name=shoal extra="" entry=shoal ports=(8080/tcp 8081/tcp) env=() ;;
  trainer) name=trainer extra="[train]" entry=shoal-agent ports=(6006/tcp 8000/tcp 9400/tcp)
           env=(MPLCONFIGDIR=/tmp/matplotlib) ;;
  *) echo "images/build.sh: unknown image '$kind' (operator or trainer)" >&2; exit 2 ;;
esac
repository=${IMAGE_REPOSITORY:-ghcr.io/shoal-dev/$name}
archive=${2:-dist/$name-$version.oci.tar}
for tool in mmdebstrap umoci skopeo; do
  command -v $tool >/dev/null || { echo "images/build.sh: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
((EUID == 0)) || { echo "images/build.sh: run as root (mmdebstrap's root mode, umoci's file ownership)" >&2; exit 1; }

started=$(date +%s)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision+="-dirty"
# The same bytes for the same commit: file times and the image's creation time are the commit's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
mkdir -p build dist
work=$(mktemp -d "$PWD/build/image-$kind.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "[image] wheel of shoal $version"
python3 -m pip wheel -q --no-deps -w "$work/wheels" .
cp constraints.txt "$work/wheels/"
wheel=$(basename "$work"/wheels/shoal-*.whl)
# This machine's certificate authorities reach PyPI from here (a proxy may sign with its own); they
# serve pip during the build and are not left in the image, which keeps Debian's.
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$work/wheels/build-ca.crt"

echo "[image] Debian root filesystem and /opt/shoal (mmdebstrap)"
# pip runs inside the new root, on this machine's network; PIP_FIND_LINKS names a folder of this
# machine's, so it stays outside.
mmdebstrap --quiet --mode=root --variant=minbase \
  --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook="copy-in $work/wheels /tmp" \
  --customize-hook='chroot "$1" python3 -m venv /opt/shoal' \
  --customize-hook="chroot \"\$1\" env -u PIP_FIND_LINKS -u SSL_CERT_DIR PIP_CERT=/tmp/wheels/build-ca.crt \
      SSL_CERT_FILE=/tmp/wheels/build-ca.crt REQUESTS_CA_BUNDLE=/tmp/wheels/build-ca.crt \
      /opt/shoal/bin/pip install -q --no-cache-dir --disable-pip-version-check \
      -c /tmp/wheels/constraints.txt \"/tmp/wheels/$wheel$extra\"" \
  --customize-hook='chroot "$1" /opt/shoal/bin/pip uninstall -q -y pip' \
  --customize-hook='chroot "$1" useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin shoal' \
  --customize-hook='rm -rf "$1"/tmp/wheels "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
  bookworm "$work/rootfs"

echo "[image] OCI layer and configuration (umoci)"
oci="$work/oci:$version"
umoci init --layout "$work/oci"
umoci new --image "$oci"
umoci insert --image "$oci" --history.created_by "images/build.sh $kind" "$work/rootfs" /
config=(--config.user 10001:10001 --config.entrypoint "/opt/shoal/bin/$entry" --config.workingdir /
        --config.env PATH=/opt/shoal/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        --config.env PYTHONUNBUFFERED=1 --config.env PYTHONDONTWRITEBYTECODE=1
        --config.label "org.opencontainers.image.title=$name"
        --config.label "org.opencontainers.image.version=$version"
        --config.label "org.opencontainers.image.revision=$revision"
        --config.label "org.opencontainers.image.source=https://github.com/shoal-dev/shoal")
for e in "${env[@]}"; do config+=(--config.env "$e"); done
for p in "${ports[@]}"; do config+=(--config.exposedports "$p"); done
umoci config --image "$oci" --created "$(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ)" "${config[@]}"
umoci gc --layout "$work/oci"

rm -f "$archive"
skopeo copy --quiet "oci:$oci" "oci-archive:$archive:$repository:$version"
echo "[image] $archive ($repository:$version): $(du -h "$archive" | cut -f1), $(($(date +%s) - started)) s"
