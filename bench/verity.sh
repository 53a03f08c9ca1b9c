#!/usr/bin/env bash
# Formats and verifies the same random file with veritysetup and with
# confidisk, best of N runs each, and prints the times and the ratios.
# Usage: bench/verity.sh [SIZE_MIB] [RUNS]    (defaults: 1024 MiB, 3 runs)
# The file is read once before timing so that both tools read the page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
bin=${CONFIDISK:-bin/confidisk}
[ -x "$bin" ] || make -s build
command -v veritysetup >/dev/null || { echo "veritysetup is missing: apt-get install -y cryptsetup-bin" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/verity-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
data=$work/data.img
head -c "$((size_mib << 20))" /dev/urandom >"$data"
cat "$data" >/dev/null
salt=5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed
uuid=0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90

# best_of CMD...: prints the best wall time in seconds of $runs runs.
best_of() {
  local best="" t0 t1 s
  for _ in $(seq "$runs"); do
    rm -f "$work"/*.hash
    t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
    s=$(( t1 - t0 ))
    if [ -z "$best" ] || [ "$s" -lt "$best" ]; then best=$s; fi
  done
  awk -v ns="$best" 'BEGIN { printf "%.3f", ns / 1e9 }'
}

vs_fmt=$(best_of veritysetup format --salt $salt --uuid $uuid "$data" "$work/vs.hash")
cd_fmt=$(best_of "$bin" verity format --salt $salt --uuid $uuid "$data" "$work/cd.hash")
veritysetup format --salt $salt --uuid $uuid "$data" "$work/vs.hash" >"$work/vs.out"
root=$(awk '/^Root hash:/ { print $3 }' "$work/vs.out")
"$bin" verity format --salt $salt --uuid $uuid "$data" "$work/cd.hash" >/dev/null
cmp -s "$work/vs.hash" "$work/cd.hash" || { echo "hash devices differ!" >&2; exit 1; }
cp "$work/vs.hash" "$work/keep.vs"; cp "$work/cd.hash" "$work/keep.cd"
verify_vs() { veritysetup verify "$data" "$work/keep.vs" "$root"; }
verify_cd() { "$bin" verity verify "$data" "$work/keep.cd" "$root"; }
vs_ver=$(best_of verify_vs)
cd_ver=$(best_of verify_cd)

rss="n/a"
if [ -x /usr/bin/time ]; then
  rss=$( { /usr/bin/time -f '%M' "$bin" verity format --salt $salt "$data" "$work/rss.hash" >/dev/null; } 2>&1 | tail -1 )
  rss="$((rss / 1024)) MiB"
fi

printf 'verity benchmark: %d MiB random data, %d cores, best of %d runs\n' "$size_mib" "$(nproc)" "$runs"
printf '  %-8s  %12s  %12s  %8s\n' step veritysetup confidisk speedup
printf '  %-8s  %11ss  %11ss  %7.2fx\n' format "$vs_fmt" "$cd_fmt" "$(awk -v a="$vs_fmt" -v b="$cd_fmt" 'BEGIN{print a/b}')"
printf '  %-8s  %11ss  %11ss  %7.2fx\n' verify "$vs_ver" "$cd_ver" "$(awk -v a="$vs_ver" -v b="$cd_ver" 'BEGIN{print a/b}')"
printf '  confidisk format peak RSS: %s; hash devices byte-identical: yes\n' "$rss"
