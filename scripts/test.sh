#!/usr/bin/env bash
# The README's test command: installs the system packages the tests need where they are
# missing (Mesa's software Vulkan driver, so the wgpu backend is tested without a GPU, and
# Chromium, to check that the HTML report renders; Debian's apt-get, as root), then runs every
# test. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1 || [ ! -d /usr/share/vulkan/icd.d ] || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "scripts/test.sh: the tests need mesa-vulkan-drivers, libvulkan1 and chromium; install them (apt-get, as root) and run again" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq mesa-vulkan-drivers libvulkan1 chromium >/dev/null
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo test --release --workspace
