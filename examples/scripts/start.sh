#!/bin/sh
# run: (re)start the service: python3 -m http.server on 127.0.0.1:$port,
# serving $service_dir/www, in its own session so it outlives this step and
# its process group. All of its output goes to $service_dir/log/server.log,
# so it never holds this step's stdout open. Returns once the port accepts
# connections, or fails with the tail of the log.
#
#   RECONCILE_OUTPUT_SERVICE_DIR  the directory provision created
#   RECONCILE_VAR_HTTP_PORT       the port (1024-65535)
set -eu

die() { echo "start: $*" >&2; exit 1; }

service_dir=${RECONCILE_OUTPUT_SERVICE_DIR:-}
port=${RECONCILE_VAR_HTTP_PORT:-}
python=${PYTHON:-python3}

case "$service_dir" in
  /*) ;;
  *) die "RECONCILE_OUTPUT_SERVICE_DIR must be an absolute path (got '$service_dir'); did provision run?" ;;
esac
case "$port" in
  ''|*[!0-9]*) die "vars.http_port (RECONCILE_VAR_HTTP_PORT) must be a number (got '$port')" ;;
esac
[ "$port" -ge 1024 ] && [ "$port" -le 65535 ] || die "port $port is outside 1024-65535"
[ -f "$service_dir/www/health" ] || die "$service_dir/www/health is missing; did release run?"

# Restart: stop whatever this directory's pid file names.
sh "$(dirname "$0")/stop.sh"

mkdir -p "$service_dir/run" "$service_dir/log"
pidfile="$service_dir/run/server.pid"
log="$service_dir/log/server.log"
offset=$(wc -c < "$log" 2>/dev/null || echo 0)   # only what this start writes counts

# Popen(start_new_session=True) gives the server its own session and process
# group and tells us its exact pid, on Linux and macOS alike.
"$python" - "$service_dir/www" "$port" "$log" "$pidfile" <<'PY'
import os
import subprocess
import sys

www, port, log, pidfile = sys.argv[1:5]
with open(log, "ab") as out, open(os.devnull, "rb") as devnull:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", www, port],
        stdin=devnull,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
tmp = f"{pidfile}.tmp"
with open(tmp, "w") as f:
    f.write(f"{proc.pid}\n")
os.replace(tmp, pidfile)
PY

pid=$(cat "$pidfile")

# Wait until it listens, or fail fast if it died (e.g. the port is taken).
# A connection alone proves nothing (another process may hold the port), so it
# also waits for the server's own "Serving HTTP on" line: it bound the port.
"$python" - "$pid" "$port" "$log" "$offset" <<'PY' || { echo "--- $log (tail)" >&2; tail -n 20 "$log" >&2; rm -f "$pidfile"; exit 1; }
import os
import socket
import sys
import time

pid, port, log, offset = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])


def bound() -> bool:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return b"Serving HTTP on" in f.read()
    except OSError:
        return False


def alive() -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (the launcher exited, so init reaps it).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    if not alive():
        sys.exit(f"start: the server (pid {pid}) exited")
    if not bound():
        time.sleep(0.05)
        continue
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(f"start: nothing listens on 127.0.0.1:{port} after 15s")
PY

printf '%s run %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${RECONCILE_ENVIRONMENT:-}" "${RECONCILE_DESIRED_COMMIT:-}" >> "$service_dir/deployments.log"
echo "start: serving $service_dir/www on http://127.0.0.1:$port (pid $pid)"
