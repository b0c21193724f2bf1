#!/bin/sh
# release: render what the service serves into its directory.
#
# Reads only the RECONCILE_* environment the reconciler gives shell steps:
#   RECONCILE_OUTPUT_SERVICE_DIR  the directory provision created
#   RECONCILE_ENVIRONMENT         the environment's name
#   RECONCILE_DESIRED_COMMIT      the desired-state commit being released
#   RECONCILE_VAR_GREETING        optional text for the page
# Files are written to a temporary name and renamed, so a running server
# never serves half a file.
set -eu

die() { echo "release: $*" >&2; exit 1; }

service_dir=${RECONCILE_OUTPUT_SERVICE_DIR:-}
environment=${RECONCILE_ENVIRONMENT:-}
commit=${RECONCILE_DESIRED_COMMIT:-unknown}
greeting=${RECONCILE_VAR_GREETING:-Hello from reconciler}

[ -n "$environment" ] || die "RECONCILE_ENVIRONMENT is not set"
case "$service_dir" in
  /*) ;;
  *) die "RECONCILE_OUTPUT_SERVICE_DIR must be an absolute path (got '$service_dir'); did provision run?" ;;
esac
[ -f "$service_dir/.reconciler-service" ] || die "$service_dir was not created by provision"
[ -f "$service_dir/config/service.json" ] || die "$service_dir/config/service.json is missing; did configure run?"

www="$service_dir/www"
mkdir -p "$www"

# HTML-escape what came from declared values.
escape() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'; }

put() { # put NAME: stdin to $www/NAME, atomically
  tmp="$www/.$1.tmp.$$"
  cat > "$tmp"
  mv -f "$tmp" "$www/$1"
}

released_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

put index.html <<HTML
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>$(escape "$environment")</title></head>
<body>
<h1>$(escape "$greeting")</h1>
<p>Environment <strong>$(escape "$environment")</strong>, released from commit <code>$(escape "$commit")</code> at $released_at.</p>
</body>
</html>
HTML

put version.txt <<TXT
environment=$environment
commit=$commit
released_at=$released_at
TXT

cp "$service_dir/config/service.json" "$www/.service.json.tmp.$$"
mv -f "$www/.service.json.tmp.$$" "$www/config.json"

printf 'ok\n' | put health

printf '%s release %s %s\n' "$released_at" "$environment" "$commit" >> "$service_dir/deployments.log"
echo "released $environment at $commit into $www"
