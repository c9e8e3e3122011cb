#!/usr/bin/env bash
# Installs what hark needs on Debian / Raspberry Pi OS, only where it is missing.
#   scripts/setup.sh        build dependencies (libasound2-dev, pkg-config)
#   scripts/setup.sh test   plus the test broker and clients (mosquitto, mosquitto-clients)
#                           and openssl (the TLS tests make their certificates with it)
set -euo pipefail
pkgs=(libasound2-dev pkg-config)
[ "${1:-}" = "test" ] && pkgs+=(mosquitto mosquitto-clients openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The broker is started by the tests themselves on a free port; the packaged
# service is not needed (and would hold port 1883).
if [ "${1:-}" = "test" ] && command -v systemctl >/dev/null && systemctl is-active -q mosquitto 2>/dev/null; then
  echo "note: a mosquitto service is running on this machine; tests use their own broker"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
