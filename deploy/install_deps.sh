#!/usr/bin/env bash
# Installs every build and test dependency of kvmesh from Debian 12 packages. Safe to run twice.
set -euo pipefail

packages=(
  build-essential cmake git pkg-config perl
  libopenmpi-dev openmpi-bin
  libboost1.81-dev libboost-system1.81-dev
  nlohmann-json3-dev
  libopenblas-dev
  libgtest-dev googletest
  libcli11-dev
  clang libclang-rt-14-dev  # the libFuzzer targets (tests/fuzz)
  curl ca-certificates procps iproute2
  shellcheck python3-yaml
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
