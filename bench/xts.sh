#!/usr/bin/env bash
# AES-XTS encryption on one core: confidisk's internal/aesxts (Go benchmark,
# GOMAXPROCS=1, 64 KiB of data units per call) against OpenSSL's EVP aes-128-xts / aes-256-xts
# (`openssl speed -evp`), both on 4096-byte and 512-byte data units, in one
# run; prints MB/s and the ratio, with the CPU flags that select the kernel
# and the load average (the machine is shared: read the figures with it).
# Usage: bench/xts.sh [SECONDS]   (default 2 per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-2}
command -v openssl >/dev/null || { echo "openssl is missing: apt-get install -y openssl" >&2; exit 1; }
has() { grep -m1 '^flags' /proc/cpuinfo | grep -qw "$1"; }

load0=$(cut -d' ' -f1-3 /proc/loadavg)
gobench=$(GOMAXPROCS=1 go test -run '^$' -bench 'BenchmarkEncrypt' -benchtime "${secs}s" ./internal/aesxts)
# ossl ALG BYTES: OpenSSL's MB/s (10^6 bytes) for one data-unit size.
ossl() {
  openssl speed -evp "$1" -bytes "$2" -seconds "$secs" 2>/dev/null |
    awk -v a="$1" 'toupper($1) == toupper(a) { v = $2; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }'
}
# ours NAME BYTES: the Go benchmark's MB/s for 64 KiB of consecutive units
# per call (EncryptUnits, as a volume writer calls it).
ours() { awk -v n="BenchmarkEncrypt/$1/$2/aesxts-units" '$1 == n || $1 ~ "^" n "-[0-9]+$" { print $(NF-1) }' <<<"$gobench" | cut -d. -f1; }
rows=$(
  for spec in "AES-128 aes-128-xts" "AES-256 aes-256-xts"; do
    read -r name alg <<<"$spec"
    for size in 4096 512; do
      o=$(ossl "$alg" "$size"); c=$(ours "$name" "$size")
      printf '  %-10s %6s  %9s MB/s  %9s MB/s  %6.2fx\n' "$name" "$size" "$o" "$c" "$(awk -v a="$c" -v b="$o" 'BEGIN{print a/b}')"
    done
  done
)
load1=$(cut -d' ' -f1-3 /proc/loadavg)

printf 'AES-XTS encryption, one core, %s s per measurement\n' "$secs"
printf '  CPU: %s; flags: %s\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
  "$(for f in avx512f avx512bw vaes vpclmulqdq aes; do has $f && printf '%s ' $f || printf 'no-%s ' $f; done)"
if has avx512f && has avx512bw && has vaes && has vpclmulqdq; then k="VAES on ZMM, 16 blocks a step"; else k="golang.org/x/crypto/xts (no VAES + AVX-512 here)"; fi
printf '  confidisk kernel: %s\n' "$k"
printf '  load average before: %s, after: %s\n' "$load0" "$load1"
printf '  %-10s %6s  %12s  %12s  %7s\n' cipher unit openssl confidisk ratio
printf '%s\n' "$rows"
