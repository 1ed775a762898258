// Browser end-to-end test of the agent console, in a real Chromium driven by playwright-core.
//
// Needs a running hub and an agent account:
//   HUB_URL=http://127.0.0.1:18080 AGENT_USER=alice AGENT_PASS=... npm test
// The hub must hold the customer 王小明 (VIP, phone +86 138 0013 8000) with a document record
// whose expiry date is in the past, so that the screen-pop shows a document_expired alert.
// Optional: CHROMIUM=/path/to/chromium (default /usr/bin/chromium).
//
// It never passes without checking: a missing HUB_URL, account or Chromium is a failure that
// says what to set or install. Screenshots go to tests/e2e/artifacts/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HUB_URL = (process.env.HUB_URL || '').replace(/\/+$/, '');
const AGENT_USER = process.env.AGENT_USER || '';
const AGENT_PASS = process.env.AGENT_PASS || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');

const SEARCH_NUMBER = '13800138000';
const CUSTOMER_NAME = '王小明';

// Known header strings of each catalogue (web-agent/i18n.js).
const HEADER_STRINGS = {
  'zh-CN': { title: '坐席工作台', logout: '退出登录' },
  'zh-TW': { title: '客服工作台', logout: '登出' },
  en: { title: 'Agent console', logout: 'Sign out' },
};

function verified(what) {
  console.log(`verified: ${what}`);
}

test('agent console in a real browser', { timeout: 240_000 }, async (t) => {
  assert.ok(HUB_URL, 'HUB_URL is not set. Start the hub and run e.g. '
    + 'HUB_URL=http://127.0.0.1:18080 AGENT_USER=alice AGENT_PASS=secret npm test');
  assert.ok(AGENT_USER && AGENT_PASS, 'AGENT_USER and AGENT_PASS must name an agent account on the hub '
    + '(create one with: contact-hub user add NAME --role agent, password on stdin)');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}. Install it with `
    + '"apt-get update && apt-get install -y chromium", or set CHROMIUM=/path/to/chromium');

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'contact-hub-e2e-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    locale: 'en-US', // navigator.languages = ["en-US"]: the console starts in English
    timezoneId: 'Asia/Shanghai',
  });
  t.after(async () => {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  });

  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15_000);

  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack || e)));
  page.on('dialog', (d) => { pageErrors.push(`unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });

  // Every JSON frame the server sends on the agent socket, in order.
  const frames = [];
  page.on('websocket', (ws) => {
    if (!ws.url().endsWith('/api/v1/agent/ws')) return;
    ws.on('framereceived', (f) => {
      try {
        frames.push(JSON.parse(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8')));
      } catch { /* not JSON: ignore */ }
    });
  });

  async function waitForFrame(fromIndex, pred, what) {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const hit = frames.slice(fromIndex).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) {
        assert.fail(`no ${what} frame from the server; frames seen: ${JSON.stringify(frames.slice(fromIndex))}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const text = (sel) => page.locator(sel).first().innerText();
  let displayName = '';

  // Steps run in order and share the page; after a failure the rest are skipped (the test fails).
  let broken = false;
  const step = (name, fn) => t.test(name, { skip: broken ? 'an earlier step failed' : false }, async () => {
    try {
      await fn();
    } catch (e) {
      broken = true;
      const shot = path.join(ARTIFACTS, 'failure.png');
      await page.screenshot({ path: shot }).catch(() => {});
      console.log(`step failed; screenshot in ${shot}`);
      throw e;
    }
  });

  await step('the login page shows', async () => {
    const res = await page.goto(HUB_URL + '/').catch((e) => {
      assert.fail(`cannot open ${HUB_URL}/ (is the hub running?): ${e.message}`);
    });
    assert.equal(res.status(), 200, `GET / answered ${res.status()}`);
    await page.locator('#login-view').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#console-view').isVisible(), false, 'console must not show before login');
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.equal(await text('#login-heading'), 'Sign in');
    assert.ok(await page.locator('#login-username').isVisible());
    assert.ok(await page.locator('#login-password').isVisible());
    assert.ok(await page.locator('#login-lang').isVisible(), 'language picker on the login page');
    await page.screenshot({ path: path.join(ARTIFACTS, 'login.png') });
    verified('login page with username, password and language picker (screenshot login.png)');
  });

  await step('a wrong password shows the error', async () => {
    await page.fill('#login-username', AGENT_USER);
    await page.fill('#login-password', AGENT_PASS + '-wrong');
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/login')),
      page.click('#login-submit'),
    ]);
    assert.equal(res.status(), 401, 'wrong password must be answered 401');
    const body = await res.json();
    assert.equal(body && body.error && body.error.code, 'invalid_credentials');
    await page.locator('#login-error').waitFor({ state: 'visible' });
    assert.equal((await text('#login-error')).trim(), 'Incorrect username or password.');
    assert.equal(await page.locator('#console-view').isVisible(), false);
    verified('401 invalid_credentials shows "Incorrect username or password."');
  });

  await step('log in', async () => {
    await page.fill('#login-username', AGENT_USER);
    await page.fill('#login-password', AGENT_PASS);
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/login')),
      page.click('#login-submit'),
    ]);
    assert.equal(res.status(), 200, `login answered ${res.status()}: ${await res.text()}`);
    const body = await res.json();
    assert.ok(body.user, 'login response carries the user');
    displayName = body.user.display_name || body.user.username;
    const cookies = await context.cookies(HUB_URL);
    const session = cookies.find((c) => c.name === 'hub_session');
    assert.ok(session, 'login sets the hub_session cookie');
    assert.ok(session.httpOnly, 'hub_session cookie is HttpOnly');
    await page.locator('#console-view').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#login-view').isVisible(), false);
    verified(`logged in as ${AGENT_USER}; HttpOnly hub_session cookie set`);
  });

  await step("the console shows the user's display name", async () => {
    await page.waitForFunction((n) => document.getElementById('user-name').textContent === n, displayName);
    assert.equal(await text('#user-name'), displayName);
    await page.locator('#conn-indicator[data-conn="connected"]').waitFor();
    const hello = await waitForFrame(0, (f) => f.type === 'hello', 'hello');
    assert.ok(hello.state && typeof hello.state.state === 'string', 'hello carries the agent state');
    verified(`header shows "${displayName}"; agent socket connected (hello state ${hello.state.state})`);
  });

  await step('switch language: zh-CN, zh-TW, en', async () => {
    for (const lang of ['zh-CN', 'zh-TW', 'en']) {
      await page.selectOption('#header-lang', lang);
      await page.waitForFunction((l) => document.documentElement.lang === l, lang);
      const want = HEADER_STRINGS[lang];
      assert.equal(await text('#console-title'), want.title, `${lang} console title`);
      assert.equal((await text('#logout-btn')).trim(), want.logout, `${lang} logout button`);
      assert.equal(await page.title(), `${want.title} · Contact Hub`, `${lang} document title`);
      assert.equal(await page.evaluate(() => localStorage.getItem('contact-hub.lang')), lang, 'choice kept in localStorage');
      if (lang === 'zh-CN') await page.screenshot({ path: path.join(ARTIFACTS, 'console-zh-CN.png') });
      verified(`${lang}: <html lang=${lang}>, header "${want.title}" / "${want.logout}"`);
    }
  });

  await step("set state Available; the selector follows the server's agent_state", async () => {
    const sel = page.locator('#state-select');
    await page.locator('#state-select:not([disabled])').waitFor();
    // Go through Not ready first so the change to Available is a real change even when the
    // server still has this agent Available from an earlier run.
    // Wait for the answer to this request: the hub may send other agent_state frames first
    // (after connecting, its own not_ready "login").
    let from = frames.length;
    await sel.selectOption('not_ready:break');
    const nr = await waitForFrame(from, (f) => f.type === 'error'
      || (f.type === 'agent_state' && f.state.state === 'not_ready' && f.state.reason === 'break'), 'agent_state');
    assert.equal(nr.state.state, 'not_ready');
    assert.equal(nr.state.reason, 'break');
    await page.locator('#state-select[data-value="not_ready:break"]:not([disabled])').waitFor();

    from = frames.length;
    await sel.selectOption('available');
    const av = await waitForFrame(from, (f) => f.type === 'error' || (f.type === 'agent_state' && f.state.state === 'available'), 'agent_state');
    assert.equal(av.state.state, 'available', `server answered ${JSON.stringify(av.state)}`);
    await page.locator('#state-select[data-value="available"]:not([disabled])').waitFor();
    assert.equal(await sel.inputValue(), 'available');
    assert.equal(await page.locator('#agent-state').getAttribute('data-state'), 'available');
    verified('set_state not_ready/break then available; selector shows the server answers');
  });

  await step('reload: the cookie session brings the console back, still Available', async () => {
    const from = frames.length;
    await page.reload();
    await page.locator('#console-view').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#login-view').isVisible(), false, 'no login page after reload');
    await page.waitForFunction((n) => document.getElementById('user-name').textContent === n, displayName);
    const hello = await waitForFrame(from, (f) => f.type === 'hello', 'hello after reload');
    assert.equal(hello.state.state, 'available', 'server kept the state across the reconnect');
    await page.locator('#conn-indicator[data-conn="connected"]').waitFor();
    await page.locator('#state-select[data-value="available"]').waitFor();
    assert.equal(await page.locator('#state-select').inputValue(), 'available');
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en', 'language kept after reload');
    verified('after reload: console via cookie, new socket hello says available, selector shows Available');
  });

  await step(`search ${SEARCH_NUMBER} finds ${CUSTOMER_NAME}`, async () => {
    await page.fill('#search-input', SEARCH_NUMBER);
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().includes('/api/v1/customers?') && r.url().includes(SEARCH_NUMBER)),
      page.press('#search-input', 'Enter'),
    ]);
    assert.equal(res.status(), 200);
    const hit = page.locator('#search-results .result', { hasText: CUSTOMER_NAME }).first();
    await hit.waitFor({ state: 'visible' });
    assert.equal((await hit.locator('.result-name').innerText()).trim(), CUSTOMER_NAME);
    verified(`searching "${SEARCH_NUMBER}" lists ${CUSTOMER_NAME}`);
  });

  await step('open the screen-pop: name, VIP badge, expired-document alert', async () => {
    const hit = page.locator('#search-results .result', { hasText: CUSTOMER_NAME }).first();
    const [res] = await Promise.all([
      page.waitForResponse((r) => /\/api\/v1\/customers\/\d+\/screen-pop$/.test(r.url())),
      hit.click(),
    ]);
    assert.equal(res.status(), 200);
    await page.locator('#customer-card').waitFor({ state: 'visible' });
    assert.equal(await text('#customer-name'), CUSTOMER_NAME);
    const badge = page.locator('.cust-head .tier-badge[data-tier="vip"]');
    assert.ok(await badge.isVisible(), 'VIP tier badge visible');
    assert.equal((await badge.innerText()).trim(), 'VIP');
    const alert = page.locator('.alert[data-kind="document_expired"]').first();
    assert.ok(await alert.isVisible(), 'expired-document alert visible');
    assert.match(await alert.innerText(), /Document expired/);
    assert.ok(await page.locator('#customer-balance').isVisible(), 'balance shown');
    await page.screenshot({ path: path.join(ARTIFACTS, 'screen-pop.png') });
    verified(`screen-pop of ${CUSTOMER_NAME}: VIP badge, "Document expired" alert (screenshot screen-pop.png)`);
  });

  await step('log out: the login page is back and the session is gone', async () => {
    await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/logout')),
      page.click('#logout-btn'),
    ]);
    await page.locator('#login-view').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#console-view').isVisible(), false);
    const me = await page.request.get(HUB_URL + '/api/v1/auth/me');
    assert.equal(me.status(), 401, 'GET /api/v1/auth/me after logout');
    verified('logout shows the login page; /api/v1/auth/me answers 401');
  });

  await step('no script errors in the page', async () => {
    assert.deepEqual(pageErrors, []);
    verified('no uncaught errors or dialogs in the page');
  });
});
