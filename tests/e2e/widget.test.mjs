// Browser end-to-end test of the customer chat widget (web-agent/chat/*), in a real Chromium
// driven by playwright-core, against a real hub:
//   - a host page on ANOTHER site (http://localhost:<port>, the hub is on 127.0.0.1) embeds
//     /chat/widget.js with the documented tag; the launcher and the iframe appear and open;
//   - the pre-chat form in Chinese, `start`, waiting with the queue position, an agent — driven
//     over its own socket (/api/v1/agent/ws) from a second browser context with the demo login —
//     accepts and replies; sending → sent → read; typing both ways; read receipts;
//   - a reload of the host page restores exactly the same messages, nothing is sent twice (the
//     agent's chat_history); the browser going offline and a real network drop (a TCP proxy
//     between the browser and the hub, cut and restored) deliver the queued message once;
//   - IME composition Enter never sends; HTML in messages stays text; attachments (thumbnail,
//     413 checked before upload, 415 from the hub); end chat and the transcript;
//   - with no agent logged in: leave-a-message and callback with their references;
//   - a phone-sized screen (375×667): the chat fills it.
//
// Needs a running hub (e.g. `contact-hub demo`) and an agent account:
//   HUB_URL=http://127.0.0.1:18080 AGENT_USER=alice AGENT_PASS=... npm test
// The agent must be the only one logged in (the test logs it in and out; the no-agent part needs
// nobody logged in). Optional: CHROMIUM=/path/to/chromium (default /usr/bin/chromium).
//
// It never passes without checking: a missing HUB_URL, account or Chromium is a failure that
// says what to set or install. Screenshots go to tests/e2e/artifacts/widget-*.png.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HUB_URL = (process.env.HUB_URL || '').replace(/\/+$/, '');
const AGENT_USER = process.env.AGENT_USER || '';
const AGENT_PASS = process.env.AGENT_PASS || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');

const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const CUSTOMER = { name: '李雷', email: 'li.lei@example.com', topic: 'support' };
const FIRST_TEXT = '你好，我想咨询一下发票的问题';
const XSS = '<img src=x onerror=alert(1)>';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function verified(what) {
  console.log(`verified: ${what}`);
}

/** Polls `fn` until it returns a truthy value (or fails with `what`). */
async function until(fn, what, timeoutMs = 10_000, context = null) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      assert.fail(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})${context ? `; ${await context()}` : ''}`);
    }
    await sleep(100);
  }
}

/**
 * A TCP proxy between the customer's browser and the hub: the widget's origin is the proxy, so
 * cutting it drops the chat socket for real (the browser's offline emulation leaves open
 * WebSockets alone). While cut, new connections are refused.
 */
function startProxy(target) {
  const sockets = new Set();
  let down = false;
  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        cut() {
          down = true;
          for (const s of sockets) s.destroy();
          sockets.clear();
        },
        restore() {
          down = false;
        },
        close() {
          for (const s of sockets) s.destroy();
          server.close();
        },
      });
    });
  });
}

/** The host site: a page of another company, with hostile global styles, embedding the widget. */
function startHostSite(widgetSrc) {
  const page = `<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>华彩印务 Huacai Printing</title>
<style>
  body { font-family: Georgia, serif; background: #fbfaf7; color: #222; margin: 0; }
  header { background: #7c2d12; color: #fff; padding: 18px 32px; font-size: 22px; }
  main { padding: 32px; max-width: 760px; }
  /* Styles a real site may have; none of them may reach the widget. */
  button { all: unset; font-size: 40px !important; }
  iframe { border: 12px solid red !important; }
  div { padding: 30px !important; }
  * { letter-spacing: 3px; }
</style></head>
<body><header>华彩印务 · Huacai Printing</header>
<main><h1>名片、画册、包装盒印刷</h1><p>线上下单，三天交货。Business cards, brochures and boxes, printed in three days.</p>
<p id="host-marker">host page content</p></main>
<script src="${widgetSrc}" async data-title="在线客服" data-color="#7c2d12" data-lang="zh-CN" data-position="right"></script>
</body></html>`;
  const server = http.createServer((req, res) => {
    if (req.url === '/' || req.url.startsWith('/?')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(page);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** A small real PNG (a gradient), made by Chromium itself. */
async function makePng(browser) {
  const ctx = await browser.newContext({ viewport: { width: 240, height: 150 } });
  const p = await ctx.newPage();
  await p.setContent('<body style="margin:0"><div style="width:240px;height:150px;background:linear-gradient(135deg,#0369a1,#f59e0b);'
    + 'color:#fff;font:bold 28px sans-serif;display:grid;place-items:center">INVOICE 发票</div></body>');
  const png = await p.screenshot({ type: 'png' });
  await ctx.close();
  return png;
}

test('customer chat widget on another site, in a real browser', { timeout: 420_000 }, async (t) => {
  assert.ok(HUB_URL, 'HUB_URL is not set. Start the hub (e.g. contact-hub demo) and run e.g. '
    + 'HUB_URL=http://127.0.0.1:18080 AGENT_USER=alice AGENT_PASS=... npm test');
  assert.ok(AGENT_USER && AGENT_PASS, 'AGENT_USER and AGENT_PASS must name an agent account on the hub '
    + '(contact-hub demo prints them)');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}. Install it with `
    + '"apt-get update && apt-get install -y chromium", or set CHROMIUM=/path/to/chromium');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shot = (name) => path.join(ARTIFACTS, `widget-${name}.png`);
  for (const old of fs.readdirSync(ARTIFACTS)) {
    if (/^widget-failure/.test(old)) fs.rmSync(path.join(ARTIFACTS, old), { force: true });
  }

  const hub = new URL(HUB_URL);
  const proxy = await startProxy(hub);
  const hubViaProxy = `http://127.0.0.1:${proxy.port}`;
  const host = await startHostSite(`${hubViaProxy}/chat/widget.js`);
  // localhost and 127.0.0.1 are different sites: the widget runs cross-site, as on a customer's site.
  const hostUrl = `http://localhost:${host.address().port}/`;

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
  t.after(async () => {
    await browser.close().catch(() => {});
    proxy.close();
    host.close();
  });

  const problems = [];
  const watch = (page, who) => {
    page.on('pageerror', (e) => problems.push(`${who}: ${String(e && e.stack || e)}`));
    page.on('dialog', (d) => { problems.push(`${who}: unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`${who}: CSP: ${m.text()}`);
    });
  };

  // ------------------------------------------------------------------ the agent, over its socket

  const agentCtx = await browser.newContext();
  const agent = await agentCtx.newPage();
  agent.setDefaultTimeout(15_000);
  watch(agent, 'agent');
  await agent.goto(`${HUB_URL}/healthz`);
  let agentSeen = 0;
  const agentFrames = () => agent.evaluate(() => window.__frames.slice());
  const agentSend = (frame) => agent.evaluate((f) => window.__ws.send(JSON.stringify(f)), frame);
  /** Waits for an agent-socket frame after `from` that satisfies `pred`. */
  async function agentWait(pred, what, from = 0, timeoutMs = 15_000) {
    return until(async () => (await agentFrames()).slice(from).find(pred), `agent frame: ${what}`, timeoutMs,
      async () => `frames seen: ${JSON.stringify((await agentFrames()).slice(from).filter((f) => f.type !== 'heartbeat')).slice(0, 3000)}`);
  }
  async function agentMark() {
    return (await agentFrames()).length;
  }

  // ------------------------------------------------------------------ the customer

  // Chromium's defaults: third-party cookies (and with them a cross-site frame's localStorage)
  // are blocked, so the chat window keeps its state in the host page's storage through
  // widget.js. A second customer below visits from the hub's own site, where the frame has storage.
  const customerCtx = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
  });
  const page = await customerCtx.newPage();
  page.setDefaultTimeout(15_000);
  watch(page, 'customer');
  const uploads = [];
  page.on('request', (r) => {
    if (r.url().includes('/chat/attachments') && r.method() === 'POST') uploads.push(r.url());
  });

  const chatFrame = () => page.frames().find((f) => f.url().startsWith(`${hubViaProxy}/chat/frame`));
  const fl = () => page.frameLocator('contact-hub-chat iframe');
  const launcher = () => page.locator('contact-hub-chat .launcher');
  /** The conversation as shown: one entry per row, in order. */
  const shown = () => chatFrame().evaluate(() => Array.from(document.querySelectorAll('#msg-list li.msg')).map((li) => ({
    from: li.dataset.from,
    seq: li.dataset.seq ? Number(li.dataset.seq) : null,
    clientId: li.dataset.clientId || null,
    status: li.dataset.status || null,
    text: (li.querySelector('.msg-text, .msg-system-text, .file-name') || {}).textContent || '',
  })));
  /** Where the window keeps its state ("local": its own storage; "parent": the host page's) and the session. */
  async function storedState(p = page, frame = chatFrame()) {
    const mode = await frame.evaluate(() => document.documentElement.dataset.storage);
    const raw = mode === 'local'
      ? await frame.evaluate(() => localStorage.getItem('contact-hub-chat.v1'))
      : await p.evaluate(() => localStorage.getItem('contact-hub-chat.v1'));
    return { mode, state: raw ? JSON.parse(raw) : null };
  }
  const ownRow = (text) => fl().locator('li.msg-own', { has: page.locator('.msg-text', { hasText: text }) }).last();

  let contactId = null;
  let conversationId = null;
  let agentName = '';

  let broken = false;
  const step = (name, fn) => t.test(name, { skip: broken ? 'an earlier step failed' : false }, async () => {
    try {
      await fn();
    } catch (e) {
      broken = true;
      await page.screenshot({ path: shot('failure') }).catch(() => {});
      console.log(`step failed; screenshot in ${shot('failure')}`);
      throw e;
    }
  });

  /** Waits for the offer of the chat of `email` (passing on others) and accepts it: the contact id. */
  async function acceptChatOf(email, firstText, fromPage = hostUrl) {
    let offer;
    const deadline = Date.now() + 60_000;
    while (!offer && Date.now() < deadline) {
      const at = await until(async () => {
        const i = (await agentFrames()).findIndex((x, n) => n >= agentSeen && x.type === 'offer');
        return i >= 0 ? i + 1 : 0;
      }, 'an offer to the agent', 5_000).catch(() => 0);
      if (!at) {
        // The ACD offers a newly queued contact only if its lane's head may go to a free agent;
        // a head this agent declined (a stale contact passed on below) blocks the lane until the
        // agent becomes free again. Not ready → available makes it look for work itself.
        await agentSend({ type: 'set_state', state: 'not_ready', reason: 'meeting' });
        await sleep(300);
        await agentSend({ type: 'set_state', state: 'available' });
        continue;
      }
      const o = (await agentFrames())[at - 1];
      agentSeen = at;
      // Contacts left waiting by earlier tests may be offered first: passed on, not taken.
      const v = o.chat && o.chat.visitor;
      if (v && (email === null || v.email === email) && String(v.page || '').startsWith(fromPage)
        && o.chat.messages.some((m) => m.text === firstText)) {
        offer = o;
      } else {
        await agentSend({ type: 'reject', contact_id: o.contact.id });
        await sleep(300);
        await agentSend({ type: 'set_state', state: 'available' });
      }
    }
    assert.ok(offer, `the chat of ${email} was offered to the agent`);
    const mark = await agentMark();
    await agentSend({ type: 'accept', contact_id: offer.contact.id });
    await agentWait((f) => f.type === 'contact_state' && f.contact_id === offer.contact.id && f.state === 'connected', 'connected', mark);
    return offer;
  }

  async function typeAndSend(text) {
    const box = fl().locator('#composer-input');
    await box.click();
    await box.fill(text);
    await box.press('Enter');
  }

  /** The agent's view of the conversation (chat_history over its socket). */
  async function history() {
    const mark = await agentMark();
    await agentSend({ type: 'chat_history', contact_id: contactId });
    const h = await agentWait((f) => f.type === 'chat_history' && f.contact_id === contactId, 'chat_history', mark);
    return h.messages;
  }

  await step('the agent logs in over its socket and is not ready yet', async () => {
    const login = await agent.evaluate(async ({ user, pass }) => {
      const r = await fetch('/api/v1/auth/login', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: user, password: pass }),
      });
      return { status: r.status, body: await r.json().catch(() => null) };
    }, { user: AGENT_USER, pass: AGENT_PASS });
    assert.equal(login.status, 200, `agent login failed: ${JSON.stringify(login.body)}`);
    await agent.evaluate(() => new Promise((resolve, reject) => {
      window.__frames = [];
      const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/agent/ws`);
      window.__ws = ws;
      ws.onmessage = (e) => { try { window.__frames.push(JSON.parse(e.data)); } catch (err) { /* not JSON */ } };
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error('the agent socket did not open'));
    }));
    const hello = await agentWait((f) => f.type === 'hello', 'hello');
    agentName = hello.agent.display_name;
    assert.ok(agentName, 'hello names the agent');
    // Work still in this agent's hands (an earlier run or test): finished first.
    for (const item of hello.contacts || []) {
      const id = item.contact.id;
      if (item.state === 'connected') {
        await agentSend(item.contact.channel === 'chat' ? { type: 'chat_end', contact_id: id } : { type: 'complete', contact_id: id });
        await sleep(300);
      }
      if (item.state === 'reserved' || item.state === 'offered') await agentSend({ type: 'reject', contact_id: id });
      else await agentSend({ type: 'wrap_up', contact_id: id, disposition: 'no_action' });
      await sleep(200);
    }
    const mark = await agentMark();
    await agentSend({ type: 'set_state', state: 'not_ready', reason: 'meeting' });
    await agentWait((f) => f.type === 'agent_state' && f.state.state === 'not_ready', 'agent_state not_ready', mark);
    agentSeen = await agentMark();
    verified(`agent ${AGENT_USER} (${agentName}) logged in over /api/v1/agent/ws, not ready`);
  });

  await step('the host page on another site shows the launcher; host styles do not reach it', async () => {
    const res = await page.goto(hostUrl);
    assert.equal(res.status(), 200);
    await launcher().waitFor({ state: 'visible' });
    const box = await launcher().boundingBox();
    assert.ok(box.width >= 54 && box.width <= 64 && Math.abs(box.width - box.height) < 1, `a round launcher, got ${JSON.stringify(box)}`);
    assert.ok(box.x + box.width > 1280 - 40 && box.y + box.height > 800 - 40, `launcher in the bottom-right corner, got ${JSON.stringify(box)}`);
    const look = await page.evaluate(() => {
      const hostEl = document.querySelector('contact-hub-chat');
      const root = hostEl.shadowRoot;
      const b = root.querySelector('.launcher');
      const f = root.querySelector('iframe');
      return {
        bg: getComputedStyle(b).backgroundColor,
        fontSize: getComputedStyle(b).fontSize,
        iframeBorder: getComputedStyle(f).borderTopWidth,
        iframeSrc: f.src,
        hostStyle: document.querySelector('contact-hub-chat').getAttribute('style'),
        bodyFont: getComputedStyle(document.body).fontFamily,
        extraNodes: document.body.children.length,
      };
    });
    assert.equal(look.bg, 'rgb(124, 45, 18)', 'the launcher has the data-color accent');
    assert.equal(look.iframeBorder, '0px', 'the host page\'s iframe rule does not reach the widget');
    assert.notEqual(look.fontSize, '40px', 'the host page\'s button rule does not reach the widget');
    assert.equal(look.hostStyle, null, 'no inline style put on the host page');
    assert.match(look.bodyFont, /Georgia/, 'the host page keeps its own styles');
    const src = new URL(look.iframeSrc);
    assert.equal(src.origin, hubViaProxy, 'the iframe comes from the hub (the script\'s origin)');
    assert.equal(src.pathname, '/chat/frame');
    assert.equal(src.searchParams.get('lang'), 'zh-CN');
    assert.equal(src.searchParams.get('title'), '在线客服');
    assert.equal(src.searchParams.get('color'), '#7c2d12');
    assert.equal(src.searchParams.get('position'), 'right');
    assert.equal(await page.locator('contact-hub-chat iframe').isVisible(), false, 'the chat window starts closed');
    await page.screenshot({ path: shot('closed') });
    verified(`widget on ${hostUrl} (hub ${hubViaProxy}): accent launcher bottom-right, closed iframe /chat/frame?lang&title&color&position, host styles isolated (widget-closed.png)`);
  });

  await step('the window opens with the pre-chat form in Chinese, and validates it', async () => {
    await launcher().click();
    await fl().locator('#prechat-form').waitFor({ state: 'visible' });
    assert.equal(await launcher().getAttribute('aria-expanded'), 'true');
    const f = fl();
    assert.equal((await f.locator('#head-title').innerText()).trim(), '在线客服');
    assert.equal((await f.locator('#prechat-heading').innerText()).trim(), '发起咨询');
    assert.match(await f.locator('label[for="f-name"]').innerText(), /您的称呼/);
    assert.match(await f.locator('label[for="f-email"]').innerText(), /电子邮箱/);
    assert.match(await f.locator('label[for="f-phone"]').innerText(), /手机号码/);
    assert.match(await f.locator('label[for="f-topic"]').innerText(), /咨询类型/);
    const topics = await f.locator('#f-topic option').evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(topics, ['support', 'sales', 'billing'], 'topics from /chat/status');
    assert.equal(await chatFrame().evaluate(() => document.documentElement.lang), 'zh-CN');
    await page.screenshot({ path: shot('prechat') });

    // Nothing filled in: three clear errors, nothing started.
    await f.locator('#prechat-submit').click();
    await f.locator('[data-field="name"] .field-error').waitFor({ state: 'visible' });
    assert.equal((await f.locator('[data-field="name"] .field-error').innerText()).trim(), '请填写您的称呼。');
    assert.equal((await f.locator('[data-field="email"] .field-error').innerText()).trim(), '请填写电子邮箱或手机号码。');
    assert.equal((await f.locator('[data-field="message"] .field-error').innerText()).trim(), '请填写您的问题。');
    assert.equal(await f.locator('#f-name').getAttribute('aria-invalid'), 'true');
    // A malformed email is refused before anything is sent.
    await f.locator('#f-email').fill('li.lei@');
    await f.locator('#prechat-submit').click();
    assert.equal((await f.locator('[data-field="email"] .field-error').innerText()).trim(), '邮箱格式不正确。');
    assert.equal(await f.locator('#msg-list').count(), 0, 'no chat started with an invalid form');
    verified('pre-chat form in zh-CN (labels, topics from /chat/status), required name / email-or-phone / question, email checked (widget-prechat.png)');
  });

  await step('start: the customer waits with the queue position and expected wait', async () => {
    const f = fl();
    await f.locator('#f-name').fill(CUSTOMER.name);
    await f.locator('#f-email').fill(CUSTOMER.email);
    await f.locator('#f-topic').selectOption(CUSTOMER.topic);
    await f.locator('#f-message').fill(FIRST_TEXT);
    await f.locator('#prechat-submit').click();
    await f.locator('#waiting').waitFor({ state: 'visible' });
    await f.locator('#queue-position').waitFor({ state: 'visible' });
    // Other contacts may wait in the queue already (earlier tests): position 1 or later.
    const position = Number(await f.locator('#queue-position').getAttribute('data-position'));
    assert.ok(Number.isInteger(position) && position >= 1, `a queue position, got ${position}`);
    assert.equal((await f.locator('#queue-position').innerText()).trim(), position === 1 ? '下一位就是您' : `您前面还有 ${position - 1} 位`);
    assert.match(await f.locator('#queue-wait').innerText(), /预计等待：(约 \d+ 分钟|不到 1 分钟)/);
    assert.equal((await f.locator('#head-sub').innerText()).trim(), '正在等待客服…');
    const first = ownRow(FIRST_TEXT);
    await until(async () => (await first.getAttribute('data-status')) === 'sent', 'the first message stored (sent)');
    const { mode, state: stored } = await storedState();
    assert.equal(mode, 'parent', 'third-party storage blocked (Chromium\'s default for a cross-site frame): the host page keeps the state');
    assert.match(stored.session.token, /^chs_/, 'the session token is kept in localStorage');
    assert.equal(stored.session.messages[0].text, FIRST_TEXT);
    const hostKeys = await page.evaluate(() => Object.keys(localStorage).sort());
    assert.ok(hostKeys.every((k) => k.startsWith('contact-hub-chat.')), `only the widget's own keys on the host site: ${hostKeys}`);
    await page.screenshot({ path: shot('waiting') });
    verified('start → queued: queue position and expected wait shown; first message sent; session (token, transcript) kept for the frame in the host site\'s localStorage (third-party storage blocked) (widget-waiting.png)');
  });

  await step('the agent accepts: joined notice, agent name in the header, the reply shows', async () => {
    await agentSend({ type: 'set_state', state: 'available' });
    const offer = await acceptChatOf(CUSTOMER.email, FIRST_TEXT);
    contactId = offer.contact.id;
    conversationId = offer.chat && offer.chat.conversation_id;
    assert.equal(offer.chat.visitor.name, CUSTOMER.name);
    assert.equal(offer.chat.visitor.email, CUSTOMER.email);
    assert.equal(offer.chat.visitor.topic, CUSTOMER.topic);
    assert.ok(offer.chat.visitor.page && offer.chat.visitor.page.startsWith(hostUrl), `the page the customer was on: ${offer.chat.visitor.page}`);
    assert.equal(offer.chat.messages[0].text, FIRST_TEXT);
    const f = fl();
    const joined = f.locator('li.msg-system[data-event="agent_joined"]');
    await joined.waitFor({ state: 'visible' });
    assert.equal((await joined.locator('.msg-system-text').innerText()).trim(), `客服 ${agentName} 为您服务`);
    const align = await joined.evaluate((el) => {
      const r = el.getBoundingClientRect();
      const list = el.parentElement.getBoundingClientRect();
      return Math.abs((r.left + r.right) / 2 - (list.left + list.right) / 2);
    });
    assert.ok(align < 4, `system notices are centred (off by ${align}px)`);
    await until(async () => (await f.locator('#head-sub').innerText()).trim() === `${agentName} 为您服务`, 'agent name in the header');
    assert.equal(await f.locator('#waiting').count(), 0, 'the waiting card is gone');

    // Customer's own typing reaches the agent, and stops after a pause.
    const tmark = await agentMark();
    await f.locator('#composer-input').click();
    await f.locator('#composer-input').pressSequentially('好的', { delay: 30 });
    await agentWait((x) => x.type === 'chat_typing' && x.contact_id === contactId && x.active === true, 'customer typing', tmark);
    await agentWait((x) => x.type === 'chat_typing' && x.contact_id === contactId && x.active === false, 'customer stopped typing', tmark, 10_000);
    await f.locator('#composer-input').fill('');

    // The agent types, then replies.
    await agentSend({ type: 'chat_typing', contact_id: contactId, active: true });
    await f.locator('#typing').waitFor({ state: 'visible' });
    assert.equal((await f.locator('#typing .typing-text').innerText()).trim(), `${agentName} 正在输入…`);
    const rmark = await agentMark();
    await agentSend({ type: 'chat_send', contact_id: contactId, client_id: 'a-1', text: '您好，李雷！请问发票对应的订单号是多少？' });
    await agentWait((x) => x.type === 'chat_ack' && x.client_id === 'a-1', 'chat_ack a-1', rmark);
    const reply = f.locator('li.msg-agent', { hasText: '请问发票对应的订单号是多少' });
    await reply.waitFor({ state: 'visible' });
    assert.equal((await reply.locator('.msg-name').innerText()).trim(), agentName);
    await f.locator('#typing').waitFor({ state: 'hidden' });
    // The window is open and focused: a read receipt for the reply goes to the agent.
    const replySeq = Number(await reply.getAttribute('data-seq'));
    await f.locator('#composer-input').click();
    await agentWait((x) => x.type === 'chat_read' && x.contact_id === contactId && x.seq >= replySeq, `chat_read ≥ ${replySeq}`, rmark);
    verified(`agent accepted: centred "客服 ${agentName} 为您服务", name in the header, typing both ways, reply with the agent's name, read receipt seq ${replySeq} to the agent`);
  });

  await step('own messages go sending → sent → read', async () => {
    const f = chatFrame();
    await f.evaluate(() => {
      window.__statuses = {};
      const list = document.getElementById('msg-list');
      const note = (li) => {
        if (!li.matches || !li.matches('li.msg-own')) return;
        const text = (li.querySelector('.msg-text') || {}).textContent || '';
        const seen = window.__statuses[text] || (window.__statuses[text] = []);
        if (seen[seen.length - 1] !== li.dataset.status) seen.push(li.dataset.status);
      };
      new MutationObserver((muts) => {
        for (const m of muts) {
          if (m.type === 'attributes') note(m.target);
          for (const n of m.addedNodes || []) note(n);
        }
      }).observe(list, { childList: true, attributes: true, attributeFilter: ['data-status'], subtree: true });
    });
    const mark = await agentMark();
    const text = '订单号是 A-1002';
    await typeAndSend(text);
    const row = ownRow(text);
    await until(async () => (await row.getAttribute('data-status')) === 'sent', 'sent');
    const msg = await agentWait((x) => x.type === 'chat_message' && x.message.from === 'customer' && x.message.text === text, 'the customer message', mark);
    assert.ok(msg.message.client_id, 'it carries the widget\'s client_id');
    assert.equal((await row.locator('.msg-status-text').innerText()).trim(), '已送达');
    await agentSend({ type: 'chat_read', contact_id: contactId, seq: msg.message.seq });
    await until(async () => (await row.getAttribute('data-status')) === 'read', 'read');
    assert.equal((await row.locator('.msg-status-text').innerText()).trim(), '已读');
    const seen = await f.evaluate((tx) => window.__statuses[tx], text);
    assert.deepEqual(seen, ['sending', 'sent', 'read'], `status sequence of the message: ${JSON.stringify(seen)}`);
    verified(`"${text}": sending → sent (ack, seq ${msg.message.seq}) → read (agent's chat_read)`);
  });

  await step('HTML in messages stays text; links are safe', async () => {
    const mark = await agentMark();
    await typeAndSend(XSS);
    const row = ownRow('onerror');
    await until(async () => (await row.getAttribute('data-status')) === 'sent', 'the XSS text stored');
    assert.equal(await row.locator('.msg-text').textContent(), XSS, 'shown literally');
    assert.equal(await row.locator('img').count(), 0, 'no element made from the text');
    await agentWait((x) => x.type === 'chat_message' && x.message.text === XSS, 'the XSS text as text at the agent', mark);
    const agentText = '<b>加粗</b><script>alert(2)</script> 开票说明见 https://example.com/help?a=1&b=2 。javascript:alert(3)';
    await agentSend({ type: 'chat_send', contact_id: contactId, client_id: 'a-2', text: agentText });
    const reply = fl().locator('li.msg-agent', { hasText: '开票说明见' });
    await reply.waitFor({ state: 'visible' });
    assert.equal(await reply.locator('.msg-text').textContent(), agentText);
    assert.equal(await reply.locator('b, script').count(), 0);
    const links = await reply.locator('a').evaluateAll((as) => as.map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target })));
    assert.deepEqual(links, [{ href: 'https://example.com/help?a=1&b=2', rel: 'noopener noreferrer nofollow', target: '_blank' }],
      'only the http(s) URL is a link');
    await sleep(300);
    assert.deepEqual(problems, [], 'no dialog, no page error');
    verified(`"${XSS}" and an agent's <b>/<script> show as literal text; only https://… is linked (rel noopener noreferrer, target _blank)`);
  });

  await step('while the window is closed: an unread badge, no read receipt until it opens', async () => {
    await launcher().click();
    await until(async () => !(await page.locator('contact-hub-chat iframe').isVisible()), 'the window closed');
    assert.equal(await launcher().getAttribute('aria-expanded'), 'false');
    const mark = await agentMark();
    await agentSend({ type: 'chat_send', contact_id: contactId, client_id: 'a-unread', text: '发票已经开好了，您看一下？' });
    const sent = await agentWait((x) => x.type === 'chat_ack' && x.client_id === 'a-unread', 'chat_ack a-unread', mark);
    const badge = page.locator('contact-hub-chat .badge');
    await badge.waitFor({ state: 'visible' });
    assert.equal((await badge.innerText()).trim(), '1');
    assert.match(await launcher().getAttribute('aria-label'), /1 条未读消息/);
    const preview = page.locator('contact-hub-chat .preview');
    await preview.waitFor({ state: 'visible' });
    assert.equal((await preview.locator('.preview-name').innerText()).trim(), agentName);
    assert.equal((await preview.locator('.preview-text').innerText()).trim(), '发票已经开好了，您看一下？');
    await page.screenshot({ path: shot('unread') });
    await sleep(800);
    assert.equal((await agentFrames()).slice(mark).filter((x) => x.type === 'chat_read' && x.seq >= sent.message.seq).length, 0,
      'no read receipt while the window is closed');
    await preview.click();
    await badge.waitFor({ state: 'hidden' });
    await preview.waitFor({ state: 'hidden' });
    assert.equal(await launcher().getAttribute('aria-expanded'), 'true', 'the preview opens the window');
    await fl().locator('#composer-input').click();
    await agentWait((x) => x.type === 'chat_read' && x.seq >= sent.message.seq, `chat_read ≥ ${sent.message.seq} once open`, mark);
    verified('closed window: badge "1" (aria-label "… 1 条未读消息") and a text preview with the agent\'s name, no read receipt; the preview opens it: badge gone, chat_read sent (widget-unread.png)');
  });

  await step('IME: Enter while composing never sends', async () => {
    const f = chatFrame();
    const box = fl().locator('#composer-input');
    await box.click();
    await box.fill('fapiao');
    const before = (await shown()).length;
    const outbox = async () => (await storedState()).state.session.outbox.length;
    // 1. keydown Enter with isComposing (Chrome, Firefox).
    await box.evaluate((el) => {
      el.dispatchEvent(new CompositionEvent('compositionstart', { bubbles: true, data: '' }));
      el.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', bubbles: true, cancelable: true, isComposing: true }));
      el.dispatchEvent(new CompositionEvent('compositionend', { bubbles: true, data: '发票' }));
    });
    // 2. keydown Enter without isComposing, between compositionstart and compositionend.
    await box.evaluate((el) => {
      el.dispatchEvent(new CompositionEvent('compositionstart', { bubbles: true, data: '' }));
      el.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', keyCode: 13, bubbles: true, cancelable: true }));
      el.dispatchEvent(new CompositionEvent('compositionend', { bubbles: true, data: '发票' }));
    });
    // 3. keyCode 229 (Safari sends it after compositionend).
    const keyCode = await box.evaluate((el) => {
      const e = new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', bubbles: true, cancelable: true });
      Object.defineProperty(e, 'keyCode', { get: () => 229 });
      el.dispatchEvent(e);
      return e.keyCode;
    });
    assert.equal(keyCode, 229);
    await sleep(400);
    assert.equal(await box.inputValue(), 'fapiao', 'the text stays in the box');
    assert.equal((await shown()).length, before, 'nothing was sent');
    assert.equal(await outbox(), 0, 'nothing queued');
    // A plain Enter sends; Shift+Enter is a newline.
    await box.fill('发票抬头：蓝鸟科技');
    await box.press('Shift+Enter');
    await box.pressSequentially('税号 91110000');
    assert.equal(await box.inputValue(), '发票抬头：蓝鸟科技\n税号 91110000');
    await box.press('Enter');
    await until(async () => (await shown()).some((m) => m.text === '发票抬头：蓝鸟科技\n税号 91110000' && m.status === 'sent'), 'the two-line message sent');
    assert.equal(await box.inputValue(), '');
    verified('Enter during composition (isComposing, compositionstart…end, keyCode 229) never sends; Shift+Enter is a newline; Enter sends');
  });

  await step('attachments: a thumbnail, size checked before upload, 415 shown', async () => {
    const png = await makePng(browser);
    const mark = await agentMark();
    const input = fl().locator('#file-input');
    await input.setInputFiles({ name: '发票照片.png', mimeType: 'image/png', buffer: png });
    const chip = fl().locator('li.msg-own a.file.is-image');
    await chip.waitFor({ state: 'visible' });
    const att = await agentWait((x) => x.type === 'chat_message' && x.message.attachment, 'attachment at the agent', mark);
    assert.equal(att.message.attachment.name, '发票照片.png');
    assert.equal(att.message.attachment.content_type, 'image/png');
    assert.equal(att.message.attachment.size, png.length);
    const href = await chip.getAttribute('href');
    assert.match(href, new RegExp(`^/chat/attachments/${att.message.attachment.id}\\?token=chs_`));
    const img = chip.locator('img.file-thumb');
    await until(() => img.evaluate((el) => el.complete && el.naturalWidth > 0), 'the thumbnail loaded');
    const dl = await chatFrame().evaluate(async (u) => {
      const r = await fetch(u);
      return { status: r.status, disposition: r.headers.get('content-disposition'), type: r.headers.get('content-type'), size: (await r.arrayBuffer()).byteLength };
    }, href);
    assert.equal(dl.status, 200);
    assert.match(dl.disposition, /^attachment/, 'downloaded as an attachment, never shown as a page');
    assert.equal(dl.size, png.length);
    assert.equal((await chip.locator('.file-name').innerText()).trim(), '发票照片.png');

    const beforeUploads = uploads.length;
    await input.setInputFiles({ name: '扫描件.pdf', mimeType: 'application/pdf', buffer: Buffer.alloc(5 * 1024 * 1024 + 1, 0x25) });
    const notice = fl().locator('#composer-notice');
    await notice.waitFor({ state: 'visible' });
    assert.match(await notice.innerText(), /“扫描件\.pdf”太大了，文件不能超过 5 MB/);
    assert.equal(uploads.length, beforeUploads, 'a file over max_attachment_bytes is not uploaded');

    await input.setInputFiles({ name: 'tool.exe', mimeType: 'application/octet-stream', buffer: Buffer.from([0x4d, 0x5a, 0x90, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04]) });
    const failed = fl().locator('.upload-error');
    await failed.waitFor({ state: 'visible' });
    assert.match(await failed.innerText(), /无法发送“tool\.exe”/);
    await fl().locator('.upload .btn-link', { hasText: '移除' }).click();
    await failed.waitFor({ state: 'detached' });
    await page.screenshot({ path: shot('conversation') });
    // The same conversation on a 360 px wide phone: full screen, nothing wider than the screen.
    await page.setViewportSize({ width: 360, height: 740 });
    await sleep(300);
    assert.deepEqual(await page.locator('contact-hub-chat iframe').boundingBox(), { x: 0, y: 0, width: 360, height: 740 });
    assert.equal(await chatFrame().evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), 0);
    await page.screenshot({ path: shot('conversation-360') });
    await page.setViewportSize({ width: 1280, height: 800 });
    verified(`image upload → thumbnail + download link (attachment #${att.message.attachment.id}, Content-Disposition attachment); 5 MB + 1 refused before upload; .exe → 415 shown (widget-conversation.png)`);
  });

  let beforeReload;
  await step('a reload mid-conversation shows exactly the same history, nothing sent twice', async () => {
    beforeReload = await shown();
    assert.ok(beforeReload.length >= 8, `a real conversation so far (${beforeReload.length} rows)`);
    assert.ok(beforeReload.every((m) => m.seq), 'everything stored');
    await page.reload();
    // The window was open: it opens again by itself, with the same messages.
    await fl().locator('#msg-list').waitFor({ state: 'visible' });
    await until(async () => chatFrame() && (await page.locator('contact-hub-chat iframe').isVisible()), 'the window open again after the reload');
    await until(async () => (await shown()).length === beforeReload.length && (await chatFrame().evaluate(() => document.querySelector('#banner').hidden)),
      'the conversation restored and connected');
    await sleep(1500); // anything resent or replayed would show now
    const after = await shown();
    assert.deepEqual(after.map(({ seq, from, text }) => ({ seq, from, text })), beforeReload.map(({ seq, from, text }) => ({ seq, from, text })),
      'same messages, same order');
    const seqs = after.map((m) => m.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'rendered by seq');
    const msgs = await history();
    const own = msgs.filter((m) => m.from === 'customer');
    const ids = own.map((m) => m.client_id);
    assert.equal(new Set(ids).size, ids.length, 'no client_id stored twice');
    const ownTexts = own.map((m) => m.text);
    assert.equal(new Set(ownTexts).size, ownTexts.length, `no text stored twice: ${JSON.stringify(ownTexts)}`);
    assert.equal(own.length, after.filter((m) => m.from === 'customer').length, 'the agent has exactly the customer\'s messages');
    verified(`reload: ${after.length} rows restored in the same order; chat_history has ${own.length} customer messages, each once`);
  });

  await step('a host page on the hub\'s own site: the frame keeps the session in its own storage, and resumes', async () => {
    // The same host page from 127.0.0.1 (another origin, but the hub's site — like www. and
    // chat. of one company): the frame is not third-party, so it may keep its own localStorage.
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'zh-TW' });
    const sameSiteUrl = `http://127.0.0.1:${host.address().port}/`;
    try {
      const p2 = await ctx.newPage();
      watch(p2, 'customer 2');
      await p2.goto(sameSiteUrl);
      await p2.locator('contact-hub-chat .launcher').click();
      const f2 = p2.frameLocator('contact-hub-chat iframe');
      const frame2 = () => p2.frames().find((x) => x.url().startsWith(`${hubViaProxy}/chat/frame`));
      await f2.locator('#prechat-form').waitFor({ state: 'visible' });
      await f2.locator('#f-name').fill('陳美玲');
      await f2.locator('#f-phone').fill('+886 912 345 678');
      const first = '請問可以開統一編號的發票嗎？';
      await f2.locator('#f-message').fill(first);
      await f2.locator('#prechat-submit').click();
      await f2.locator('#msg-list').waitFor({ state: 'visible' });
      // Phone-only visitor: matched on the agent side by the first message.
      const offer = await acceptChatOf(null, first, sameSiteUrl);
      const c2 = offer.contact.id;
      await agentSend({ type: 'chat_send', contact_id: c2, client_id: 'b-1', text: '可以的，請提供統一編號。' });
      await f2.locator('li.msg-agent', { hasText: '請提供統一編號' }).waitFor({ state: 'visible' });
      const box = f2.locator('#composer-input');
      await box.click();
      await box.fill('統一編號 24536806');
      await until(async () => (await box.inputValue()) === '統一編號 24536806', 'the text in the box');
      await box.press('Enter');
      await until(async () => (await f2.locator('li.msg-own[data-status="sent"]').count()) === 2, 'both messages sent');
      const { mode, state } = await storedState(p2, frame2());
      assert.equal(mode, 'local', 'same site: the frame keeps its own localStorage');
      assert.match(state.session.token, /^chs_/);
      assert.equal(await p2.evaluate(() => localStorage.length), 0, 'nothing written to the host site\'s storage');
      const rows = () => frame2().evaluate(() => Array.from(document.querySelectorAll('#msg-list li.msg')).map((li) => `${li.dataset.seq}:${li.dataset.from}:${li.textContent}`));
      const before = await rows();
      await p2.reload();
      await p2.frameLocator('contact-hub-chat iframe').locator('#msg-list').waitFor({ state: 'visible' });
      await until(async () => frame2() && (await rows()).length === before.length, 'the conversation restored');
      await sleep(1000);
      assert.deepEqual((await rows()).map((r) => r.split(':').slice(0, 2).join(':')), before.map((r) => r.split(':').slice(0, 2).join(':')));
      assert.equal((await frame2().evaluate(() => document.documentElement.lang)), 'zh-CN', 'data-lang wins over the browser\'s zh-TW');
      const mark = await agentMark();
      await agentSend({ type: 'chat_end', contact_id: c2 });
      await agentWait((x) => x.type === 'contact_state' && x.contact_id === c2 && x.state === 'wrap_up', 'wrap_up', mark);
      await p2.frameLocator('contact-hub-chat iframe').locator('#ended-card').waitFor({ state: 'visible' });
      await agentSend({ type: 'wrap_up', contact_id: c2, disposition: 'resolved' });
      verified(`host page on the hub's site (${sameSiteUrl}): session in the frame's own localStorage, host storage untouched, reload restored ${before.length} rows; agent ended the chat → closing card`);
    } catch (e) {
      const p2 = ctx.pages()[0];
      if (p2) await p2.screenshot({ path: shot('failure-2') }).catch(() => {});
      throw e;
    } finally {
      await ctx.close().catch(() => {});
    }
  });

  await step('offline: a message typed without network is delivered once when back', async () => {
    await customerCtx.setOffline(true);
    const banner = fl().locator('#banner');
    await until(async () => (await banner.getAttribute('data-conn')) === 'offline' && (await banner.isVisible()), 'the offline banner');
    assert.match(await banner.innerText(), /网络已断开/);
    const text = '断网时发的消息';
    const mark = await agentMark();
    await typeAndSend(text);
    const row = ownRow(text);
    assert.equal(await row.getAttribute('data-status'), 'sending');
    await sleep(1500);
    assert.equal((await agentFrames()).slice(mark).filter((x) => x.type === 'chat_message' && x.message.text === text).length, 0, 'not delivered while offline');
    const stored = (await storedState()).state.session.outbox.map((o) => o.text);
    assert.deepEqual(stored, [text], 'kept in the outbox in localStorage');
    await page.screenshot({ path: shot('offline-banner') });
    await customerCtx.setOffline(false);
    await until(async () => (await row.getAttribute('data-status')) === 'sent', 'sent after coming back', 20_000);
    await banner.waitFor({ state: 'hidden' });
    await sleep(800);
    const got = (await agentFrames()).slice(mark).filter((x) => x.type === 'chat_message' && x.message.text === text);
    assert.equal(got.length, 1, 'delivered exactly once');
    assert.equal((await history()).filter((m) => m.text === text).length, 1, 'stored exactly once');
    verified(`setOffline: "${text}" waited in the outbox (banner shown), delivered once on reconnect`);
  });

  await step('a real network drop: reconnecting, the message goes once the network is back', async () => {
    const mark = await agentMark();
    proxy.cut();
    const banner = fl().locator('#banner');
    await until(async () => (await banner.getAttribute('data-conn')) === 'reconnecting' && (await banner.isVisible()), 'the reconnecting banner');
    assert.match(await banner.innerText(), /正在重新连接/);
    // The agent writes during the outage; the customer writes too.
    await agentSend({ type: 'chat_send', contact_id: contactId, client_id: 'a-3', text: '我已经帮您重新开具了发票。' });
    const text = '网络恢复后送达';
    await typeAndSend(text);
    await sleep(2500); // a few reconnect attempts against the cut network
    assert.equal(await ownRow(text).getAttribute('data-status'), 'sending');
    await page.screenshot({ path: shot('reconnecting') });
    proxy.restore();
    await until(async () => (await ownRow(text).getAttribute('data-status')) === 'sent', 'sent after the drop', 30_000);
    await fl().locator('li.msg-agent', { hasText: '我已经帮您重新开具了发票' }).waitFor({ state: 'visible' });
    await banner.waitFor({ state: 'hidden' });
    await sleep(800);
    assert.equal((await agentFrames()).slice(mark).filter((x) => x.type === 'chat_message' && x.message.text === text).length, 1, 'delivered once');
    const rows = await shown();
    assert.equal(rows.filter((m) => m.text === '我已经帮您重新开具了发票。').length, 1, 'the agent\'s message from the outage shows once (resume with last_seq)');
    const seqs = rows.map((m) => m.seq);
    assert.equal(new Set(seqs).size, seqs.length, 'no seq shown twice');
    assert.equal((await history()).filter((m) => m.text === text).length, 1, 'stored once');
    verified('proxy cut: "reconnecting" banner, message kept; after restore resume with last_seq brought the agent\'s message once and the outbox was delivered once (widget-reconnecting.png)');
  });

  await step('too long and too fast: the text stays in the box, nothing is lost', async () => {
    const f = fl();
    const box = f.locator('#composer-input');
    const notice = f.locator('#composer-notice');
    const rowsBefore = (await shown()).length;
    // Over max_message_chars: refused before sending, kept in the box.
    const long = '长'.repeat(2001);
    await box.click();
    await box.fill(long);
    assert.equal((await f.locator('#composer-count').innerText()).trim(), '2001/2000');
    await box.press('Enter');
    await notice.waitFor({ state: 'visible' });
    assert.equal((await notice.innerText()).trim(), '消息过长（2001/2000 字）。');
    assert.equal(await box.inputValue(), long);
    assert.equal((await shown()).length, rowsBefore, 'nothing sent');
    await box.fill('');

    // A burst faster than the hub's rate limit: what it refuses comes back into the box, in order.
    const mark = await agentMark();
    const burst = Array.from({ length: 14 }, (_, i) => `连发第 ${i + 1} 条`);
    await chatFrame().evaluate((texts) => {
      const el = document.getElementById('composer-input');
      for (const text of texts) {
        el.value = text;
        el.dispatchEvent(new Event('input', { bubbles: true }));
        el.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', keyCode: 13, bubbles: true, cancelable: true }));
      }
    }, burst);
    await until(async () => (await notice.isVisible()) && /发送得太快/.test(await notice.innerText()), 'the rate-limit notice');
    await until(async () => (await storedState()).state.session.outbox.length === 0, 'every burst message answered (ack or refusal)');
    const refused = (await box.inputValue()).split('\n');
    const delivered = (await shown()).filter((m) => m.from === 'customer' && burst.includes(m.text)).map((m) => m.text);
    assert.ok(refused.length >= 1 && delivered.length >= 1, `some delivered (${delivered.length}), some refused (${refused.length})`);
    assert.deepEqual([...delivered, ...refused], burst, 'delivered in order, the rest back in the box in order: nothing lost');
    await sleep(500);
    const atAgent = (await agentFrames()).slice(mark).filter((x) => x.type === 'chat_message' && burst.includes(x.message.text)).map((x) => x.message.text);
    assert.deepEqual(atAgent, delivered, 'the agent got exactly the delivered ones');
    // Later, the customer sends what came back, as one message.
    await sleep(4000);
    await box.press('Enter');
    await until(async () => (await shown()).some((m) => m.text === refused.join('\n') && m.status === 'sent'), 'the refused texts sent later');
    verified(`2001 characters refused in the widget (count 2001/2000, text kept); a burst of 14: ${delivered.length} delivered, ${refused.length} refused by the hub (rate_limited) and put back into the box in order, sent later`);
  });

  await step('end chat: confirm, closing note, transcript, new chat', async () => {
    const f = fl();
    const mark = await agentMark();
    await f.locator('#end-btn').click();
    await f.locator('[role="alertdialog"]').waitFor({ state: 'visible' });
    assert.equal((await f.locator('#end-title').innerText()).trim(), '确定结束对话吗？');
    await f.locator('#end-cancel').click();
    await f.locator('[role="alertdialog"]').waitFor({ state: 'detached' });
    assert.equal(await f.locator('#ended-card').count(), 0, 'cancel keeps the chat');
    await f.locator('#end-btn').click();
    await f.locator('#end-confirm').click();
    await f.locator('#ended-card').waitFor({ state: 'visible' });
    await agentWait((x) => x.type === 'chat_ended' && x.contact_id === contactId && x.reason === 'customer', 'chat_ended customer', mark);
    assert.equal(await f.locator('#composer').isVisible(), false, 'no composer after the end');
    const href = await f.locator('#transcript-link').getAttribute('href');
    assert.match(href, /^\/chat\/transcript\?token=chs_/);
    const tr = await chatFrame().evaluate(async (u) => {
      const r = await fetch(u);
      return { status: r.status, disposition: r.headers.get('content-disposition'), text: await r.text() };
    }, href);
    assert.equal(tr.status, 200);
    assert.match(tr.disposition, /^attachment/);
    assert.match(tr.text, /订单号是 A-1002/);
    assert.match(tr.text, /网络恢复后送达/);
    await page.screenshot({ path: shot('ended') });
    // Wrap up on the agent side, and log out: nobody can chat now.
    const wmark = await agentMark();
    await agentSend({ type: 'wrap_up', contact_id: contactId, disposition: 'resolved', notes: 'widget e2e' });
    await agentWait((x) => x.type === 'contact_state' && x.contact_id === contactId && x.state === 'closed', 'closed', wmark).catch(() => {});
    await agentSend({ type: 'set_state', state: 'logged_out' });
    await agentWait((x) => x.type === 'agent_state' && x.state.state === 'logged_out', 'logged out', wmark);
    verified(`end (with confirmation) → chat_ended customer at the agent; closing card; transcript ${href.split('?')[0]} downloads with the messages (widget-ended.png)`);
  });

  await step('nobody available: leave a message and request a callback, with references', async () => {
    await until(async () => {
      const r = await fetch(`${HUB_URL}/chat/status?topic=support`);
      return r.ok && (await r.json()).open === false;
    }, '/chat/status open:false once the agent logged out (another agent is logged in?)', 90_000);
    const f = fl();
    await f.locator('#new-chat').click();
    await f.locator('#offline-form').waitFor({ state: 'visible' });
    assert.equal((await storedState()).state.session, null, 'a new chat clears the stored session');
    assert.equal((await f.locator('#offline-heading').innerText()).trim(), '暂时没有客服可以接待');
    assert.equal(await f.locator('#tab-message').getAttribute('aria-selected'), 'true');
    assert.equal(await f.locator('#f-email').inputValue(), CUSTOMER.email, 'the details carry over');
    await f.locator('#f-message').fill('请把 11 月的发票寄到公司，谢谢。');
    await page.screenshot({ path: shot('offline') });
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/chat/messages') && r.request().method() === 'POST'),
      f.locator('#offline-form button[type="submit"]').click(),
    ]);
    assert.equal(res.status(), 201);
    const body = await res.json();
    await f.locator('#done-reference').waitFor({ state: 'visible' });
    assert.equal((await f.locator('#done-reference').innerText()).trim(), body.reference);
    assert.match(body.reference, /^C-\d{6}$/);
    assert.equal((await f.locator('#done-heading').innerText()).trim(), '留言已收到');
    await page.screenshot({ path: shot('message-done') });

    await f.locator('.done .btn').click();
    await f.locator('#tab-callback').click();
    await f.locator('#offline-form[data-kind="callback"]').waitFor({ state: 'visible' });
    await f.locator('#f-phone').fill('');
    await f.locator('#offline-form button[type="submit"]').click();
    assert.equal((await f.locator('[data-field="phone"] .field-error').innerText()).trim(), '请填写回电号码。');
    await f.locator('#f-phone').fill('138 0013 8001');
    await f.locator('#f-note').fill('工作日下午');
    const [cres] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/chat/callbacks') && r.request().method() === 'POST'),
      f.locator('#offline-form button[type="submit"]').click(),
    ]);
    assert.equal(cres.status(), 201);
    const cbody = await cres.json();
    assert.equal(JSON.parse(cres.request().postData()).phone, '138 0013 8001');
    await f.locator('#done-reference').waitFor({ state: 'visible' });
    assert.equal((await f.locator('#done-reference').innerText()).trim(), cbody.reference);
    assert.equal((await f.locator('#done-heading').innerText()).trim(), '回电预约成功');
    assert.match(await f.locator('.done').innerText(), /138 0013 8001/);
    await page.screenshot({ path: shot('callback-done') });
    verified(`no agent: leave-a-message → ${body.reference}, callback (phone required) → ${cbody.reference}, each confirmed with its reference (widget-offline.png, widget-message-done.png, widget-callback-done.png)`);
  });

  await step('the language switch changes the window\'s language', async () => {
    const f = fl();
    await f.locator('.done .btn').click();
    await f.locator('#lang-select').selectOption('en');
    assert.equal((await f.locator('#offline-heading').innerText()).trim(), 'No one is available to chat right now');
    assert.equal(await chatFrame().evaluate(() => document.documentElement.lang), 'en');
    await f.locator('#lang-select').selectOption('zh-TW');
    assert.equal((await f.locator('#offline-heading').innerText()).trim(), '目前沒有客服人員可以接待');
    assert.equal((await f.locator('#tab-message').innerText()).trim(), '留言');
    await f.locator('#lang-select').selectOption('zh-CN');
    verified('language switch: en and zh-TW texts, html lang follows');
  });

  await step('a phone-sized screen: the chat fills it, and closes again', async () => {
    const mobile = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2, locale: 'zh-CN' });
    const mp = await mobile.newPage();
    watch(mp, 'mobile');
    await mp.goto(hostUrl);
    const l = mp.locator('contact-hub-chat .launcher');
    await l.waitFor({ state: 'visible' });
    await mp.screenshot({ path: shot('mobile-closed') });
    await l.tap();
    const frame = mp.frameLocator('contact-hub-chat iframe');
    await frame.locator('#offline-form').waitFor({ state: 'visible' });
    await sleep(400); // the opening transition
    const box = await mp.locator('contact-hub-chat iframe').boundingBox();
    assert.deepEqual(box, { x: 0, y: 0, width: 375, height: 667 }, 'full screen below 520 px');
    assert.equal(await l.isVisible(), false, 'the launcher hides under the full-screen chat');
    const overflow = await mp.frames().find((x) => x.url().includes('/chat/frame')).evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'nothing wider than the screen');
    await mp.screenshot({ path: shot('mobile') });
    await frame.locator('#close-btn').tap();
    await l.waitFor({ state: 'visible' });
    assert.equal(await l.getAttribute('aria-expanded'), 'false');
    await mobile.close();
    verified('375×667: the chat window is exactly the screen, the launcher hides, the header button closes it (widget-mobile.png)');
  });

  await step('no page errors, dialogs or CSP violations', async () => {
    assert.deepEqual(problems, []);
    verified('no uncaught errors, no dialogs, no Content-Security-Policy reports in the host page, the frame or the agent page');
  });
});
