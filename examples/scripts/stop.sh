#!/bin/sh
# Stop the service started by start.sh, by its pid file. Idempotent: a
# missing directory, pid file or process is "already stopped". A pid that
# now belongs to some other program is never signalled.
set -eu

service_dir=${RECONCILE_OUTPUT_SERVICE_DIR:-}
if [ -z "$service_dir" ] || [ ! -d "$service_dir" ]; then
  echo "stop: no service directory (${service_dir:-unset}); nothing to stop"
  exit 0
fi

pidfile="$service_dir/run/server.pid"
if [ ! -f "$pidfile" ]; then
  echo "stop: no pid file; nothing to stop"
  exit 0
fi

pid=$(tr -cd '0-9' < "$pidfile")
if [ -z "$pid" ]; then
  rm -f "$pidfile"
  echo "stop: empty pid file removed"
  exit 0
fi

# Is $pid still our server? (python -m http.server serving this directory)
ours() {
  args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
  case "$args" in
    *http.server*"$service_dir/www"*) return 0 ;;
    *) return 1 ;;
  esac
}

if ours; then
  kill -TERM "$pid" 2>/dev/null || true
  i=0
  while ours && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if ours; then
    kill -KILL "$pid" 2>/dev/null || true
    i=0
    while ours && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
  fi
  if ours; then
    echo "stop: process $pid did not exit" >&2
    exit 1
  fi
  echo "stop: stopped process $pid"
else
  echo "stop: process $pid is not running (stale pid file)"
fi
rm -f "$pidfile"
