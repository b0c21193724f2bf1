#!/bin/sh
# A stand-in for real work: records which phase ran, for which environment and commit.
# The reconciler passes RECONCILE_ENVIRONMENT, RECONCILE_DESIRED_COMMIT, RECONCILE_DATA_DIR
# and RECONCILE_VAR_<NAME> in the environment; nothing is templated into this command.
set -eu
phase="$1"
dir="${RECONCILE_DATA_DIR:-data}"   # already this environment's own data dir
mkdir -p "$dir"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $phase ${RECONCILE_DESIRED_COMMIT:-} ${RECONCILE_VAR_GREETING:-}" >> "$dir/phases.log"
echo "$phase: ${RECONCILE_VAR_GREETING:-} (${RECONCILE_ENVIRONMENT:-unknown})"
