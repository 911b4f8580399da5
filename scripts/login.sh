#!/usr/bin/env bash
# Logs a user in through Envoy the way a browser would (authorization code
# with PKCE, the provider's login and consent pages, a cookie jar), then
# exchanges the code and prints the token response and the decoded id_token.
#
#   scripts/login.sh [EMAIL [PASSWORD]] [--backend]
#
# Any email not in provider/accounts.json logs in with the demo password
# "rulegate" and becomes a new user. --backend uses the confidential client
# (client_secret_basic) instead of the single-page app.
set -euo pipefail

base=${RULEGATE_URL:-http://127.0.0.1:10000}
client=rulegate-spa
args=()
for arg in "$@"; do
  if [[ $arg == --backend ]]; then client=rulegate-backend; else args+=("$arg"); fi
done
email=${args[0]:-demo.$RANDOM@example.org}
password=${args[1]:-rulegate}

jar=$(mktemp)
trap 'rm -f "$jar"' EXIT
verifier=$(openssl rand -hex 32)
challenge=$(printf %s "$verifier" | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=')
state=$(openssl rand -hex 8)
nonce=$(openssl rand -hex 8)

# Prints where a request redirects to, keeping cookies.
redirect() { curl -sS -o /dev/null -w '%{redirect_url}' -b "$jar" -c "$jar" "$@"; }

next=$(redirect "$base/auth?response_type=code&client_id=$client&redirect_uri=$base/callback&scope=openid%20email%20profile&state=$state&nonce=$nonce&code_challenge=$challenge&code_challenge_method=S256")
for _ in $(seq 12); do
  [[ $next == "$base/callback"* ]] && break
  if [[ $next == */interaction/* ]]; then
    action=$(curl -sS -b "$jar" -c "$jar" "$next" | grep -o 'action="[^"]*"' | head -n 1 | cut -d'"' -f2)
    if [[ $action == */login ]]; then
      next=$(redirect -X POST --data-urlencode "email=$email" --data-urlencode "password=$password" "$base$action")
      [[ -n $next ]] || { echo "login refused for $email (wrong password?)" >&2; exit 1; }
    else
      next=$(redirect -X POST -d '' "$base$action")
    fi
  else
    next=$(redirect "$next")
  fi
done
[[ $next == "$base/callback"* ]] || { echo "the login did not come back to the client: $next" >&2; exit 1; }
code=$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$next")

form=(-d grant_type=authorization_code -d "code=$code" --data-urlencode "redirect_uri=$base/callback" -d "code_verifier=$verifier")
if [[ $client == rulegate-spa ]]; then
  response=$(curl -sS -X POST "$base/token" "${form[@]}" -d client_id=$client)
else
  response=$(curl -sS -X POST "$base/token" "${form[@]}" -u rulegate-backend:backend-secret)
fi

RESPONSE=$response python3 - <<'PY'
import base64, json, os
response = json.loads(os.environ["RESPONSE"])
print("token response fields:", ", ".join(response))
if "id_token" not in response:
    print(json.dumps(response, indent=2))
    raise SystemExit(1)
def part(segment):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
header, claims = (part(s) for s in response["id_token"].split(".")[:2])
print("id_token header:", json.dumps(header))
print("id_token claims:")
print(json.dumps(claims, indent=2))
PY
