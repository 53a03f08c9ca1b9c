#!/usr/bin/env bash
# Builds a root image end to end with `confidisk image build` and compares it
# with the two steps any image build needs, run alone on the same tree:
# mkfs.erofs of the tree plus `veritysetup format` of the result. Prints the
# best wall time of N runs of each, the ratio (the issue's bar: at most 1.3),
# confidisk's peak RSS (bar: under 128 MiB whatever the size) and the load
# average (the machine is shared: read the figures with it).
# Usage: bench/image.sh [SIZE_MIB] [RUNS]   (defaults: 1024 MiB, 3 runs)
# The UKI inputs are the lab's pinned 254 stubs and kernel (fetched into the
# lab cache by `go test ./uki` and `make lab` if missing); the initrd is built
# from the kernel's modules as `confidisk image build` does by default.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
bin=${CONFIDISK:-bin/confidisk}
[ -x "$bin" ] || make -s build
for t in /usr/bin/time veritysetup mkfs.erofs mkfs.fat mcopy; do
  command -v "$t" >/dev/null || { echo "$t is missing: run make deps" >&2; exit 1; }
done
cache=${CONFIDISK_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confidisk-lab}
stubdir=$(ls -d "$cache"/stub/254.*/usr/lib/systemd/boot/efi 2>/dev/null | head -1 || true)
if [ -z "$stubdir" ]; then
  go test -count=1 -run TestPCR11Order ./uki >/dev/null
  stubdir=$(ls -d "$cache"/stub/254.*/usr/lib/systemd/boot/efi | head -1)
fi
kernel=$(ls "$cache"/kernel/*/root/boot/vmlinuz-* 2>/dev/null | head -1 || true)
[ -n "$kernel" ] || { echo "no lab kernel in $cache: run make lab once" >&2; exit 1; }
modules=$(ls -d "${kernel%/boot/*}"/lib/modules/* | head -1)

work=$(mktemp -d "${TMPDIR:-/tmp}/image-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The tree: 16 MiB random files (incompressible, as an OS image mostly is not,
# but erofs does not compress here either), then the rest.
mkdir -p "$work/tree/usr/lib"
left=$size_mib i=0
while [ "$left" -gt 0 ]; do
  n=$(( left < 16 ? left : 16 ))
  head -c "$((n << 20))" /dev/urandom >"$work/tree/usr/lib/blob$i"
  left=$((left - n)) i=$((i + 1))
done
printf 'ID=bench\n' >"$work/tree/os-release"
"$bin" image keys --owner 6f1a4f2e-5d0c-4b7a-9e38-2a1c0d9b7e11 "$work/keys" >/dev/null
cat "$work"/tree/usr/lib/* >/dev/null

# best CMD...: the best wall time (s) of $runs runs and the peak RSS (KiB) of
# the best one.
best() {
  local b="" rss="" t0 t1 r
  for _ in $(seq "$runs"); do
    rm -rf "$work/out" && mkdir -p "$work/out"
    t0=$(date +%s%N)
    /usr/bin/time -o "$work/rss" -f '%M' "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    t1=$(date +%s%N)
    r=$(tail -1 "$work/rss")
    if [ -z "$b" ] || [ $((t1 - t0)) -lt "$b" ]; then b=$((t1 - t0)) rss=$r; fi
  done
  awk -v ns="$b" -v rss="$rss" 'BEGIN { printf "%.2f %d", ns / 1e9, rss }'
}

baseline() {
  mkfs.erofs -T0 --all-root "$work/out/root.erofs" "$work/tree" &&
    veritysetup format "$work/out/root.erofs" "$work/out/root.verity"
}
export -f baseline
export work
load0=$(cut -d' ' -f1-3 /proc/loadavg)
read -r base_s _ <<<"$(best bash -c baseline)"
read -r cd_s cd_rss <<<"$(best "$bin" image build --root "$work/tree" --fs erofs --kernel "$kernel" \
  --modules-dir "$modules" --confidisk "$bin-guest" --stub "$stubdir/linuxx64.efi.stub" --addon-stub "$stubdir/addonx64.efi.stub" \
  --keys "$work/keys" --seed bench --state-size 64M --policy "$work/out/policy.json" "$work/out/disk.img")"
load1=$(cut -d' ' -f1-3 /proc/loadavg)
printf 'image benchmark: %d MiB root tree (random data, page cache), %d cores, best of %d runs\n' "$size_mib" "$(nproc)" "$runs"
printf '  load average before: %s, after: %s\n' "$load0" "$load1"
printf '  mkfs.erofs + veritysetup format   %7.2fs\n' "$base_s"
printf '  confidisk image build (whole disk) %7.2fs   ratio %.2f (bar 1.30)\n' "$cd_s" "$(awk -v a="$cd_s" -v b="$base_s" 'BEGIN{print a/b}')"
printf '  confidisk image build peak RSS     %7d MiB (bar 128)\n' "$((cd_rss / 1024))"
