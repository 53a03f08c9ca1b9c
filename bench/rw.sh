#!/usr/bin/env bash
# The three read-write roots over a verity root in the lab (TCG guests): the
# time from the start of `confidisk boot` to the mounted read-write root on a
# first boot with confidisk.rw=overlay, copy and clone, each on a fresh copy
# of the same disk (a 256 MiB ext4 root of random files); then dm-clone's
# hydration throughput for three region sizes. Figures and ratios only, no
# timing assertion. dm-clone.ko is built out of tree on first use (cached).
# Usage: bench/rw.sh [ROOT_MIB] [REGIONS] [RUNS]   (defaults: 256, 8K,64K,1M, 5)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build
go run ./bench/rwlab -bin bin/confidisk -guest bin/confidisk-guest -root "${1:-256}" -regions "${2:-8K,64K,1M}" -runs "${3:-5}"
