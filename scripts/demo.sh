#!/usr/bin/env bash
# Runs the demo stack in the foreground: the OpenID provider on
# 127.0.0.1:3000, the stand-ins for the outside services on 127.0.0.1:4000
# (they also serve the demo page), and Envoy with the Rulegate filter on
# 127.0.0.1:10000 (admin on 127.0.0.1:9901), from the repository's own
# envoy.yaml; the page is at http://127.0.0.1:10000/. Ctrl-C stops them
# all. `make demo` builds everything first and calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

state=.run/demo
mkdir -p "$state"

# Rulegate's signing key: made once, kept in .run/ (never committed), and
# handed to Envoy through its environment, as in production.
key=$state/signing-key.pem
if [[ ! -s $key ]]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
  echo "made a new ES256 signing key in $key"
fi

for port in 10000 3000 4000 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; stop whatever holds it (an earlier demo?)" >&2
    exit 1
  fi
done

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
trap 'echo; echo "stopping the demo"; exit 0' INT TERM

# The services' credentials, as the stand-ins expect them. With the real
# services these come from your secret store, never from a file in git.
export FULLCONTACT_API_KEY=fullcontact-api-key
export SLACK_SIGNUP_WEBHOOK_URL=https://hooks.slack.com/services/T-RULEGATE-DEMO/B-SIGNUPS/signupsecret
export SLACK_ALERT_WEBHOOK_URL=https://hooks.slack.com/services/T-RULEGATE-DEMO/B-ALERTS/alertsecret
export SEGMENT_WRITE_KEY=segment-write-key
export KEEN_WRITE_KEY=keen-write-key
export ZAPIER_HOOK_URL=https://hooks.zapier.com/hooks/catch/123456/rulegate/
export SALESFORCE_CLIENT_ID=sf-client-id
export SALESFORCE_CLIENT_SECRET=sf-client-secret
export WEBHOOK_SIGNING_SECRET=whsec_cnVsZWdhdGUtd2ViaG9vay10ZXN0LXNlY3JldA==

target/debug/standins --port 4000 >"$state/standins.log" 2>&1 &
pids+=($!)

ISSUER=http://127.0.0.1:10000 PORT=3000 KEYS_FILE=$state/provider-keys.json \
  node provider/server.mjs >"$state/provider.log" 2>&1 &
pids+=($!)

RULEGATE_SIGNING_KEY=$(cat "$key") .venv/bin/envoy -c envoy.yaml --concurrency 2 \
  --disable-hot-restart --log-level info --component-log-level wasm:debug \
  >"$state/envoy.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  if ! kill -0 "${pids[@]}" 2>/dev/null; then
    echo "the demo failed to start; last lines of the logs:" >&2
    tail -n 20 "$state/provider.log" "$state/envoy.log" >&2
    exit 1
  fi
  sleep 0.2
done

cat <<MSG

Rulegate demo is running (Ctrl-C stops it).

  Open the demo page:     http://127.0.0.1:10000/
  Issuer, through Envoy:  http://127.0.0.1:10000
  Discovery:              http://127.0.0.1:10000/.well-known/openid-configuration
  Merged JWKS:            http://127.0.0.1:10000/.well-known/rulegate/jwks.json
  Envoy admin and stats:  http://127.0.0.1:9901/stats?filter=rulegate
  What services received: http://127.0.0.1:4000/_control/received
  Logs:                   $state/envoy.log, $state/provider.log, $state/standins.log

On the page, "Log in" runs the authorization code flow with PKCE through
Envoy; any email signs up with the password "rulegate". The page shows the
tokens, the claims the rules added, and live what each service received.

Or log in from another terminal (a new user each time, or a known one):

  scripts/login.sh
  scripts/login.sh alice@example.com alice-password
  scripts/login.sh carol@example.org carol-password --backend

The id_token comes back re-signed by Rulegate (kid rulegate-demo-1) with the
claims of the rules in envoy.yaml under https://rulegate.dev/claims/,
enrichment included. A new user's first login also reaches Slack, Segment,
Keen, Zapier and Salesforce (the stand-ins); a second login only Segment.

MSG
wait -n "${pids[@]}"
echo "a demo process stopped; see the logs in $state/" >&2
