#!/usr/bin/env bash
# Broker load test on loopback: verifications per second and latency of
# `confidisk serve --verifier insecure-test` with (1) the embedded bbolt store
# and (2) PostgreSQL (a throwaway cluster from Debian's postgresql package,
# fsync on as by default). Load comes from bench/brokerload; one
# verification is POST /v1/nonce + POST /v1/evidence, one epoch operation is
# POST /v1/nonce + POST /v1/volumes/{uuid}/epoch (see its doc comment).
# The insecure-test verifier accepts forged evidence, so those runs measure
# the broker's TLS, HTTP, nonce and store path. The "real" runs measure real
# verification: bench/brokerevidence first (untimed) quotes nonces minted
# from the broker's KEK with AKS swtpm instances (their own attestation
# keys, PCR 7 with a firmware event log, PCR 15 with systemd's log) and
# writes the policy; then `confidisk serve --policy` checks each document in
# full (POST /v1/evidence), with bbolt, PostgreSQL, and three replicas on one
# PostgreSQL (sharing certificates and KEK, the clients spread over them).
#
# Usage: bench/broker.sh            (environment, with defaults:)
#   N=2000        operations per run        C=8     concurrent clients
#   T=60s         time limit per run        EPOCHS=1  also run the epoch mode
#   REAL=1        also run real verification   AKS=64  attestation keys
#   LOG_LEVEL=info  broker log level (every request is logged at info)
# Everything listens on 127.0.0.1 only and is removed on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-2000}
c=${C:-8}
t=${T:-60s}
epochs=${EPOCHS:-1}
real=${REAL:-1}
aks=${AKS:-64}
loglevel=${LOG_LEVEL:-info}
bin=${CONFIDISK:-bin/confidisk}
[ -x "$bin" ] || make -s build

work=$(mktemp -d "${TMPDIR:-/tmp}/broker-bench.XXXXXX")
serve_pids=()
url=""
pgdir="" pgbin="" pg_started=""

as_pg() { # CMD...: run as the postgres user when root (PostgreSQL refuses root)
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

stop_serve() {
  local pid
  for pid in "${serve_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  serve_pids=()
  url=""
}

cleanup() {
  stop_serve
  if [ -n "$pg_started" ]; then
    (cd "$pgdir" && as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w -t 30 stop >/dev/null 2>&1) || true
  fi
  [ -z "$pgdir" ] || rm -rf "$pgdir"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

go build -o "$work/brokerload" ./bench/brokerload
go build -o "$work/brokerevidence" ./bench/brokerevidence
# The insecure-test verifier is only in a binary built for tests.
insecure_bin="$work/confidisk-insecure"
CGO_ENABLED=0 go build -tags confidisk_insecure -o "$insecure_bin" ./cmd/confidisk
if [ "$real" = 1 ] && ! command -v swtpm >/dev/null; then
  echo "== real verification: skipped: no swtpm (apt-get install -y swtpm)" >&2
  real=0
fi

# start_serve NAME ARGS...: starts a broker on a free loopback port with the
# data directory $work/NAME-data (made if missing), the insecure-test
# verifier unless ARGS has --policy; adds its pid to serve_pids and its URL
# to url (comma-separated), sets data.
start_serve() {
  local name=$1
  shift
  data="$work/$name-data"
  local verifier=(--verifier insecure-test) serve_bin=$insecure_bin
  case " $* " in *" --policy "*) verifier=() serve_bin=$bin ;; esac
  : >"$work/$name-serve.out" # exists before the background job opens it
  # One address sends all the load: no per-client rate limit.
  CONFIDISK_INSECURE_TEST_VERIFIER=1 "$serve_bin" serve "${verifier[@]}" --listen 127.0.0.1:0 --data "$data" --log-level "$loglevel" --rate-limit 0 "$@" \
    >"$work/$name-serve.out" 2>"$work/$name-serve.log" &
  local pid=$! u=""
  serve_pids+=("$pid")
  for _ in $(seq 300); do
    u=$(sed -n 's/^confidisk serve: listening on \(https:\/\/[^ ]*\).*/\1/p' "$work/$name-serve.out")
    if [ -n "$u" ]; then
      url=${url:+$url,}$u
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "confidisk serve ($name) exited:" >&2
      tail -n 20 "$work/$name-serve.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "confidisk serve ($name) not listening after 30 s" >&2
  return 1
}

# prepare NAME: makes NAME's data directory with a KEK and, untimed, N real
# evidence documents over nonces minted from it and their policy.
prepare() {
  mkdir -p "$work/$1-data"
  echo "== $1: preparing $n real evidence documents from $aks attestation keys (untimed)"
  "$work/brokerevidence" -kek "$work/$1-data/kek" -n "$n" -aks "$aks" \
    -out "$work/$1-evidence.jsonl" -policy "$work/$1-policy.json"
}

# share FROM TO...: copies FROM's certificates (generated when it first
# started) and KEK into each TO's data directory, as replicas share them.
share() {
  local from=$1 to
  shift
  for to in "$@"; do
    mkdir -p "$work/$to-data"
    cp -r "$work/$from-data/tls" "$work/$from-data/kek" "$work/$to-data/"
  done
}

rows=()
# load NAME [-epochs | -evidence FILE]: runs brokerload against the running
# broker(s); appends a row.
load() {
  local name=$1 mode=verify
  shift
  [ "${1:-}" = -epochs ] && mode=epoch
  [ "${1:-}" = -evidence ] && mode=real
  echo "== $name, $mode: $n operations, $c clients, limit $t"
  local rc=0
  "$work/brokerload" -url "$url" -data "$data" -label "$name" -n "$n" -c "$c" -t "$t" "$@" \
    | tee "$work/$name-$mode.txt" || rc=$?
  local line
  line=$(grep '^brokerload ' "$work/$name-$mode.txt" || true)
  kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  if [ -z "$line" ]; then
    rows+=("$(printf '%-10s %-7s %16s %10s %10s  %s' "$name" "$mode" - - - "failed (exit $rc)")")
  else
    local note=""
    [ "$rc" = 0 ] || note="$(kv errors) errors$([ "$(kv stopped_by_limit)" = true ] && echo ", stopped by the time limit")"
    rows+=("$(printf '%-10s %-7s %16s %10s %10s  %s' "$name" "$mode" "$(kv verifications_per_s)" "$(kv p50_ms)" "$(kv p99_ms)" "$note")")
  fi
}

# 1. bbolt
start_serve bolt
load bolt
[ "$epochs" = 0 ] || load bolt -epochs
stop_serve
if [ "$real" = 1 ]; then
  prepare bolt-real
  start_serve bolt-real --policy "$work/bolt-real-policy.json"
  load bolt -evidence "$work/bolt-real-evidence.jsonl"
  stop_serve
fi

# 2. PostgreSQL
pg_skip=""
initdb=$(ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$initdb" ]; then
  pg_skip="no /usr/lib/postgresql/*/bin/initdb (apt-get install -y postgresql)"
elif [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  pg_skip='no "postgres" user to run PostgreSQL as (apt-get install -y postgresql)'
elif [ "$(id -u)" = 0 ] && ! command -v setpriv >/dev/null; then
  pg_skip="no setpriv (util-linux) to run PostgreSQL as the postgres user"
fi
if [ -n "$pg_skip" ]; then
  echo "== postgres: skipped: $pg_skip" >&2
  rows+=("$(printf '%-10s %-7s %16s %10s %10s  %s' postgres - - - - "skipped: $pg_skip")")
else
  pgbin=$(dirname "$initdb")
  pgversion=$("$pgbin/postgres" --version)
  # Its own directory, reachable by the postgres user (unlike $work).
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/broker-bench-pg.XXXXXX")
  chmod 755 "$pgdir"
  [ "$(id -u)" != 0 ] || chown postgres: "$pgdir"
  export LC_ALL=C LANG=C
  # --no-sync only skips flushing initdb's own files; the server runs with
  # fsync and synchronous_commit on (the defaults).
  (cd "$pgdir" && as_pg "$initdb" -D "$pgdir/data" --username=postgres --auth=trust --encoding=UTF8 \
    --locale=C --no-sync --no-instructions >"$pgdir/initdb.log" 2>&1) \
    || { cat "$pgdir/initdb.log" >&2; exit 1; }
  port=""
  for _ in 1 2 3 4 5; do
    p=$((20000 + RANDOM % 40000))
    # Something answers there: not free.
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
    if (cd "$pgdir" && as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w -t 60 \
      -o "-k $pgdir -c listen_addresses=127.0.0.1 -p $p -c max_connections=100" start >/dev/null); then
      port=$p pg_started=1
      break
    fi
  done
  if [ -z "$port" ]; then
    echo "PostgreSQL did not start:" >&2
    tail -n 20 "$pgdir/postgres.log" >&2
    exit 1
  fi
  (cd "$pgdir" && as_pg "$pgbin/createdb" -h "$pgdir" -p "$port" -U postgres confidisk_bench)
  echo "== postgres: $pgversion on 127.0.0.1:$port (fsync=$(cd "$pgdir" && as_pg "$pgbin/psql" -h "$pgdir" -p "$port" -U postgres -Atc 'show fsync' confidisk_bench), synchronous_commit=$(cd "$pgdir" && as_pg "$pgbin/psql" -h "$pgdir" -p "$port" -U postgres -Atc 'show synchronous_commit' confidisk_bench))"
  pgurl="postgres://postgres@127.0.0.1:$port/confidisk_bench?sslmode=disable"
  start_serve postgres --store postgres --postgres-url "$pgurl"
  load postgres
  [ "$epochs" = 0 ] || load postgres -epochs
  stop_serve
  if [ "$real" = 1 ]; then
    prepare pg-real
    start_serve pg-real --store postgres --postgres-url "$pgurl" --policy "$work/pg-real-policy.json"
    load postgres -evidence "$work/pg-real-evidence.jsonl"
    stop_serve
    prepare pg3-0
    start_serve pg3-0 --store postgres --postgres-url "$pgurl" --policy "$work/pg3-0-policy.json"
    share pg3-0 pg3-1 pg3-2 # its generated certificates and the KEK
    for r in 1 2; do
      start_serve "pg3-$r" --store postgres --postgres-url "$pgurl" --policy "$work/pg3-0-policy.json"
    done
    data="$work/pg3-0-data"
    load postgres-3 -evidence "$work/pg3-0-evidence.jsonl"
    stop_serve
  fi
fi

echo
printf 'Broker load on loopback, %d cores, %d operations x %d clients per run (limit %s), log level %s\n' "$(nproc)" "$n" "$c" "$t" "$loglevel"
printf '  %-10s %-7s %16s %10s %10s\n' store mode verifications/s p50_ms p99_ms
for r in "${rows[@]}"; do printf '  %s\n' "${r%"${r##*[! ]}"}"; done
