// A command-line OpenID client for Rulegate's end-to-end tests. It uses the
// standard `openid-client` library exactly as an app would, so a test can
// prove that the tokens Rulegate hands out (re-signed or not) are accepted
// by an ordinary client: discovery, the token exchange, and full id_token
// validation including the signature against the JWKS that discovery names.
//
// Usage
//   node client.mjs code --issuer URL --client-id ID [--client-secret S]
//        --callback-url URL --code-verifier V --state S [--nonce N]
//        [--id-token-alg ALG]
//   node client.mjs refresh --issuer URL --client-id ID [--client-secret S]
//        --refresh-token RT [--id-token-alg ALG]
//
// --callback-url is the whole URL the authorization server redirected to
// (redirect URI + ?code=...&state=...&iss=...); the redirect_uri sent to the
// token endpoint is that URL without its query. With --client-secret the
// client authenticates with client_secret_basic, without it with `none`.
// --id-token-alg pins the expected id_token `alg`; by default any alg that
// discovery lists in id_token_signing_alg_values_supported is accepted.
//
// Output: one JSON line on stdout,
//   {"id_token":...,"access_token":...,"refresh_token":...,"claims":{...}}
// where claims are the validated id_token claims. Any failure: a message on
// stderr and exit code 1.
//
// Signature checks: openid-client 6 does not verify the id_token signature
// of a token endpoint response by default (it relies on TLS for that). This
// CLI turns it on with `enableNonRepudiationChecks`, which makes both the
// code and the refresh paths verify the JWS against the issuer's jwks_uri.
// Plain http is allowed only for loopback issuers (127.0.0.0/8, localhost,
// [::1]); nothing else is ever contacted but the issuer's own endpoints.

import * as client from 'openid-client';

const USAGE = `usage:
  node client.mjs code --issuer URL --client-id ID [--client-secret S] --callback-url URL --code-verifier V --state S [--nonce N] [--id-token-alg ALG]
  node client.mjs refresh --issuer URL --client-id ID [--client-secret S] --refresh-token RT [--id-token-alg ALG]`;

const OPTIONS = {
  code: {
    required: ['issuer', 'client-id', 'callback-url', 'code-verifier', 'state'],
    optional: ['client-secret', 'nonce', 'id-token-alg'],
  },
  refresh: {
    required: ['issuer', 'client-id', 'refresh-token'],
    optional: ['client-secret', 'id-token-alg'],
  },
};

class UsageError extends Error {}

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const spec = OPTIONS[command];
  if (!spec) throw new UsageError(`unknown command ${JSON.stringify(command ?? '')}`);
  const known = new Set([...spec.required, ...spec.optional]);
  const args = {};
  for (let i = 0; i < rest.length; i += 1) {
    const flag = rest[i];
    if (!flag.startsWith('--')) throw new UsageError(`unexpected argument ${flag}`);
    let name = flag.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    } else {
      i += 1;
      if (i >= rest.length) throw new UsageError(`${flag} needs a value`);
      value = rest[i];
    }
    if (!known.has(name)) throw new UsageError(`unknown option --${name} for ${command}`);
    args[name] = value;
  }
  for (const name of spec.required) {
    if (!args[name]) throw new UsageError(`--${name} is required for ${command}`);
  }
  return { command, args };
}

function isLoopback(url) {
  const host = url.hostname;
  return host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

async function configure(args) {
  let issuer;
  try {
    issuer = new URL(args.issuer);
  } catch {
    throw new UsageError(`--issuer is not a URL: ${args.issuer}`);
  }
  const execute = [client.enableNonRepudiationChecks];
  if (issuer.protocol === 'http:') {
    if (!isLoopback(issuer)) throw new Error(`plain http is allowed only for loopback issuers, not ${issuer.host}`);
    execute.unshift(client.allowInsecureRequests);
  } else if (issuer.protocol !== 'https:') {
    throw new UsageError(`--issuer must be http or https: ${args.issuer}`);
  }

  const metadata = {};
  if (args['id-token-alg']) metadata.id_token_signed_response_alg = args['id-token-alg'];
  const auth = args['client-secret'] !== undefined
    ? client.ClientSecretBasic(args['client-secret'])
    : client.None();

  return client.discovery(issuer, args['client-id'], metadata, auth, {
    execute,
    timeout: 15,
  });
}

function output(tokens) {
  const line = {
    id_token: tokens.id_token ?? null,
    access_token: tokens.access_token ?? null,
    refresh_token: tokens.refresh_token ?? null,
    claims: tokens.claims() ?? null,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function main() {
  const { command, args } = parseArgs(process.argv.slice(2));
  const config = await configure(args);

  let tokens;
  if (command === 'code') {
    let callbackUrl;
    try {
      callbackUrl = new URL(args['callback-url']);
    } catch {
      throw new UsageError(`--callback-url is not a URL: ${args['callback-url']}`);
    }
    tokens = await client.authorizationCodeGrant(config, callbackUrl, {
      pkceCodeVerifier: args['code-verifier'],
      expectedState: args.state,
      expectedNonce: args.nonce,
      idTokenExpected: true,
    });
  } else {
    tokens = await client.refreshTokenGrant(config, args['refresh-token']);
    if (!tokens.id_token) throw new Error('the refresh response carries no id_token');
  }
  output(tokens);
}

function describe(err) {
  let text = `${err?.name ?? 'Error'}: ${err?.message ?? String(err)}`;
  if (err?.code) text += ` [${err.code}]`;
  if (err?.error) text += ` (${err.error}${err.error_description ? `: ${err.error_description}` : ''})`;
  // Walk the cause chain: the library's top error is generic, the cause
  // says what failed (e.g. "JWT signature verification failed").
  let cause = err?.cause;
  for (let depth = 0; cause && depth < 4; depth += 1) {
    if (cause instanceof Error) {
      text += `\ncaused by ${cause.name}: ${cause.message}${cause.code ? ` [${cause.code}]` : ''}`;
      cause = cause.cause;
    } else {
      let details;
      try {
        details = JSON.stringify(cause);
      } catch {
        details = String(cause);
      }
      // Enough for "expected X, got Y"; signature buffers are cut short.
      text += `\ndetails: ${details.length > 600 ? `${details.slice(0, 600)}...` : details}`;
      break;
    }
  }
  return text;
}

main().catch((err) => {
  process.stderr.write(`client.mjs: ${describe(err)}\n`);
  if (err instanceof UsageError) process.stderr.write(`${USAGE}\n`);
  process.exit(1);
});
