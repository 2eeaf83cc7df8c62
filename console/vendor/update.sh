#!/usr/bin/env bash
# Refreshes the console's vendored players from npm at the versions pinned here; the daemon
# builds these files into its binary, so the console never loads anything from the internet.
#   bash console/vendor/update.sh
set -euo pipefail
HLS_JS=1.6.19
DASH_JS=4.7.4
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "hls.js@$HLS_JS" "dashjs@$DASH_JS" >/dev/null
tar -xzf "hls.js-$HLS_JS.tgz" package/dist/hls.min.js package/LICENSE
cp package/dist/hls.min.js "$here/hls.min.js"
cp package/LICENSE "$here/hls.js.LICENSE"
rm -rf package
tar -xzf "dashjs-$DASH_JS.tgz" package/dist/dash.all.min.js package/LICENSE.md
cp package/dist/dash.all.min.js "$here/dash.all.min.js"
cp package/LICENSE.md "$here/dash.js.LICENSE"
printf 'hls.js %s\ndash.js %s\n' "$HLS_JS" "$DASH_JS" > "$here/VERSIONS"
echo "vendored hls.js $HLS_JS and dash.js $DASH_JS"
