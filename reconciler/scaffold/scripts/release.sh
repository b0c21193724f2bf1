#!/bin/sh
# The release phase: edit RELEASE and commit, and only release and run re-run
# (`reconcile plan` says so before you apply).
set -eu
RELEASE="v1"
echo "$RELEASE" > "${RECONCILE_DATA_DIR:-data}/release.txt"
exec ./scripts/phase.sh "release $RELEASE"
