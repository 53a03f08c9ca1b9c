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
  [mkfs.fat]=dosfstools
  [mcopy]=mtools
  [cpio]=cpio
  [openssl]=openssl
  [osslsigncode]=osslsigncode
  [sbverify]=sbsigntool
  # dm-clone.ko, built out of tree for the lab kernel (lab.DMCloneModule):
  # the kernel's compiler, kbuild's make, strip, and pahole for the module's BTF.
  [gcc-12]=gcc-12
  [make]=make
  [strip]=binutils
  [pahole]=pahole
  # The systemd initrd scenarios: Debian's dracut builds the initrd with the
  # project's module (dist/dracut/90confidisk); lsinitrd lists it.
  [dracut]=dracut-core
  [lsinitrd]=dracut-core
  # confidisk image sysext's oracle.
  [systemd-dissect]=systemd-container
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# Packages without a command to look for: OVMF and the python modules of
# virt-fw-vars (the image lab's UEFI firmware and its offline key
# enrolment), tpm2-tss, which systemd-cryptenroll loads to talk to swtpm in
# the token interop tests.
for pkg in ovmf python3-cryptography python3-pefile python3-pkg-resources postgresql libtss2-tcti-device0 libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0 libtss2-tcti-swtpm0 libtss2-tctildr0; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
# busybox must be the static build: it runs inside the lab's initramfs.
if command -v busybox >/dev/null 2>&1 && ! file -L "$(command -v busybox)" 2>/dev/null | grep -q 'statically linked'; then
  missing+=(busybox-static)
fi
# The lab boots Debian's 6.12 kernel, which bookworm ships through its
# security suite: make sure apt knows that suite (a minimal install may list
# only the main suite). The security archive sits beside the main one.
ensure_kernel_suite() {
  apt-cache search --names-only '^linux-image-6\.12\..*-amd64-unsigned$' 2>/dev/null | grep -q . && return 0
  [ "$(id -u)" -eq 0 ] || { echo "the lab kernel (linux-image-6.12.*-amd64-unsigned) is not in apt's lists: run apt-get update as root" >&2; return 1; }
  apt-get update -q >/dev/null
  apt-cache search --names-only '^linux-image-6\.12\..*-amd64-unsigned$' | grep -q . && return 0
  uri=$(grep -hE '^deb [^ ]+/debian bookworm( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 | awk '{print $2}' || true)
  if [ -n "$uri" ]; then
    echo "deb ${uri}-security bookworm-security main" >/etc/apt/sources.list.d/confidisk-bookworm-security.list
    echo "added bookworm-security to apt's sources (the lab kernel is there)"
    apt-get update -q >/dev/null
  fi
}
# osslsigncode before 2.6 (bookworm has 2.5) cannot verify Authenticode
# signatures without authenticated attributes, which sbsign and confidisk
# write and UEFI firmware accepts: the tests' oracle comes from
# bookworm-backports (2.9) then. Backports have a low apt priority, so
# nothing else is taken from them.
ensure_osslsigncode() {
  local v
  v=$(osslsigncode --version 2>/dev/null | awk 'NR==1 {print $2}' | tr -d ,)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 2.6 && return 0
  [ "$(id -u)" -eq 0 ] || { echo "osslsigncode ${v:-missing}: the tests need 2.6 or later (bookworm-backports has 2.9)" >&2; return 1; }
  uri=$(grep -hE '^(deb [^ ]+/debian bookworm( |$)|URIs: .*/debian$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -1 | awk '{print $2}' || true)
  echo "deb ${uri:-http://deb.debian.org/debian} bookworm-backports main" >/etc/apt/sources.list.d/confidisk-bookworm-backports.list
  echo "added bookworm-backports to apt's sources (osslsigncode 2.9 is there)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports osslsigncode >/dev/null
}
if [ ${#missing[@]} -eq 0 ]; then
  ensure_kernel_suite && ensure_osslsigncode
  exit $?
fi
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
ensure_kernel_suite
ensure_osslsigncode
