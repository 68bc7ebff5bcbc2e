#!/usr/bin/env bash
# Installs what ferry needs to build and test on Debian 12 (bookworm). Idempotent.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config git
  libdnnl-dev liburing-dev libzstd-dev libcli11-dev nlohmann-json3-dev libsentencepiece-dev
  libpcre2-dev libutf8proc-dev libgtest-dev libgmock-dev
  ocl-icd-opencl-dev)  # libdnnl-dev's CMake config requires OpenCL (its GPU runtime)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ferry: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
