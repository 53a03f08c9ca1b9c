#!/usr/bin/env bash
# Formats and verifies the same random file with veritysetup and with
# confidisk, for sha256 and sha512, best of N runs each, and prints the times
# (wall and CPU) and the ratios, the CPU features that decide which hashing kernels run, and
# the load average (the machine is shared: read the figures with it).
# Usage: bench/verity.sh [SIZE_MIB] [RUNS] [HASHES]
#        (defaults: 1024 MiB, 3 runs, "sha256 sha512")
# The file is written, dropped from the page cache and read back once before
# timing, so that both tools read the page cache as the kernel fills it when
# it reads a file from disk (Linux 6.x keeps a file it reads ahead in large
# folios, up to 2 MiB, which a mapping maps with one PMD each). The sha256
# rows are run a second time on a copy just written 8 KiB at a time, as GNU
# head or cp of a small buffer leave it: in 4 KiB pages, each of which a
# mapping maps (and unmaps) on its own ("written" rows).
# With COLD=1 the file's pages are dropped from the page cache before every
# run instead (posix_fadvise POSIX_FADV_DONTNEED through dd iflag=nocache; the
# file is clean, so this drops exactly its pages and nothing else's).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
hashes=${3:-sha256 sha512}
cold=${COLD:-0}
bin=${CONFIDISK:-bin/confidisk}
[ -x "$bin" ] || make -s build
[ -x /usr/bin/time ] || { echo "GNU time is missing: apt-get install -y time" >&2; exit 1; }
command -v veritysetup >/dev/null || { echo "veritysetup is missing: apt-get install -y cryptsetup-bin" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/verity-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
data=$work/data.img
head -c "$((size_mib << 20))" /dev/urandom >"$data"
sync "$data"
dd if="$data" iflag=nocache count=0 status=none
cat "$data" >/dev/null
written=$work/written.img
if [ "$cold" != 1 ]; then
  dd if="$data" of="$written" bs=8k status=none
  sync "$written"
fi
salt=5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed
uuid=0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90

# has FLAG: whether /proc/cpuinfo lists the CPU flag.
has() { grep -m1 '^flags' /proc/cpuinfo | grep -qw "$1"; }

# kernels: which code confidisk hashes with here (internal/sha256mb and
# verity/internal/sha512mb pick them from the same CPUID bits).
kernels() {
  local k256=crypto/sha256 k512=crypto/sha512
  if has sha_ni; then k256="SHA-NI x2"; fi
  if has avx2; then k512="AVX2 x4"; fi
  if has avx512f && has avx512bw; then k256="AVX-512 x16 (+ SHA-NI x2 for the rest)"; k512="AVX-512 x8"; fi
  printf 'sha256 %s, sha512 %s' "$k256" "$k512"
}

# evict: drop the data files from the page cache (COLD=1 only).
evict() { [ "$cold" = 1 ] && dd if="$data" iflag=nocache count=0 status=none; true; }

# best_of CMD...: prints the best wall time in seconds of $runs runs and the
# least CPU time (user + system) of the same runs: on a busy machine the
# wall time measures the other load too, the CPU time much less so.
best_of() {
  local best="" cpu="" t0 t1 t s
  for _ in $(seq "$runs"); do
    rm -f "$work"/*.hash
    evict
    t0=$(date +%s%N)
    t=$( { /usr/bin/time -f '%U %S' "$@" >/dev/null; } 2>&1 | tail -1 )
    t1=$(date +%s%N)
    s=$(( t1 - t0 ))
    if [ -z "$best" ] || [ "$s" -lt "$best" ]; then best=$s; fi
    cpu=$(awk -v c="$cpu" -v t="$t" 'BEGIN { split(t, f, " "); s = f[1] + f[2]; printf "%.2f", (c == "" || s < c) ? s : c }')
  done
  awk -v ns="$best" -v cpu="$cpu" 'BEGIN { printf "%.3f %s", ns / 1e9, cpu }'
}

# row STEP "VS_WALL VS_CPU" "CD_WALL CD_CPU": one line of the table.
row() {
  local vw vc cw cc
  read -r vw vc <<<"$2"
  read -r cw cc <<<"$3"
  printf '  %-22s  %10ss  %10ss  %7.2fx  %8ss  %8ss  %6.2fx\n' "$1" "$vw" "$cw" \
    "$(awk -v a="$vw" -v b="$cw" 'BEGIN{print a/b}')" "$vc" "$cc" "$(awk -v a="$vc" -v b="$cc" 'BEGIN{print a/b}')"
}

# bench_hash ALG [FILE LABEL]: format and verify FILE (the data file) with
# both tools; prints two rows, their step names followed by LABEL.
bench_hash() {
  local alg=$1 file=${2:-$data} label=${3:-} vs_fmt cd_fmt vs_ver cd_ver root
  local fmt=(format --hash "$alg" --salt $salt --uuid $uuid "$file")
  vs_fmt=$(best_of veritysetup "${fmt[@]}" "$work/vs.hash")
  cd_fmt=$(best_of "$bin" verity "${fmt[@]}" "$work/cd.hash")
  veritysetup "${fmt[@]}" "$work/vs.hash" >"$work/vs.out"
  root=$(awk '/^Root hash:/ { print $3 }' "$work/vs.out")
  "$bin" verity "${fmt[@]}" "$work/cd.hash" >/dev/null
  cmp -s "$work/vs.hash" "$work/cd.hash" || { echo "$alg: hash devices differ!" >&2; exit 1; }
  cp "$work/vs.hash" "$work/keep.vs"; cp "$work/cd.hash" "$work/keep.cd"
  vs_ver=$(best_of veritysetup verify --hash "$alg" "$file" "$work/keep.vs" "$root")
  cd_ver=$(best_of "$bin" verity verify "$file" "$work/keep.cd" "$root")
  row "format $alg$label" "$vs_fmt" "$cd_fmt"
  row "verify $alg$label" "$vs_ver" "$cd_ver"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
table=$(
  for alg in $hashes; do bench_hash "$alg"; done
  if [ "$cold" != 1 ] && [[ " $hashes " == *" sha256 "* ]]; then bench_hash sha256 "$written" " written"; fi
)
evict
rss=$( { /usr/bin/time -f '%M' "$bin" verity format --salt $salt "$data" "$work/rss.hash" >/dev/null; } 2>&1 | tail -1 )
rss="$((rss / 1024)) MiB"
load1=$(cut -d' ' -f1-3 /proc/loadavg)

cache="read back into the page cache"
[ "$cold" = 1 ] && cache="dropped from the page cache before each run"
printf 'verity benchmark: %d MiB random data %s, %d cores, best of %d runs\n' "$size_mib" "$cache" "$(nproc)" "$runs"
printf '  CPU: %s; flags: %s\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
  "$(for f in avx512f avx512bw sha_ni avx2; do has $f && printf '%s ' $f || printf 'no-%s ' $f; done)"
printf '  confidisk kernels: %s\n' "$(kernels)"
printf '  load average before: %s, after: %s\n' "$load0" "$load1"
printf '  %-22s  %11s  %11s  %8s  %9s  %9s  %7s\n' step veritysetup confidisk speedup "vs CPU" "cd CPU" "CPU"
printf '%s\n' "$table"
printf '  confidisk format peak RSS: %s; hash devices byte-identical: yes\n' "$rss"
