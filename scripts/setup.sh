#!/usr/bin/env bash
# Install what pxelab, its tests and its demo need on a Debian machine: Debian packages
# (apt-get, as root) and a virtualenv in .venv with pxelab and its test tools.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  qemu-system-x86 ovmf ipxe busybox-static linux-image-cloud-amd64 iproute2 kmod
  atftp tftp-hpa udhcpc isc-dhcp-client curl cpio systemd openssl
  isc-dhcp-relay kea-admin dnsmasq-base dhcpcd-base
  xorriso libarchive-tools
  grub-efi-amd64-signed shim-signed qemu-system-arm qemu-efi-aarch64
  chromium chromium-driver
  postgresql
  cloud-init debconf debian-installer-12-netboot-amd64
  python3 python3-venv
)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
# Debian's /usr/bin/python3 with venv: the test that runs pxelab as `nobody` builds its
# world-readable virtualenv with it (a Python under /root is out of nobody's reach).
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: these Debian packages are missing and need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # wait for dpkg's lock (unattended-upgrades may hold it on a fresh machine) instead of failing
  apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
fi

# Inputs of the aarch64 boot test, from Debian's arm64 packages, unpacked (not installed) into
# .cache/arm64/root: the cloud kernel and its modules, busybox-static and the signed network GRUB.
arm64=.cache/arm64
if [ ! -f "$arm64/done" ] && [ "$(id -u)" -eq 0 ]; then
  echo "setup: arm64 test inputs into $arm64"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  kernel=$(apt-cache depends linux-image-cloud-arm64:arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  rm -rf "$arm64" && mkdir -p "$arm64/debs" "$arm64/root"
  (cd "$arm64/debs" && apt-get download -q "${kernel%:arm64}:arm64" busybox-static:arm64 grub-efi-arm64-signed:arm64 >/dev/null)
  for deb in "$arm64"/debs/*.deb; do dpkg-deb -x "$deb" "$arm64/root"; done
  for modules in "$arm64"/root/lib/modules/*; do depmod -b "$arm64/root" "$(basename "$modules")"; done
  rm -rf "$arm64/debs" && touch "$arm64/done"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.pxelab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: pip install -e .[test] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
