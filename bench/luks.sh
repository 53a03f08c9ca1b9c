#!/usr/bin/env bash
# LUKS2 benchmarks, confidisk next to cryptsetup in one run (best of N):
#  1. unlock (open --test-passphrase) of the same header, same KDF parameters;
#  2. format of a 1 GiB image without wipe, with forced KDF costs, so the time
#     beyond the KDF is what the format itself costs;
#  3. the KDF parameters each tool's benchmark picks by default (2 s target).
# Usage: bench/luks.sh [RUNS] [ARGON_MEMORY_KIB]   (defaults: 3 runs, 262144 KiB)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
mem=${2:-262144}
bin=${CONFIDISK:-bin/confidisk}
[ -x "$bin" ] || make -s build
command -v cryptsetup >/dev/null || { echo "cryptsetup is missing: apt-get install -y cryptsetup-bin" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/luks-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
printf 'benchmark passphrase' >"$work/key"

best_of() { # CMD...: best wall time in seconds of $runs runs
  local best="" t0 t1
  for _ in $(seq "$runs"); do
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
    if [ -z "$best" ] || [ $((t1 - t0)) -lt "$best" ]; then best=$((t1 - t0)); fi
  done
  awk -v ns="$best" 'BEGIN { printf "%.3f", ns / 1e9 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

kdf=(--pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory "$mem" --pbkdf-parallel 2)
truncate -s 1G "$work/img"
"$bin" luks format -q "${kdf[@]}" --key-file "$work/key" "$work/img"
cs_unlock=$(best_of cryptsetup open --test-passphrase --key-file "$work/key" "$work/img")
cd_unlock=$(best_of "$bin" luks open --test-passphrase --key-file "$work/key" "$work/img")

fmt_cd() { "$bin" luks format -q "${kdf[@]}" --key-file "$work/key" "$work/img"; }
fmt_cs() { cryptsetup luksFormat -q --type luks2 "${kdf[@]}" --key-file "$work/key" "$work/img"; }
cd_fmt=$(best_of fmt_cd)
cs_fmt=$(best_of fmt_cs)

rm -f "$work/img"; truncate -s 1G "$work/img"
t0=$(date +%s%N); "$bin" luks format -q --key-file "$work/key" "$work/img"; t1=$(date +%s%N)
cd_default=$("$bin" luks dump "$work/img" | awk '/Time cost/ {t=$3} /Memory:/ {m=$2} /Threads/ {p=$2} END {print "t=" t " m=" m " p=" p}')
cd_default_time=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
cd_default_unlock=$(best_of "$bin" luks open --test-passphrase --key-file "$work/key" "$work/img")
t0=$(date +%s%N); cryptsetup luksFormat -q --type luks2 --key-file "$work/key" "$work/img"; t1=$(date +%s%N)
cs_default=$(cryptsetup luksDump "$work/img" | awk '/Time cost/ {t=$3} /Memory:/ {m=$2} /Threads/ {p=$2} END {print "t=" t " m=" m " p=" p}')
cs_default_time=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
cs_default_unlock=$(best_of cryptsetup open --test-passphrase --key-file "$work/key" "$work/img")

printf 'LUKS2 benchmark, %d cores, best of %d runs (argon2id t=4 m=%d KiB p=2 unless noted)\n' "$(nproc)" "$runs" "$mem"
printf '  %-34s %10s %10s %12s\n' step cryptsetup confidisk "cs/confidisk"
printf '  %-34s %9ss %9ss %11sx\n' "unlock (--test-passphrase)" "$cs_unlock" "$cd_unlock" "$(ratio "$cd_unlock" "$cs_unlock")"
printf '  %-34s %9ss %9ss %11sx\n' "format 1 GiB, no wipe" "$cs_fmt" "$cd_fmt" "$(ratio "$cd_fmt" "$cs_fmt")"
printf '  default KDF (2 s target): cryptsetup %s (format %ss, unlock %ss); confidisk %s (format %ss, unlock %ss)\n' \
  "$cs_default" "$cs_default_time" "$cs_default_unlock" "$cd_default" "$cd_default_time" "$cd_default_unlock"
