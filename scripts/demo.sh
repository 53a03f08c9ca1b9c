#!/usr/bin/env bash
# The confidisk demo, narrated. Builds a small ext4 image, protects it with a
# dm-verity hash tree, verifies it, flips one byte on "the host's disk", and
# shows the change caught: first in userspace on the host, then by the kernel
# of a guest booted under QEMU (with swtpm as its vTPM). Then the guest's boot:
# it encrypts its state volume on first boot, opens it on the second, and
# refuses an old copy of disk and vTPM (the broker remembers) and the volume
# the host swaps in. Last, the real boot chain: confidisk image build makes a
# signed disk (UKI, roothash= addon) and the broker policy of its predicted
# PCRs; OVMF boots it with Secure Boot and the broker accepts the guest; an
# unsigned UKI is refused by the firmware.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/confidisk
work=${DEMO_DIR:-$PWD/demo-work}
rm -rf "$work"; mkdir -p "$work/rootfs/etc"
PATH="$PATH:/usr/sbin:/sbin"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "1. An OS image: a small ext4 filesystem with a file the attacker would like to change"
echo "PermitRootLogin no" >"$work/rootfs/etc/sshd_config"
head -c 3000000 /dev/urandom | base64 >"$work/rootfs/etc/bulk"
run mkfs.ext4 -q -F -d "$work/rootfs" -L root -b 4096 "$work/root.img" 16M
say "2. Build its dm-verity hash tree (the same bytes veritysetup writes) and keep the root hash"
run "$bin" verity format --root-hash-file "$work/root.roothash" "$work/root.img" "$work/root.verity"
root=$(cat "$work/root.roothash")
echo "In a confidential guest this root hash goes into the signed kernel command line"
echo "(roothash=$root), so the host cannot change it."

say "3. Verify every block against the root hash (on all cores)"
run "$bin" verity verify -v "$work/root.img" "$work/root.verity" "$root"

say "4. The host flips one byte of (a copy of) the image on its disk"
cp "$work/root.img" "$work/root.good.img"
off=$(grep -obUa "PermitRootLogin no" "$work/root.img" | head -1 | cut -d: -f1)
off=$((off + 16))  # the 'n' of "no"
printf 'y' | dd of="$work/root.img" bs=1 seek="$off" conv=notrunc status=none
echo "byte $off changed: the file now reads \"PermitRootLogin yo\" on disk"

say "5. Verification now fails, and names the data block that changed"
printf '$ %s\n' "confidisk verity verify root.img root.verity $root"
if "$bin" verity verify "$work/root.img" "$work/root.verity" "$root"; then
  echo "UNEXPECTED: verification passed" >&2; exit 1
fi
echo "(expected block: $((off / 4096)) = byte $off / 4096)"

say "6. A verified read stops at that block: everything before it is returned, nothing of it"
printf '$ %s\n' "confidisk verity read root.img root.verity $root > checked.img"
if "$bin" verity read "$work/root.img" "$work/root.verity" "$root" >"$work/checked.img"; then
  echo "UNEXPECTED: read passed" >&2; exit 1
fi
echo "bytes returned before the error: $(stat -c %s "$work/checked.img") (= block $((off / 4096)) x 4096)"

say "7. In a guest: the kernel's dm-verity, set up by 'confidisk verity open'"
go run ./lab/demo verity "$bin-guest" "$work/root.good.img" "$work/root.verity" "$work/root.img" "$root" $((off / 4096))

say "8. A confidential guest's own state volume: self-encryption, unlock, the broker, roll-back and swap attacks"
go run ./lab/demo boot "$bin-guest"

say "9. The real boot chain: a signed disk from confidisk image build, Secure Boot, predicted PCRs"
go run ./lab/demo image "$bin" "$bin-guest"

say "Done: the tampered byte was never handed out, and the guest only ever opened its own, current volume."
