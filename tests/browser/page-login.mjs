// Logs in through the demo page in headless Chromium, as a person would,
// and prints what the page showed after each login as one JSON object.
// The test that runs it (tests/tests/browser.rs) makes the assertions; this
// script only fails when the page cannot be driven at all.
//
//   node tests/browser/page-login.mjs --base http://127.0.0.1:10000 \
//     --email someone@example.org --password rulegate [--logins 2] \
//     [--screenshot FILE]
//
// The browser is Debian's Chromium (CHROMIUM, default its binary behind
// /usr/bin/chromium, whose wrapper would add flags such as remote
// extensions); Playwright never downloads one. Only 127.0.0.1 is reachable:
// Chromium resolves no host name, and any request the page makes elsewhere
// is refused and reported in `external_requests`.
//
// Output: {"logins": [LOGIN, ...], "external_requests": [...],
// "page_errors": [...], "console_errors": [...]}, where LOGIN has
// `outcome` (the Segment event the page saw for this login), `who`,
// `error` (the page's login error, if any), `user_slack` and `user_leads`
// (the page's counts for the user), `id_token` and `access_token`
// ({header, claims: [{name, value, added}]}) and `panel` (service -> the
// text of each entry, newest first).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const DEFAULT_CHROMIUM = '/usr/lib/chromium/chromium';
const STEP_TIMEOUT_MS = 15_000;
// Background deliveries arrive within milliseconds; the panel polls every
// second. It has settled once its records stop changing for this long.
const SETTLE_MS = 2_500;
const SETTLE_LIMIT_MS = 15_000;

const { values: options } = parseArgs({
  options: {
    base: { type: 'string' },
    email: { type: 'string' },
    password: { type: 'string' },
    logins: { type: 'string', default: '1' },
    screenshot: { type: 'string' },
  },
});
if (!options.base || !options.email || !options.password) {
  fail('usage: page-login.mjs --base URL --email EMAIL --password PASSWORD [--logins N] [--screenshot FILE]');
}
const base = new URL(options.base).origin;

const report = { logins: [], external_requests: [], page_errors: [], console_errors: [] };
const executablePath = process.env.CHROMIUM || DEFAULT_CHROMIUM;
if (!fs.existsSync(executablePath)) {
  fail(`${executablePath} is missing: run \`make system-packages\` (Debian's chromium)`);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--disable-background-networking'],
});
let page;
let failure = null;
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === '127.0.0.1') return route.continue();
    report.external_requests.push(url.href);
    return route.abort();
  });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('pageerror', (err) => report.page_errors.push(err.message));
  page.on('console', (message) => {
    if (message.type() === 'error') report.console_errors.push(message.text());
  });

  await page.goto(`${base}/`);
  for (let n = 0; n < Number(options.logins); n += 1) {
    report.logins.push(await logIn(page));
    if (n === 0 && options.screenshot) {
      fs.mkdirSync(path.dirname(options.screenshot), { recursive: true });
      await page.screenshot({ path: options.screenshot, fullPage: true });
    }
  }
} catch (err) {
  const shown = page ? await page.locator('body').innerText().catch(() => '') : '';
  failure = `${err.message}\n--- the page at ${page?.url()}:\n${shown}\n`
    + `--- so far:\n${JSON.stringify(report, null, 2)}`;
} finally {
  await browser.close();
}
if (failure) fail(failure);
process.stdout.write(`${JSON.stringify(report)}\n`);

// Clicks "Log in" on the demo page, goes through the provider's sign-in
// and consent pages, and reads the page once the panel has settled.
async function logIn(page) {
  const button = page.locator('#login-button:enabled');
  await button.waitFor();
  await Promise.all([page.waitForURL((url) => url.origin === base && url.pathname !== '/'), button.click()]);

  for (let step = 0; ; step += 1) {
    if (step > 6) throw new Error(`the login did not come back to the page: ${page.url()}`);
    await page.waitForLoadState('domcontentloaded');
    const here = new URL(page.url());
    if (here.pathname === '/') break;
    const before = page.url();
    if (await page.locator('#login-form').count()) {
      if (await page.locator('#error').count()) {
        throw new Error(`the provider refused the sign-in: ${await page.locator('#error').innerText()}`);
      }
      await page.fill('#login-form input[name=email]', options.email);
      await page.fill('#login-form input[name=password]', options.password);
      await Promise.all([page.waitForURL((url) => url.href !== before), page.click('#login-form button[type=submit]')]);
    } else if (await page.locator('#consent-form').count()) {
      await Promise.all([page.waitForURL((url) => url.href !== before), page.click('#consent-form button[type=submit]')]);
    } else {
      throw new Error(`an unexpected page on the way back: ${await page.title()}`);
    }
  }

  await page.locator('#result:not([hidden]), #login-error:not([hidden])').first().waitFor();
  const error = await page.locator('#login-error:not([hidden])').count()
    ? await page.locator('#login-error').innerText()
    : null;
  if (!error) {
    await page.locator('#outcome-event:not([data-outcome=""])').waitFor();
    await settle(page);
  }
  return readPage(page, error);
}

async function settle(page) {
  const started = Date.now();
  let last = '';
  let since = Date.now();
  while (Date.now() - started < SETTLE_LIMIT_MS) {
    const now = await page.locator('#services').innerText();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= SETTLE_MS) {
      return;
    }
    await page.waitForTimeout(250);
  }
}

async function readPage(page, error) {
  return page.evaluate((loginError) => {
    const token = (id) => ({
      header: document.querySelector(`#${id} .jwt-header`).textContent,
      claims: Array.from(document.querySelectorAll(`#${id} tbody tr`), (row) => ({
        name: row.dataset.claim,
        value: row.querySelector('td').textContent,
        added: row.classList.contains('added'),
      })),
    });
    const panel = {};
    for (const section of document.querySelectorAll('#services section')) {
      panel[section.dataset.service] = Array.from(
        section.querySelectorAll('li:not(.empty)'),
        (item) => ({ text: item.querySelector('.text').textContent, mine: item.classList.contains('mine') }),
      );
    }
    return {
      error: loginError,
      outcome: document.querySelector('#outcome-event').dataset.outcome,
      who: document.querySelector('#who').textContent,
      user_slack: Number(document.querySelector('#user-slack').textContent),
      user_leads: Number(document.querySelector('#user-leads').textContent),
      id_token: token('id-token'),
      access_token: token('access-token'),
      panel,
    };
  }, error);
}

function fail(message) {
  process.stderr.write(`page-login: ${message}\n`);
  process.exit(1);
}
