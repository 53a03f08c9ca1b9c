#!/usr/bin/env bash
# Architecture checks (run by make lint): which packages may link which.
#  - the guest's boot (provision) and the evidence code (attest) link no broker
#    server, store, bbolt or PostgreSQL driver: the initrd carries the guest only;
#  - the TPM package knows nothing of LUKS2 (enrolment lives in enroll/);
#  - the production binary links no test double (brokertest);
#  - the guest's binary (what an initrd carries) links no image builder,
#    UKI writer or Secure Boot signer.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
refuse() { # packages pattern why
  local bad
  bad=$(go list -deps $1 | grep -E "$2" || true)
  if [ -n "$bad" ]; then
    echo "check-deps: $1 links $(echo $bad | tr '\n' ' ')— $3" >&2
    fail=1
  fi
}
refuse "./provision ./attest/..." '^github.com/confidisk/confidisk/broker(/store.*)?$|go.etcd.io/bbolt|jackc/pgx' \
  "the guest must not link the verifier's server or stores"
refuse "./tpm" '^github.com/confidisk/confidisk/luks2' "LUKS2 enrolment belongs in enroll/"
refuse "./cmd/confidisk" '^github.com/confidisk/confidisk/broker/brokertest$' "the production binary must not carry the test verifier"
GOFLAGS=-tags=confidisk_guest refuse "./cmd/confidisk" '^github.com/confidisk/confidisk/(image|uki|secureboot)$|foxboron/go-uefi' \
  "the guest build must not carry the image builder or the signing code"
exit $fail
