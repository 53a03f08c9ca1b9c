#!/usr/bin/env bash
# Runs the lab suite (QEMU + swtpm + a real kernel): the harness self-tests and
# the e2e scenarios. Prints one "LAB <scenario> PASS|FAIL <s>s" line per
# scenario and go test's verdicts; the whole log is kept in .lab.log.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
: >.lab.log # before tail opens it: go test's redirection runs in the background job
go test -count=1 -timeout 60m -run '^TestLab' -v ./lab ./e2e >.lab.log 2>&1 &
pid=$!
tail -n +1 -f .lab.log --pid=$pid | grep --line-buffered -E '^(LAB |--- FAIL|FAIL|ok |panic)'
wait $pid
rc=$?
echo "lab suite: $(grep -c '^LAB .* PASS' .lab.log) passed, $(grep -c '^LAB .* FAIL' .lab.log) failed in $(( $(date +%s) - start ))s (log: .lab.log)"
if [ $rc -ne 0 ]; then
  echo "lab suite failed; failing tests:" >&2
  grep -E -A30 '^--- FAIL' .lab.log | head -80 >&2
fi
exit $rc
