#!/bin/bash
# dracut module "confidisk": confidisk boot as a systemd initrd service
# (docs/distros.md). Add it with `dracut --add confidisk`, or
# add_dracutmodules+=" confidisk " in /etc/dracut.conf.d/confidisk.conf.

# The binary the initrd gets: confidisk-guest (make build's bin/, without
# the broker server) if dracut finds it, else confidisk.
confidisk_binary() {
    command -v confidisk-guest || command -v confidisk
}

# Only when asked for: it takes the root away from systemd's generators.
check() {
    require_any_binary confidisk-guest confidisk || return 1
    require_binaries mkfs.ext4 || return 1
    return 255
}

depends() {
    echo systemd-initrd dm
    return 0
}

installkernel() {
    # dm-verity (root), dm-crypt + dm-integrity (state), the read-write
    # root's file systems, the vTPM's drivers, and the crypto API modules
    # dm-crypt asks for (aes-xts, hmac(sha256), authenc).
    hostonly='' instmods dm_mod dm_verity dm_crypt dm_integrity overlay ext4 erofs \
        tpm_crb tpm_tis tpm_tis_core efivarfs '=crypto'
}

install() {
    inst_binary "$(confidisk_binary)" /usr/bin/confidisk
    # confidisk boot makes the state volume's file system on first boot.
    inst_multiple mkfs.ext4
    inst_multiple -o /etc/mke2fs.conf
    # The operator's settings: boot.conf, the recovery key, the broker's CA
    # (docs/boot.md). Part of the initrd, so inside the signed UKI.
    local f
    for f in "$dracutsysrootdir"/etc/confidisk/*; do
        [[ -f $f ]] && inst_simple "$f" "/etc/confidisk/${f##*/}"
    done
    inst_simple "$moddir/confidisk-boot.service" "$systemdsystemunitdir/confidisk-boot.service"
    mkdir -p "$initdir$systemdsystemunitdir/initrd-root-fs.target.requires"
    ln_r "$systemdsystemunitdir/confidisk-boot.service" \
        "$systemdsystemunitdir/initrd-root-fs.target.requires/confidisk-boot.service"
    # confidisk owns the root: with roothash= on the command line,
    # systemd-veritysetup-generator would map it and systemd-fstab-generator
    # mount /dev/mapper/root at /sysroot; gpt-auto would look for a root
    # partition itself. Masked in this initrd only.
    mkdir -p "$initdir/etc/systemd/system-generators"
    local g
    for g in systemd-fstab-generator systemd-gpt-auto-generator systemd-veritysetup-generator; do
        ln -sf /dev/null "$initdir/etc/systemd/system-generators/$g"
    done
}
