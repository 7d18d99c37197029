#!/usr/bin/env bash
# The test suite as `make test` runs it: the end-to-end tests (one shared `make run` platform, mostly waiting on
# Airflow) in one pytest process, everything else in another, at the same time, so that the waits overlap the
# unit tests on a 2-core machine. The end-to-end output is printed after the other; the exit status is non-zero if
# either failed. Extra arguments go to both pytest processes. Run `pytest` directly for one process.
set -uo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
e2e_log=$(mktemp -t demobank-e2e-XXXXXX.log)
"$python" -m pytest -m e2e -p no:cacheprovider "$@" >"$e2e_log" 2>&1 &
e2e_pid=$!
# Ctrl-C or a kill stops both (the e2e process stops its platform in its own teardown).
trap 'kill -INT "$e2e_pid" 2>/dev/null; wait "$e2e_pid"; rm -f "$e2e_log"; exit 130' INT TERM
# The other half runs at a lower CPU priority: the live platform (Airflow's parsing, scheduling and API server on
# SQLite) must stay responsive, or its timeouts fail the end-to-end tests; the unit tests take what it leaves.
nice -n 15 "$python" -m pytest -m "not e2e" "$@"
unit_status=$?
wait "$e2e_pid"
e2e_status=$?
trap - INT TERM
# 5: no test selected in that half (e.g. arguments that pick unit tests only).
[ "$unit_status" -eq 5 ] && unit_status=0
[ "$e2e_status" -eq 5 ] && e2e_status=0
echo
echo "================================ end-to-end tests (ran alongside) ================================"
cat "$e2e_log"
rm -f "$e2e_log"
echo "unit and integration tests: exit ${unit_status}; end-to-end tests: exit ${e2e_status}"
[ "$unit_status" -eq 0 ] && [ "$e2e_status" -eq 0 ]
