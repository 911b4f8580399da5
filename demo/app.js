// The Rulegate demo page: logs in as the public client `rulegate-spa`
// with the authorization code flow and PKCE, entirely through Envoy, then
// shows the tokens (claims that rules added highlighted) and, live, what
// the stand-ins for the outside services received.
//
// Everything it talks to is on its own origin: the provider's discovery
// document, authorization and token endpoints (through Envoy, where
// Rulegate acts on them) and /demo/received, a read-only view of the
// stand-ins' records. It uses only the browser's own APIs (WebCrypto for
// PKCE) and builds the page with textContent, never with markup taken
// from a token or a record.

'use strict';

const CLIENT_ID = 'rulegate-spa';
const REDIRECT_URI = `${window.location.origin}/`;
const SCOPE = 'openid email profile';
const PENDING_KEY = 'rulegate-demo-pending-login';
const POLL_MS = 1000;

// The panel's sections, in order: which records each shows and how.
const SERVICES = [
  { title: 'Slack', endpoints: ['slack'], render: (r) => text(r.body?.text) },
  { title: 'Segment', endpoints: ['segment'], render: segmentLine },
  { title: 'Keen', endpoints: ['keen'], render: keenLine, detail: true },
  { title: 'Zapier', endpoints: ['zapier'], render: zapierLine, detail: true },
  { title: 'Salesforce', endpoints: ['salesforce_lead', 'salesforce_token'], render: salesforceLine },
  { title: 'FullContact', endpoints: ['fullcontact'], render: (r) => `enrich ${text(r.body?.email)}` },
  { title: 'Alerts', endpoints: ['slack_alert'], render: (r) => text(r.body?.text) },
  { title: 'Webhooks', endpoints: ['webhook'], render: (r) => text(r.path), detail: true },
];

// What the page knows about the login it shows, if any.
const session = {
  user: null, // { sub, email, name }
  exchangedAfterMs: 0, // records older than this belong to earlier logins
};

let discovery = null;
let lastPanelKey = '';

document.addEventListener('DOMContentLoaded', () => {
  byId('login-button').addEventListener('click', () => startLogin().catch(showError('Login failed')));
  start().catch(showError('Login failed'));
  poll();
});

async function start() {
  discovery = await getJson('/.well-known/openid-configuration')
    .catch((err) => { throw new Error(`the provider's discovery document is unavailable (${err.message})`); });
  byId('login-button').disabled = false;
  byId('login-state').textContent = `Issuer ${discovery.issuer}, keys at ${discovery.jwks_uri}`;

  const params = new URLSearchParams(window.location.search);
  if (!params.has('code') && !params.has('error')) return;
  // The code is single-use: take it off the address bar at once.
  window.history.replaceState(null, '', '/');
  await finishLogin(params);
}

// ------------------------------------------------------------------ login

async function startLogin() {
  if (!discovery) throw new Error('the discovery document is not loaded yet');
  const verifier = randomText(32);
  const pending = { verifier, state: randomText(16), nonce: randomText(16) };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));

  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await s256(verifier),
    code_challenge_method: 'S256',
    // Always show the sign-in form, so that another user can log in.
    prompt: 'login',
  }).toString();
  window.location.assign(url.toString());
}

async function finishLogin(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || 'null');
  sessionStorage.removeItem(PENDING_KEY);
  if (params.has('error')) {
    throw new Error(`the provider answered ${params.get('error')}: ${params.get('error_description') || ''}`);
  }
  if (!pending || params.get('state') !== pending.state) {
    throw new Error('this answer does not belong to a login started here (state differs)');
  }

  byId('login-state').textContent = 'Exchanging the code at the token endpoint, through Envoy…';
  const exchangedAfterMs = Date.now();
  const response = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: REDIRECT_URI,
      client_id: CLIENT_ID,
      code_verifier: pending.verifier,
    }),
  });
  const tokens = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = tokens.error_description ? `: ${tokens.error_description}` : '';
    throw new Error(`the token endpoint answered ${response.status} ${tokens.error || ''}${detail}`);
  }

  const idToken = decodeJwt(tokens.id_token);
  if (!idToken || idToken.claims.nonce !== pending.nonce) {
    throw new Error('the id_token is missing or does not carry this login\'s nonce');
  }
  session.user = {
    sub: idToken.claims.sub,
    email: idToken.claims.email,
    name: idToken.claims.name,
  };
  session.exchangedAfterMs = exchangedAfterMs;

  byId('login-state').textContent = 'Logged in. Log in again, as the same user or another.';
  byId('login-button').textContent = 'Log in again';
  showUser();
  showToken('id-token', tokens.id_token);
  showToken('access-token', tokens.access_token);
  byId('result').hidden = false;
  lastPanelKey = '';
}

// ----------------------------------------------------------------- tokens

function showUser() {
  const { sub, email, name } = session.user;
  byId('who').textContent = name ? `${name} (${email})` : text(email);
  byId('who-detail').textContent = `sub ${sub}`;
}

function showToken(id, token) {
  const card = byId(id);
  const decoded = decodeJwt(token);
  const body = card.querySelector('tbody');
  body.replaceChildren();
  card.querySelector('.raw').textContent = token || '';
  if (!decoded) {
    card.querySelector('.jwt-header').textContent = token ? 'opaque (not a JWT)' : 'none';
    return;
  }
  const { alg, kid, typ } = decoded.header;
  card.querySelector('.jwt-header').textContent =
    `alg ${alg} · kid ${kid}${typ ? ` · typ ${typ}` : ''}`;

  for (const [name, value] of Object.entries(decoded.claims)) {
    const row = element('tr', { className: isAddedClaim(name) ? 'added' : '' });
    row.dataset.claim = name;
    row.append(element('th', { textContent: name }), claimCell(value));
    body.append(row);
  }
}

// A claim named by a URL is in the configured namespace: a rule added it.
function isAddedClaim(name) {
  return /^https?:\/\//.test(name);
}

function claimCell(value) {
  const cell = element('td', { className: 'value' });
  if (value !== null && typeof value === 'object') {
    cell.append(element('pre', { textContent: JSON.stringify(value, null, 2) }));
  } else {
    cell.textContent = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return cell;
}

// ------------------------------------------------------------------ panel

async function poll() {
  const live = byId('live');
  try {
    const { received } = await getJson('/demo/received');
    live.textContent = 'live';
    live.className = 'live on';
    showPanel(received);
    showOutcome(received);
  } catch (err) {
    live.textContent = 'offline';
    live.className = 'live off';
  }
  setTimeout(poll, POLL_MS);
}

function showPanel(records) {
  const key = `${records.length}|${session.user?.sub || ''}`;
  if (key === lastPanelKey) return;
  lastPanelKey = key;

  const sections = SERVICES.map((service) => {
    const mine = records.filter((r) => service.endpoints.includes(r.endpoint)).reverse();
    const section = element('section', { className: 'service' });
    section.dataset.service = service.endpoints[0];
    section.append(element('h3', { textContent: `${service.title} ` }));
    section.firstChild.append(element('span', { className: 'count', textContent: String(mine.length) }));
    const list = element('ul');
    for (const record of mine) list.append(recordItem(service, record));
    if (mine.length === 0) list.append(element('li', { className: 'empty', textContent: 'nothing yet' }));
    section.append(list);
    return section;
  });
  byId('services').replaceChildren(...sections);
}

function recordItem(service, record) {
  const item = element('li', { className: isAboutUser(record) ? 'mine' : '' });
  item.dataset.endpoint = record.endpoint;
  const ok = record.status >= 200 && record.status < 300;
  item.append(
    element('time', { textContent: new Date(record.at_ms).toLocaleTimeString('en-GB') }),
    element('span', { className: `status ${ok ? 'ok' : 'bad'}`, textContent: String(record.status || 'reset') }),
    element('span', { className: 'text', textContent: service.render(record) }),
  );
  if (!record.valid) {
    item.append(element('span', { className: 'problems', textContent: record.problems.join('; ') }));
  }
  if (service.detail && record.body) {
    item.append(element('pre', { textContent: JSON.stringify(record.body, null, 2) }));
  }
  return item;
}

// What this login did, from the records about its user.
function showOutcome(records) {
  if (!session.user) return;
  const { sub, email } = session.user;
  const about = records.filter(isAboutUser);
  const slack = about.filter((r) => r.endpoint === 'slack');
  const leads = about.filter((r) => r.endpoint === 'salesforce_lead' && r.status === 201
    && sameEmail(r.body?.Email, email));
  const thisLogin = records.filter((r) => r.endpoint === 'segment' && r.body?.userId === sub
    && r.at_ms >= session.exchangedAfterMs);
  const event = thisLogin.length ? thisLogin[thisLogin.length - 1].body.event : '';

  const outcome = byId('outcome-event');
  outcome.textContent = event ? `“${event}”` : 'waiting…';
  outcome.dataset.outcome = event || '';
  byId('user-slack').textContent = String(slack.length);
  byId('user-leads').textContent = String(leads.length);
}

function isAboutUser(record) {
  if (!session.user || !record.body) return false;
  const body = JSON.stringify(record.body).toLowerCase();
  const { sub, email } = session.user;
  return body.includes(sub.toLowerCase()) || (email && body.includes(email.toLowerCase()));
}

function segmentLine(record) {
  const body = record.body || {};
  const app = body.properties?.app ? ` · app ${body.properties.app}` : '';
  return `${text(body.event)} · userId ${text(body.userId)}${app}`;
}

function keenLine(record) {
  const collection = (record.path || '').split('/').pop();
  return `event in ${text(collection)} · userId ${text(record.body?.userId)}`;
}

function zapierLine(record) {
  const body = record.body || {};
  return `${text(body.name || body.email)} · app ${text(body.appName)}`;
}

function salesforceLine(record) {
  if (record.endpoint === 'salesforce_token') return 'OAuth token request';
  const lead = record.body || {};
  return `Lead ${text(lead.FirstName)} ${text(lead.LastName)} <${text(lead.Email)}> · `
    + `${text(lead.Company)} · source ${text(lead.LeadSource)}`;
}

// ---------------------------------------------------------------- helpers

function byId(id) {
  return document.getElementById(id);
}

function element(tag, properties = {}) {
  return Object.assign(document.createElement(tag), properties);
}

function text(value) {
  return value === undefined || value === null ? '' : String(value);
}

function sameEmail(a, b) {
  return typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();
}

// A handler that shows an error under the login button.
function showError(what) {
  return (err) => {
    const box = byId('login-error');
    box.textContent = `${what}: ${err.message}`;
    box.hidden = false;
    byId('login-state').textContent = '';
  };
}

async function getJson(path) {
  const response = await fetch(path, { cache: 'no-store' });
  if (!response.ok) throw new Error(`GET ${path} answered ${response.status}`);
  return response.json();
}

// The header and claims of a JWT, or null for anything else. Decoding is
// all the page needs: the app's back end is what verifies tokens.
function decodeJwt(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) return null;
  try {
    return { header: JSON.parse(fromBase64Url(parts[0])), claims: JSON.parse(fromBase64Url(parts[1])) };
  } catch {
    return null;
  }
}

function fromBase64Url(part) {
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

function toBase64Url(bytes) {
  const binary = Array.from(new Uint8Array(bytes), (b) => String.fromCharCode(b)).join('');
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText(byteCount) {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(byteCount)));
}

// The PKCE S256 challenge of a verifier.
async function s256(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return toBase64Url(digest);
}
