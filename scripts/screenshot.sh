#!/usr/bin/env bash
# Takes the README's picture of the demo page: starts the demo stack as
# `make demo` runs it (same ports, so the page shows the README's issuer),
# logs a new user in through the page in headless Chromium, saves the
# page to docs/screenshot.png, and stops the stack.
# `make screenshot` builds everything first and calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-docs/screenshot.png}
log=.run/screenshot-demo.log
mkdir -p .run "$(dirname "$out")"

# The demo in its own process group, so that stopping it stops all of it.
setsid scripts/demo.sh >"$log" 2>&1 &
demo=$!
stop() { kill -TERM -- "-$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; }
trap stop EXIT

for _ in $(seq 150); do
  grep -q "demo is running" "$log" && break
  kill -0 "$demo" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.2
done
grep -q "demo is running" "$log" || { echo "the demo did not start; see $log" >&2; exit 1; }

node tests/browser/page-login.mjs --base http://127.0.0.1:10000 \
  --email jane.doe@example.org --password rulegate --logins 1 --screenshot "$out" >/dev/null
echo "saved $out"
