#!/usr/bin/env bash
# `make test`'s pytest run: the real-daemon tier (tests/realdocker) beside the rest of the suite.
#
# Why two processes: the tier spends most of its ~25 minutes waiting (images loading, containers
# starting, health checks), the rest is mostly CPU; one after the other they approach CI's
# 60-minute budget. They share nothing: the tier runs its own dockerd and its containers publish
# only inside its own networks and on the ports the stacks declare, the rest uses free loopback
# ports. Each writes its own log; both are printed once both are done, the tier's last, then one
# line per part, so the end of the output says what failed.
#
# Usage: scripts/run-tests.sh PYTHON LOG_DIR [pytest args for both parts...]
# SERIAL=1 runs the parts one after the other instead.
set -uo pipefail
python=$1 logs=$2
shift 2
mkdir -p "$logs"
suite_log=$logs/test-suite.log tier_log=$logs/test-docker.log

if [ "${SERIAL:-}" = 1 ]; then
  "$python" -m pytest --ignore=tests/realdocker "$@" 2>&1 | tee "$suite_log"
  suite=${PIPESTATUS[0]}
  "$python" -m pytest tests/realdocker "$@" 2>&1 | tee "$tier_log"
  tier=${PIPESTATUS[0]}
else
  "$python" -m pytest tests/realdocker "$@" >"$tier_log" 2>&1 &
  tier_pid=$!
  # A stopped run stops the tier too (its fixtures then stop its dockerd).
  trap 'kill "$tier_pid" 2>/dev/null' INT TERM
  "$python" -m pytest --ignore=tests/realdocker "$@" 2>&1 | tee "$suite_log"
  suite=${PIPESTATUS[0]}
  wait "$tier_pid"
  tier=$?
  echo
  echo "=================== the real-daemon tier (tests/realdocker), run beside the suite ==================="
  cat "$tier_log"
fi

summary() { grep -E '^=+ .*(passed|failed|error|skipped).* in [0-9.]+s' "$1" | tail -1; }
echo
echo "suite (all but tests/realdocker): exit $suite: $(summary "$suite_log")"
echo "real-daemon tier (tests/realdocker): exit $tier: $(summary "$tier_log")"
[ "$suite" -eq 0 ] && [ "$tier" -eq 0 ]
