// The demo/test OpenID provider that Rulegate sits in front of: a thin
// configuration of the certified `oidc-provider` package (fixed clients,
// file-backed and on-the-fly accounts, persistent signing keys) plus small
// plain-HTML login and consent pages a test script can drive with a cookie
// jar. It talks to no host but its own clients.
//
// Run:  ISSUER=http://127.0.0.1:10000 PORT=3000 node provider/server.mjs
//
// Environment
//   ISSUER               issuer URL, normally Envoy's listener (default
//                        http://127.0.0.1:PORT). Must have no path. Every URL
//                        the provider prints (discovery, redirects) is under
//                        it, however the request reached the provider.
//   PORT                 port to listen on, on 127.0.0.1 only (default 3000)
//   KEYS_FILE            private JWKS file: loaded when present, else created
//                        (keys survive restarts); unset = keys in memory only
//   DEMO_PASSWORD        password of every email not in accounts.json
//                        (default "rulegate")
//   EXTRA_REDIRECT_URIS  comma-separated redirect URIs added to both clients
//   ACCOUNTS_FILE        fixed users (default: accounts.json beside this file)
//   OPAQUE_ACCESS_TOKENS 1 = opaque access tokens, as the provider issued
//                        before it had JWT ones (see "Access tokens");
//                        unset or 0 = JWT access tokens
//   BACKEND_ID_TOKEN_ALG the algorithm of rulegate-backend's id_tokens
//                        (default ES256; the benchmark uses RS256, what
//                        most providers sign with)
//
// Endpoints (all under ISSUER)
//   /.well-known/openid-configuration   discovery
//   /auth                               authorization
//   /token                              token
//   /jwks                               public keys (RS256 and ES256)
//   /me                                 userinfo (takes opaque access
//                                       tokens only, see "Access tokens")
//   /session/end                        logout
//   /interaction/:uid                   login or consent page (GET)
//   /interaction/:uid/login             login form target (POST)
//   /interaction/:uid/confirm           consent form target (POST)
//   /interaction/:uid/abort             cancel (POST): access_denied to the client
//   /callback                           echoes the authorization response as JSON
//                                       (the clients' redirect URI lands here)
//
// Clients
//   rulegate-spa      public (token_endpoint_auth_method none), PKCE S256
//                     required; authorization_code, refresh_token
//   rulegate-backend  client_secret_basic, secret "backend-secret";
//                     authorization_code, refresh_token, client_credentials;
//                     id_token signed ES256 (the default is RS256), or
//                     BACKEND_ID_TOKEN_ALG
//   Both: redirect URI ISSUER/callback (+ EXTRA_REDIRECT_URIS); a refresh
//   token on every code exchange; the refresh grant returns a new id_token.
//   rulegate-spa also has ISSUER/ (the demo page, served through Envoy at
//   the issuer's root, is that single-page app).
//
// Access tokens: by default every access token (authorization_code,
// refresh_token and client_credentials grants, both clients) is a JWT for
// one resource server, the resource indicator ISSUER/api, which is used when
// the client sends no `resource` parameter (sending resource=ISSUER/api is
// the same; any other value is invalid_target). Header: alg RS256, typ
// at+jwt, kid of the provider's RSA key in /jwks (whatever the client's
// id_token alg). Claims:
//   iss        ISSUER
//   aud        ISSUER/api (a string)
//   sub        the user's sub; the client_id for client_credentials
//   client_id  the client
//   scope      the granted scopes, as in the token response ("openid email
//              profile" for the login above); for client_credentials only
//              the requested ones, absent when the request has no `scope`
//   iat, exp   lifetime 3600 s (client_credentials: 600 s)
//   jti        unique token id
// ISSUER/api accepts the scopes openid, offline_access, email and profile.
// The consent page therefore also lists "ISSUER/api: openid email profile";
// its form and the whole login flow are unchanged. oidc-provider accepts
// only access tokens without an audience at /me, so these JWTs do not work
// there. OPAQUE_ACCESS_TOKENS=1 defaults no resource: access tokens are
// opaque and audience-less again, usable at /me, and the consent page
// lists the OpenID scopes only (a client that still sends
// resource=ISSUER/api gets an opaque token for it). id_tokens, refresh
// tokens and the token response fields are the same in both modes.
//
// Accounts: the users in accounts.json sign in with their own password only.
// Any other well-formed email signs in with DEMO_PASSWORD and becomes an
// account on the spot: name from the local part ("new.user" -> "New User"),
// email_verified true unless the local part starts with "unverified".
// sub = "user-" + first 16 hex chars of sha256(lowercased email), for every
// account (accounts.json may set "sub" to override it), so it is stable
// across restarts. Scopes: openid (sub), email (email, email_verified),
// profile (name). These claims are in the id_token itself, not only userinfo.
//
// Logging in from a script (cookie jar on; every response below is a
// redirect unless a page is named; follow Location yourself or let the HTTP
// client do it, they are all absolute URLs under ISSUER except where noted):
//   1. GET ISSUER/auth?response_type=code&client_id=rulegate-spa
//          &redirect_uri=ISSUER/callback&scope=openid%20email%20profile
//          &state=S&nonce=N&code_challenge=BASE64URL(SHA256(V))
//          &code_challenge_method=S256
//      -> 303 to ISSUER/interaction/UID
//   2. GET ISSUER/interaction/UID -> 200 login page. Its first form is
//      <form method="post" action="/interaction/UID/login"> (path only)
//      with fields `email` and `password`.
//   3. POST ISSUER/interaction/UID/login, application/x-www-form-urlencoded,
//      email=...&password=...
//      -> 303 to ISSUER/auth/UID on success.
//      A wrong password or bad email answers 200 with the login page again,
//      carrying <p class="error" id="error">; nothing is redirected.
//   4. GET ISSUER/auth/UID -> 303 to ISSUER/interaction/UID2 (consent)
//   5. GET ISSUER/interaction/UID2 -> 200 consent page. Its first form is
//      <form method="post" action="/interaction/UID2/confirm">, no fields
//      needed (an empty body is fine).
//   6. POST ISSUER/interaction/UID2/confirm -> 303 to ISSUER/auth/UID2
//   7. GET ISSUER/auth/UID2 -> 303 to ISSUER/callback?code=C&state=S&iss=ISSUER
//      Stop here and take `code` from the Location (or follow it: /callback
//      answers 200 with the parameters as JSON).
//   8. POST ISSUER/token, form: grant_type=authorization_code&code=C
//          &redirect_uri=ISSUER/callback&code_verifier=V
//      plus client_id=rulegate-spa (public), or HTTP Basic
//      rulegate-backend:backend-secret (confidential).
// A session that is already signed in, or already consented, skips steps
// 2-3 or 4-6: a robust script loops "follow Location; on an /interaction page
// post the first form (login fields if its action ends in /login)" until the
// Location starts with the redirect URI. Cookies are not `secure` over http.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { errors, Provider } from 'oidc-provider';

const here = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------- settings

function fail(message) {
  process.stderr.write(`provider: ${message}\n`);
  process.exit(1);
}

const PORT = Number(process.env.PORT || 3000);
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) fail(`bad PORT ${process.env.PORT}`);

const ISSUER = (process.env.ISSUER || `http://127.0.0.1:${PORT}`).replace(/\/+$/, '');
let issuerUrl;
try {
  issuerUrl = new URL(ISSUER);
} catch {
  fail(`ISSUER is not a URL: ${ISSUER}`);
}
if (!['http:', 'https:'].includes(issuerUrl.protocol) || issuerUrl.pathname !== '/'
    || issuerUrl.search || issuerUrl.hash || issuerUrl.username) {
  fail(`ISSUER must be an http(s) origin with no path: ${ISSUER}`);
}

const DEMO_PASSWORD = process.env.DEMO_PASSWORD || 'rulegate';
const ACCOUNTS_FILE = process.env.ACCOUNTS_FILE || path.join(here, 'accounts.json');
const EXTRA_REDIRECT_URIS = (process.env.EXTRA_REDIRECT_URIS || '')
  .split(',').map((s) => s.trim()).filter(Boolean);

const OPAQUE_FLAG = process.env.OPAQUE_ACCESS_TOKENS ?? '';
if (!['', '0', '1'].includes(OPAQUE_FLAG)) {
  fail(`OPAQUE_ACCESS_TOKENS must be 1, 0 or unset, not ${JSON.stringify(OPAQUE_FLAG)}`);
}
const OPAQUE_ACCESS_TOKENS = OPAQUE_FLAG === '1';

// The one resource server (RFC 8707 resource indicator) access tokens are
// issued for. The scopes it accepts are all of the provider's OpenID scopes,
// so an access token carries the same `scope` the token response reports.
const API_RESOURCE = `${ISSUER}/api`;
const API_SCOPES = 'openid offline_access email profile';

// ------------------------------------------------------------------ keys

// RFC 7638 thumbprint, used to give each generated key a recognisable kid.
function thumbprint(jwk) {
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function generateKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rs256-${thumbprint(rsa).slice(0, 12)}`, alg: 'RS256', use: 'sig' },
      { ...ec, kid: `es256-${thumbprint(ec).slice(0, 12)}`, alg: 'ES256', use: 'sig' },
    ],
  };
}

function checkKeys(jwks, where) {
  const keys = Array.isArray(jwks?.keys) ? jwks.keys : [];
  const rsa = keys.find((k) => k.kty === 'RSA' && k.d);
  const ec = keys.find((k) => k.kty === 'EC' && k.crv === 'P-256' && k.d);
  if (!rsa || !ec || keys.some((k) => typeof k.kid !== 'string' || !k.kid)) {
    fail(`${where} must hold a private RSA key and a private P-256 key, each with a kid`);
  }
  return jwks;
}

function loadOrCreateKeys() {
  const file = process.env.KEYS_FILE;
  if (!file) return generateKeys();
  if (fs.existsSync(file)) {
    let parsed;
    try {
      parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      fail(`cannot read KEYS_FILE ${file}: ${err.message}`);
    }
    return checkKeys(parsed, `KEYS_FILE ${file}`);
  }
  const jwks = generateKeys();
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  return jwks;
}

// -------------------------------------------------------------- accounts

function defaultSub(email) {
  return `user-${crypto.createHash('sha256').update(email).digest('hex').slice(0, 16)}`;
}

function normaliseEmail(raw) {
  const email = String(raw ?? '').trim().toLowerCase();
  const at = email.indexOf('@');
  if (at < 1 || at !== email.lastIndexOf('@') || at === email.length - 1
      || /\s/.test(email) || email.length > 254) {
    return undefined;
  }
  return email;
}

// "new.user" -> "New User"; separators are . _ - +
function nameFromLocalPart(local) {
  const words = local.split(/[._+-]+/).filter(Boolean);
  if (words.length === 0) return local;
  return words.map((w) => w[0].toUpperCase() + w.slice(1)).join(' ');
}

function sameSecret(a, b) {
  const ha = crypto.createHash('sha256').update(String(a)).digest();
  const hb = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(ha, hb);
}

const fixedByEmail = new Map();
const accountsBySub = new Map();

function loadAccounts() {
  let parsed;
  try {
    parsed = JSON.parse(fs.readFileSync(ACCOUNTS_FILE, 'utf8'));
  } catch (err) {
    fail(`cannot read accounts file ${ACCOUNTS_FILE}: ${err.message}`);
  }
  for (const entry of parsed.accounts ?? []) {
    const email = normaliseEmail(entry.email);
    if (!email || typeof entry.password !== 'string') {
      fail(`accounts file ${ACCOUNTS_FILE}: every account needs an email and a password`);
    }
    const account = {
      sub: entry.sub || defaultSub(email),
      email,
      email_verified: entry.email_verified === true,
      ...(typeof entry.name === 'string' ? { name: entry.name } : {}),
      password: entry.password,
    };
    fixedByEmail.set(email, account);
    accountsBySub.set(account.sub, account);
  }
}

// Returns the account for these credentials, or undefined.
function authenticate(rawEmail, password) {
  const email = normaliseEmail(rawEmail);
  if (!email || typeof password !== 'string') return undefined;
  const fixed = fixedByEmail.get(email);
  if (fixed) return sameSecret(password, fixed.password) ? fixed : undefined;
  if (!sameSecret(password, DEMO_PASSWORD)) return undefined;
  const sub = defaultSub(email);
  let account = accountsBySub.get(sub);
  if (!account) {
    const local = email.slice(0, email.indexOf('@'));
    account = {
      sub,
      email,
      email_verified: !local.startsWith('unverified'),
      name: nameFromLocalPart(local),
    };
    accountsBySub.set(sub, account);
  }
  return account;
}

async function findAccount(_ctx, sub) {
  const account = accountsBySub.get(sub);
  if (!account) return undefined;
  return {
    accountId: sub,
    // The provider keeps only the claims that the granted scopes allow.
    async claims() {
      const claims = { sub, email: account.email, email_verified: account.email_verified };
      if (account.name !== undefined) claims.name = account.name;
      return claims;
    },
  };
}

// ------------------------------------------------------------------ pages

function esc(value) {
  return String(value ?? '')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:26em;margin:3em auto;padding:0 1em}
label{display:block;margin:.8em 0}input{display:block;width:100%;padding:.3em}
button{margin-top:1em;padding:.4em 1.2em}.error{color:#b00020}</style>
</head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function loginPage(uid, clientId, { email = '', error } = {}) {
  return page('Sign in', `<p>to continue to <strong>${esc(clientId)}</strong></p>
${error ? `<p class="error" id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" id="login-form">
<label>Email <input type="email" name="email" value="${esc(email)}" required autofocus></label>
<label>Password <input type="password" name="password" required></label>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort" id="abort-form">
<button type="submit">Cancel</button>
</form>`);
}

function consentPage(uid, clientId, details) {
  const scopes = details.missingOIDCScope ?? [];
  const claims = details.missingOIDCClaims ?? [];
  const resources = Object.entries(details.missingResourceScopes ?? {});
  const items = [
    ...scopes.map((s) => `<li>scope <code>${esc(s)}</code></li>`),
    ...claims.map((c) => `<li>claim <code>${esc(c)}</code></li>`),
    ...resources.map(([r, s]) => `<li><code>${esc(r)}</code>: ${esc(s.join(' '))}</li>`),
  ];
  return page('Allow access', `<p><strong>${esc(clientId)}</strong> asks for:</p>
<ul>${items.join('') || '<li>nothing new</li>'}</ul>
<form method="post" action="/interaction/${esc(uid)}/confirm" id="consent-form">
<button type="submit">Allow</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort" id="abort-form">
<button type="submit">Deny</button>
</form>`);
}

// ------------------------------------------------------------- provider

loadAccounts();
const jwks = loadOrCreateKeys();
const redirectUris = [`${ISSUER}/callback`, ...EXTRA_REDIRECT_URIS];

const configuration = {
  clients: [
    {
      client_id: 'rulegate-spa',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [...redirectUris, `${ISSUER}/`],
    },
    {
      client_id: 'rulegate-backend',
      client_secret: 'backend-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: redirectUris,
      id_token_signed_response_alg: process.env.BACKEND_ID_TOKEN_ALG || 'ES256',
    },
  ],
  clientDefaults: { id_token_signed_response_alg: 'RS256' },
  responseTypes: ['code'],
  jwks,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Put the scope-granted user claims into the id_token even though an
  // access token for userinfo is issued next to it.
  conformIdTokenClaims: false,
  // A refresh token on every code exchange, without needing offline_access,
  // and not tied to the browser session (tests sign in many users in turn).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  pkce: { required: (_ctx, client) => client.clientAuthMethod === 'none' },
  routes: {
    authorization: '/auth',
    token: '/token',
    jwks: '/jwks',
    userinfo: '/me',
    end_session: '/session/end',
  },
  interactions: {
    url: async (_ctx, interaction) => `${ISSUER}/interaction/${interaction.uid}`,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Access tokens are for API_RESOURCE unless the client names a resource
    // itself (nothing else is accepted). useGrantedResource makes the token
    // endpoint keep that audience even when `openid` is among the scopes
    // (the package would otherwise issue a /me-only opaque token then).
    // With OPAQUE_ACCESS_TOKENS=1 nothing is defaulted, so code, refresh and
    // client_credentials tokens are opaque and have no audience, as before.
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => {
        if (oneOf) return oneOf.includes(API_RESOURCE) ? API_RESOURCE : oneOf;
        return OPAQUE_ACCESS_TOKENS ? undefined : API_RESOURCE;
      },
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== API_RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: API_SCOPES,
          accessTokenFormat: OPAQUE_ACCESS_TOKENS ? 'opaque' : 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out', `${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>
<button type="submit" form="op.logoutForm">Stay signed in</button>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Signed out', '<p>You are signed out.</p>');
      },
    },
  },
  findAccount,
  cookies: {
    // Fresh per start: sessions live in memory and die with the process anyway.
    keys: [crypto.randomBytes(32).toString('base64url')],
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  clientBasedCORS: (_ctx, origin, client) => client.redirectUris
    .some((uri) => URL.parse(uri)?.origin === origin),
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Something went wrong', Object.entries(out)
      .map(([k, v]) => `<p><strong>${esc(k)}</strong>: ${esc(v)}</p>`).join('\n'));
  },
  // The static clients name no remote jwks_uri, request_uri or sector
  // identifier, so nothing should ever be fetched; refuse if it ever is.
  fetch: async (url) => {
    throw new Error(`outbound requests are disabled in the demo provider (${url})`);
  },
};

const provider = new Provider(ISSUER, configuration);
// Trust X-Forwarded-Proto/Host; they are pinned to the issuer below.
provider.proxy = true;

// One short line per request on stderr; the path only, never the query
// (it can carry codes) nor bodies (they carry passwords and secrets).
provider.use(async (ctx, next) => {
  const started = process.hrtime.bigint();
  try {
    await next();
  } finally {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    process.stderr.write(`${ctx.method} ${ctx.path} ${ctx.status} ${ms.toFixed(1)}ms\n`);
  }
});

// Every URL the provider builds (discovery endpoints, redirects) comes from
// the request's origin; pin that to the issuer, so it is the same whether a
// request came through Envoy (which keeps the Host header) or straight here.
provider.use(async (ctx, next) => {
  ctx.req.headers['x-forwarded-host'] = issuerUrl.host;
  ctx.req.headers['x-forwarded-proto'] = issuerUrl.protocol.slice(0, -1);
  await next();
});

async function readForm(ctx) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > 16 * 1024) ctx.throw(413, 'form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function noStore(ctx) {
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Pragma', 'no-cache');
}

function finish(ctx, returnTo) {
  ctx.status = 303;
  ctx.redirect(returnTo);
}

const interactionRoute = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/;

provider.use(async (ctx, next) => {
  if (ctx.path === '/callback' && ctx.method === 'GET') {
    noStore(ctx);
    ctx.body = Object.fromEntries(new URLSearchParams(ctx.querystring));
    return undefined;
  }

  const match = interactionRoute.exec(ctx.path);
  if (!match) return next();
  const [, uid, action] = match;
  if ((action && ctx.method !== 'POST') || (!action && ctx.method !== 'GET')) {
    ctx.status = 405;
    ctx.body = 'method not allowed';
    return undefined;
  }
  noStore(ctx);

  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('Sign-in expired', `<p>${esc(err.message)}. Start again from the application.</p>`);
    return undefined;
  }
  if (details.uid !== uid) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('Sign-in mismatch', '<p>This page does not belong to the current sign-in.</p>');
    return undefined;
  }
  const { prompt, params } = details;
  const clientId = params.client_id;

  if (!action) {
    ctx.type = 'html';
    if (prompt.name === 'login') {
      ctx.body = loginPage(uid, clientId);
    } else if (prompt.name === 'consent') {
      ctx.body = consentPage(uid, clientId, prompt.details);
    } else {
      ctx.status = 400;
      ctx.body = page('Unsupported prompt', `<p>${esc(prompt.name)}</p>`);
    }
    return undefined;
  }

  if (action === 'abort') {
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return finish(ctx, returnTo);
  }

  if (action === 'login') {
    if (prompt.name !== 'login') ctx.throw(400, 'this sign-in is not waiting for a login');
    const form = await readForm(ctx);
    const account = authenticate(form.get('email'), form.get('password'));
    if (!account) {
      // 200 with the form again: a script tells failure from success by the
      // missing 303.
      ctx.type = 'html';
      ctx.body = loginPage(uid, clientId, {
        email: form.get('email') ?? '',
        error: 'Wrong email or password.',
      });
      return undefined;
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
      login: { accountId: account.sub, amr: ['pwd'] },
    }, { mergeWithLastSubmission: false });
    return finish(ctx, returnTo);
  }

  // confirm: grant what the consent prompt says is missing.
  if (prompt.name !== 'consent') ctx.throw(400, 'this sign-in is not waiting for consent');
  await readForm(ctx);
  const { accountId } = details.session;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, { consent }, {
    mergeWithLastSubmission: true,
  });
  return finish(ctx, returnTo);
});

const server = provider.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`provider listening on http://127.0.0.1:${PORT} issuer=${ISSUER}\n`);
});
server.on('error', (err) => fail(err.message));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
