#!/usr/bin/env bash
# Installs what the tests, the lab and the demo use on a Debian 12 machine.
# Idempotent: it only calls apt-get when a command is missing. As non-root it
# prints the command to run instead of failing half-way.
set -euo pipefail

# command -> Debian package
declare -A need=(
  [veritysetup]=cryptsetup-bin
  [cryptsetup]=cryptsetup-bin
  [qemu-system-x86_64]=qemu-system-x86
  [swtpm]=swtpm
  [swtpm_setup]=swtpm-tools
  [busybox]=busybox-static
  [mkfs.ext4]=e2fsprogs
  [mkfs.erofs]=erofs-utils
  [xz]=xz-utils
  [depmod]=kmod
  [dpkg-deb]=dpkg
  [dmsetup]=dmsetup
  [blockdev]=util-linux
  [systemd-cryptenroll]=systemd
  [sfdisk]=fdisk
  [cpio]=cpio
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# Libraries (no command to look for): tpm2-tss, which systemd-cryptenroll
# loads to talk to swtpm in the token interop tests.
for pkg in postgresql libtss2-tcti-device0 libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0 libtss2-tcti-swtpm0 libtss2-tctildr0; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
# busybox must be the static build: it runs inside the lab's initramfs.
if command -v busybox >/dev/null 2>&1 && ! file -L "$(command -v busybox)" 2>/dev/null | grep -q 'statically linked'; then
  missing+=(busybox-static)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: $pkgs" >&2
  echo "install them as root: apt-get install -y --no-install-recommends $pkgs" >&2
  exit 1
fi
echo "installing: $pkgs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends $pkgs file >/dev/null
