#!/usr/bin/env bash
# Installs the system packages Loupe's tests need on Debian 12 (bookworm), as root.
#   - Mesa 25 lavapipe (Vulkan on the CPU) from bookworm-backports: Dawn (the `webgpu` npm
#     package) rejects bookworm's own Mesa 22.3 lavapipe, so requestAdapter() would return null.
#   - Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser).
#   - Debian's python3-torch + numpy: the reference activation server (server/python) and its
#     tests run on PyTorch, and tools/ regenerate the committed fixtures with it.
# Idempotent: safe to run on a machine that already has everything.
set -euo pipefail

if [ "$(id -u)" != "0" ]; then
  echo "install-system-deps: run as root (apt-get needs it)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
src_dir=/etc/apt/sources.list.d
backports="$src_dir/loupe-bookworm-backports.sources"

if [ ! -f "$backports" ]; then
  # Reuse the URI of the machine's own Debian source instead of naming a mirror host here.
  uri=""
  if [ -f "$src_dir/debian.sources" ]; then
    uri=$(awk '/^URIs:/ { print $2; exit }' "$src_dir/debian.sources")
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "install-system-deps: found no Debian source URI in $src_dir/debian.sources or /etc/apt/sources.list" >&2
    exit 1
  fi
  cat > "$backports" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

apt-get update -q
apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1
apt-get install -y -q --no-install-recommends chromium
apt-get install -y -q --no-install-recommends python3-torch python3-numpy

echo "install-system-deps: lavapipe ICD: $(ls /usr/share/vulkan/icd.d/ 2>/dev/null | tr '\n' ' ')"
echo "install-system-deps: chromium: $(chromium --version 2>/dev/null || echo missing)"
echo "install-system-deps: torch: $(/usr/bin/python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo missing)"
