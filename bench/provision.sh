#!/usr/bin/env bash
# First-boot provisioning in the lab: cryptsetup luksFormat --integrity with
# its full wipe next to confidisk's full and fast tag initialisation, on the
# same device in one guest; then a whole `confidisk boot` first boot, step by
# step. Usage: bench/provision.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build
go run ./bench/provisionlab -bin bin/confidisk -size "${1:-1024}"
