// Browser end-to-end test of web chat in the agent console, in a real Chromium driven by
// playwright-core, against a real hub: the customer chats in the real widget (/chat/example, the
// sample shop page that embeds /chat/widget.js; its window speaks /chat/ws), the agent answers
// in the console's chat pane, and a colleague takes a transferred chat in their own console.
//
// Needs a running hub with the demo data (`contact-hub demo`: the customer 王小明, VIP, email
// wang.xiaoming@example.cn, with archive records and history; the agents alice and bob) and its
// logins:
//   HUB_URL=http://127.0.0.1:18282 AGENT_USER=alice AGENT_PASS=... \
//   SUPERVISOR_USER=sophie SUPERVISOR_PASS=... SECOND_AGENT_USER=bob SECOND_AGENT_PASS=... npm test
// Optional: CHROMIUM=/path/to/chromium (default /usr/bin/chromium).
//
// It never passes without checking: a missing HUB_URL, account or Chromium is a failure that
// says what to set or install. Screenshots of both sides go to tests/e2e/artifacts/chat-*.png.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HUB_URL = (process.env.HUB_URL || '').replace(/\/+$/, '');
const AGENT_USER = process.env.AGENT_USER || '';
const AGENT_PASS = process.env.AGENT_PASS || '';
const SUPERVISOR_USER = process.env.SUPERVISOR_USER || '';
const SUPERVISOR_PASS = process.env.SUPERVISOR_PASS || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');

const RUN = crypto.randomBytes(4).toString('hex');
const CUSTOMER_A = { name: '王小明', email: 'wang.xiaoming@example.cn' }; // a demo customer (VIP)
const VISITOR_B = { name: '张伟', email: `zhang.wei.${RUN}@example.net`, phone: null }; // unknown to the archive
const XSS = '<img src=x onerror=alert(1)>';
const CANNED_TITLE = `e2e 问候 ${RUN}`;
const CANNED_BODY = '您好 {customer.name}，我是 {agent.name}，您的工单号是 {contact.id}。';

/** A small real PNG (a blue-to-amber gradient), made here so the test ships no binary file. */
function makePng(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y += 1) {
    for (let x = 0; x < w; x += 1) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      const f = x / (w - 1);
      raw[o] = Math.round(37 + f * (245 - 37));
      raw[o + 1] = Math.round(99 + f * (158 - 99));
      raw[o + 2] = Math.round(235 - f * (235 - 11));
    }
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function verified(what) {
  console.log(`verified: ${what}`);
}

async function rest(method, p, token, body) {
  let res;
  try {
    res = await fetch(HUB_URL + p, {
      method,
      headers: Object.assign({ Accept: 'application/json' },
        token ? { Authorization: `Bearer ${token}` } : {},
        body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    assert.fail(`cannot reach ${HUB_URL}${p} (is the hub running?): ${e.message}`);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: res.status, json, text };
}

test('web chat: customer and agent end to end in a real browser', { timeout: 420_000 }, async (t) => {
  assert.ok(HUB_URL, 'HUB_URL is not set. Start the hub (e.g. contact-hub demo) and run e.g. '
    + 'HUB_URL=http://127.0.0.1:18282 AGENT_USER=alice AGENT_PASS=... SUPERVISOR_USER=sophie SUPERVISOR_PASS=... npm test');
  assert.ok(AGENT_USER && AGENT_PASS, 'AGENT_USER and AGENT_PASS must name an agent account (contact-hub demo prints them)');
  assert.ok(SUPERVISOR_USER && SUPERVISOR_PASS, 'SUPERVISOR_USER and SUPERVISOR_PASS must name a supervisor (contact-hub demo prints sophie)');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}. Install it with `
    + '"apt-get update && apt-get install -y chromium", or set CHROMIUM=/path/to/chromium');
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  const contexts = [];
  async function open(viewport, locale, opts) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'contact-hub-e2e-'));
    const context = await chromium.launchPersistentContext(dir, Object.assign({
      executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS, viewport, locale, timezoneId: 'Asia/Shanghai',
    }, opts || {}));
    contexts.push({ context, dir });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(15_000);
    return { context, page };
  }
  t.after(async () => {
    for (const { context, dir } of contexts) {
      await context.close().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const pageErrors = [];
  const { page: agent } = await open({ width: 1280, height: 800 }, 'zh-CN');
  agent.on('pageerror', (e) => pageErrors.push(`console: ${String(e && e.stack || e)}`));
  agent.on('dialog', (d) => { pageErrors.push(`console: unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });

  // The agent socket goes through a pass-through route, so that the test can lose one send on
  // the way and cut the socket (the console must send it again with the same client_id), and
  // deliver a send twice (the hub must store it once).
  const agentFrames = [];
  const sentByConsole = [];
  const route = { dropSendsOf: null, duplicateSendsOf: null, sockets: [] };
  await agent.routeWebSocket(/\/api\/v1\/agent\/ws$/, (ws) => {
    const server = ws.connectToServer();
    route.sockets.push(ws);
    ws.onMessage((m) => {
      let f = null;
      try { f = JSON.parse(m); } catch { /* not JSON */ }
      if (f) sentByConsole.push(f);
      if (f && f.type === 'chat_send' && route.dropSendsOf === f.text) return; // lost on the way
      server.send(m);
      if (f && f.type === 'chat_send' && route.duplicateSendsOf === f.text) server.send(m);
    });
    server.onMessage((m) => {
      try { agentFrames.push(JSON.parse(m)); } catch { /* not JSON */ }
      ws.send(m);
    });
    ws.onClose((code, reason) => server.close({ code, reason }));
    server.onClose((code, reason) => ws.close({ code, reason }));
  });

  async function waitFor(what, fn, timeoutMs) {
    const deadline = Date.now() + (timeoutMs || 15_000);
    let last;
    for (;;) {
      try {
        last = await fn();
        if (last) return last;
      } catch (e) {
        last = e;
      }
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
      await sleep(100);
    }
  }

  // Offers that are not this test's chats (the demo's sample traffic) are declined at once.
  const ours = new Set();
  const strayOffers = [];
  const declineStrays = setInterval(() => {
    for (const f of agentFrames) {
      if (f.type !== 'offer' || f._seen) continue;
      const page = f.chat && f.chat.visitor && f.chat.visitor.page;
      if (page && page.includes(RUN)) { f._seen = true; continue; }
      f._seen = true;
      strayOffers.push(f.contact.id);
      agent.locator(`li.offer-card[data-contact-id="${f.contact.id}"] [data-action="reject"]`).click({ timeout: 5000 }).catch(() => {});
    }
  }, 200);
  t.after(() => clearInterval(declineStrays));

  // The customer: the demo shop page with the real widget; its chat window is an iframe.
  const customerFrames = new Map(); // page -> every JSON frame the hub sent to its chat socket
  const cf = (page) => page.frameLocator('contact-hub-chat iframe');
  const chatFrameOf = (page) => page.frames().find((f) => f.url().includes('/chat/frame'));
  async function customerPage(who) {
    const { page } = await open({ width: 1100, height: 760 }, 'zh-CN');
    const frames = [];
    customerFrames.set(page, frames);
    page.on('websocket', (ws) => {
      if (!ws.url().includes('/chat/ws')) return;
      ws.on('framereceived', (f) => {
        try { frames.push(JSON.parse(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8'))); } catch { /* not JSON */ }
      });
    });
    page.on('pageerror', (e) => pageErrors.push(`customer ${who}: ${String(e && e.stack || e)}`));
    page.on('dialog', (d) => { pageErrors.push(`customer ${who}: unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
    const res = await page.goto(`${HUB_URL}/chat/example?e2e=${RUN}-${who}`);
    assert.equal(res.status(), 200, 'the demo shop page with the widget');
    await page.locator('contact-hub-chat .launcher').click();
    await cf(page).locator('#prechat-form').waitFor({ state: 'visible' });
    return page;
  }
  async function customerStart(page, form, text) {
    const f = cf(page);
    await f.locator('#f-name').fill(form.name);
    await f.locator('#f-email').fill(form.email);
    await f.locator('#f-topic').selectOption(form.topic);
    await f.locator('#f-message').fill(text);
    await f.locator('#prechat-submit').click();
  }
  async function customerSend(page, text) {
    const box = cf(page).locator('#composer-input');
    await box.click();
    await box.fill(text);
    await box.press('Enter');
  }
  /** What the customer's window shows: the stored messages, in order. */
  async function customerState(page) {
    const fr = chatFrameOf(page);
    if (!fr) return { messages: [], ended: false };
    return fr.evaluate(() => ({
      messages: Array.from(document.querySelectorAll('#msg-list li.msg')).filter((li) => li.dataset.seq).map((li) => ({
        seq: Number(li.dataset.seq), from: li.dataset.from, status: li.dataset.status || null, event: li.dataset.event || null,
        text: (li.querySelector('.msg-text, .msg-system-text, .file-name') || {}).textContent || '',
      })),
      ended: !!document.getElementById('ended-card'),
    }));
  }
  async function customerGot(page, pred, what) {
    return waitFor(`the customer to see ${what}`, async () => {
      const st = await customerState(page);
      return st.messages.find(pred) || null;
    });
  }

  // What the console shows of one chat: its transcript, message by message, in order.
  const pane = (id) => `.chat-pane[data-contact-id="${id}"]`;
  async function agentTranscript(id) {
    return agent.locator(`${pane(id)} .transcript .msg`).evaluateAll((els) => els.map((el) => ({
      seq: el.dataset.seq ? +el.dataset.seq : null, from: el.dataset.from, status: el.dataset.status || null,
      text: (el.querySelector('.msg-text') || el.querySelector('.msg-system-text') || {}).textContent
        || (el.querySelector('.att-image img') ? el.querySelector('.att-image img').alt : '')
        || (el.querySelector('.att-file-name') ? el.querySelector('.att-file-name').textContent : ''),
    })));
  }
  async function agentShows(id, pred, what, timeoutMs) {
    return waitFor(`the console to show ${what}`, async () => (await agentTranscript(id)).find(pred) || null, timeoutMs);
  }
  async function shot(page, name) {
    await page.screenshot({ path: path.join(ARTIFACTS, name) });
  }

  let broken = false;
  const step = (name, fn) => t.test(name, { skip: broken ? 'an earlier step failed' : false }, async () => {
    try {
      await fn();
    } catch (e) {
      broken = true;
      await agent.screenshot({ path: path.join(ARTIFACTS, 'chat-failure-console.png') }).catch(() => {});
      console.log('step failed; screenshot in artifacts/chat-failure-console.png');
      throw e;
    }
  });

  let supToken = '';
  let chatA = null; // { contactId, conversationId }
  let chatB = null;
  let custA = null;
  let custB = null;
  let agentName = '';

  await step('a supervisor provides a canned response with placeholders', async () => {
    const login = await rest('POST', '/api/v1/auth/login', null, { username: SUPERVISOR_USER, password: SUPERVISOR_PASS });
    assert.equal(login.status, 200, `supervisor login: ${login.text}`);
    supToken = login.json.token;
    const made = await rest('POST', '/api/v1/canned-responses', supToken, { title: CANNED_TITLE, body: CANNED_BODY, language: 'zh-CN' });
    assert.equal(made.status, 201, `create canned response: ${made.text}`);
    verified(`canned response "${CANNED_TITLE}" created by ${SUPERVISOR_USER}`);
  });

  await step('the agent logs in (zh-CN) and goes available', async () => {
    await agent.goto(HUB_URL + '/');
    await agent.locator('#login-view').waitFor({ state: 'visible' });
    await agent.fill('#login-username', AGENT_USER);
    await agent.fill('#login-password', AGENT_PASS);
    await agent.click('#login-submit');
    await agent.locator('#console-view').waitFor({ state: 'visible' });
    await agent.locator('#conn-indicator[data-conn="connected"]').waitFor();
    assert.equal(await agent.evaluate(() => document.documentElement.lang), 'zh-CN');
    const hello = await waitFor('hello', () => agentFrames.find((f) => f.type === 'hello'));
    agentName = hello.agent.display_name;
    // Any work left in hand from an earlier run is finished first.
    for (const item of hello.contacts || []) {
      assert.fail(`the agent already holds contact ${item.contact.id} (${item.state}); run against a fresh demo hub`);
    }
    await agent.locator('#state-select:not([disabled])').waitFor();
    await agent.selectOption('#state-select', 'available');
    await waitFor('agent_state available', () => agentFrames.find((f) => f.type === 'agent_state' && f.state.state === 'available'));
    verified(`${AGENT_USER} (${agentName}) signed in in zh-CN and is available`);
  });

  await step('a known customer opens a chat in Chinese: the offer shows the visitor, the first message and the screen-pop', async () => {
    custA = await customerPage('a');
    await customerStart(custA, { name: CUSTOMER_A.name, email: CUSTOMER_A.email, topic: 'support' },
      '你好，我昨天收到的墨盒漏墨了，外包装也破了。');
    const started = await waitFor('started', () => customerFrames.get(custA).find((f) => f.type === 'started'));
    assert.equal(started.state, 'queued');
    const offer = await waitFor('the chat offer', () => agentFrames.find((f) => f.type === 'offer' && f.chat && f.chat.visitor && String(f.chat.visitor.page).includes(`${RUN}-a`)), 30_000);
    chatA = { contactId: offer.contact.id, conversationId: offer.chat.conversation_id };
    ours.add(chatA.contactId);
    assert.equal(offer.chat.conversation_id, started.conversation_id, 'the offer names the customer\'s conversation');
    assert.equal(offer.screen_pop && offer.screen_pop.customer && offer.screen_pop.customer.name, CUSTOMER_A.name, 'matched to the demo customer by email');
    const card = agent.locator(`li.offer-card[data-contact-id="${chatA.contactId}"]`);
    await card.waitFor();
    const cardText = await card.innerText();
    assert.ok(cardText.includes(CUSTOMER_A.email), 'offer card shows the visitor\'s email');
    assert.ok(cardText.includes('客户服务'), 'offer card shows the topic');
    assert.ok(cardText.includes('/chat/example'), 'offer card shows the page');
    assert.ok(cardText.includes('墨盒漏墨了'), 'offer card shows the first message');
    // The screen-pop in the main area: the customer's card with tier and alerts.
    await agent.locator('#customer-card #customer-name', { hasText: CUSTOMER_A.name }).waitFor();
    assert.ok(await agent.locator('#customer-card .tier-badge[data-tier="vip"]').isVisible(), 'VIP badge in the screen-pop');
    await shot(agent, 'chat-01-offer-console.png');
    await shot(custA, 'chat-01-offer-customer.png');
    verified(`offer for chat contact ${chatA.contactId} (conversation ${chatA.conversationId}) with visitor, first message and screen-pop`);
  });

  await step('accept: the chat pane opens with header, transcript and the screen-pop beside it', async () => {
    await agent.click(`li.offer-card[data-contact-id="${chatA.contactId}"] [data-action="accept"]`);
    await agent.locator(`${pane(chatA.contactId)}`).waitFor({ state: 'visible' });
    assert.equal(await agent.evaluate(() => location.hash), `#chat/${chatA.contactId}`);
    const p = agent.locator(pane(chatA.contactId));
    assert.equal(await p.locator('.chat-name').innerText(), CUSTOMER_A.name);
    assert.ok(await p.locator('.chat-head .tier-badge[data-tier="vip"]').isVisible(), 'tier badge in the chat header');
    assert.equal((await p.locator('.chat-topic').innerText()).trim(), '客户服务');
    // The customer hears that an agent joined; the console shows the same notice.
    await customerGot(custA, (m) => m.from === 'system' && m.text.includes(agentName), 'the agent_joined notice');
    await agentShows(chatA.contactId, (m) => m.from === 'customer' && m.text.includes('墨盒漏墨了'), 'the first message');
    await agentShows(chatA.contactId, (m) => m.from === 'system', 'the agent_joined notice');
    // Beside the transcript: tier, balance, alerts, recent contacts on every channel.
    const side = p.locator('.chat-side');
    assert.equal(await side.locator('.side-name').innerText(), CUSTOMER_A.name);
    assert.ok((await side.locator('[data-role="balance"]').innerText()).match(/\d/), 'balance shown');
    assert.ok(await side.locator('.alert[data-kind="document_expired"]').count() >= 1, 'expired document alert shown');
    const channels = await side.locator('.timeline-item').evaluateAll((els) => [...new Set(els.map((e) => e.dataset.channel))]);
    for (const ch of ['voice', 'email', 'chat']) assert.ok(channels.includes(ch), `recent contacts include ${ch} (got ${channels})`);
    await shot(agent, 'chat-02-connected-console.png');
    await shot(custA, 'chat-02-connected-customer.png');
    verified('chat pane: name, VIP badge, topic, agent_joined on both sides, side card with balance, document alert and voice/email/chat history');
  });

  await step('messages both ways in Chinese; the IME composition never sends on Enter; read receipts', async () => {
    await customerSend(custA, '订单号是 A-10086，请帮我看看。');
    await agentShows(chatA.contactId, (m) => m.text === '订单号是 A-10086，请帮我看看。', 'the customer\'s message');
    const input = agent.locator(`${pane(chatA.contactId)} textarea[data-role="composer"]`);
    await input.click();
    // A Chinese input method: composing "nihao" and pressing Enter picks the characters, it must not send.
    const cdp = await agent.context().newCDPSession(agent);
    const before = sentByConsole.filter((f) => f.type === 'chat_send').length;
    await cdp.send('Input.imeSetComposition', { text: 'ni hao', selectionStart: 6, selectionEnd: 6 });
    // The composition is in the field: an Enter that sent would send it.
    assert.equal(await input.inputValue(), 'ni hao', 'the IME composition is in the composer');
    await input.evaluate((el) => el.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', keyCode: 229, which: 229, isComposing: true, bubbles: true, cancelable: true })));
    await input.evaluate((el) => el.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', keyCode: 13, which: 13, bubbles: true, cancelable: true })));
    await sleep(300);
    assert.equal(sentByConsole.filter((f) => f.type === 'chat_send').length, before, 'Enter during an IME composition must not send');
    await cdp.send('Input.insertText', { text: '您好' }); // commits the composition
    await sleep(50);
    await input.pressSequentially('，王先生，我来帮您查一下。');
    assert.equal(await input.inputValue(), '您好，王先生，我来帮您查一下。');
    await input.press('Shift+Enter');
    await input.pressSequentially('请稍等。');
    assert.equal(await input.inputValue(), '您好，王先生，我来帮您查一下。\n请稍等。', 'Shift+Enter is a new line');
    await input.press('Enter');
    const sent = await waitFor('chat_send', () => sentByConsole.find((f) => f.type === 'chat_send' && f.text.startsWith('您好，王先生')));
    assert.match(sent.client_id, /^[A-Za-z0-9._-]{1,64}$/);
    assert.equal(await input.inputValue(), '', 'the composer is empty after sending');
    const got = await customerGot(custA, (m) => m.from === 'agent' && m.text === '您好，王先生，我来帮您查一下。\n请稍等。', 'the agent\'s reply');
    // Sent at once; read as soon as the customer's window (with the focus) shows it.
    await agentShows(chatA.contactId, (m) => m.from === 'agent' && m.seq === got.seq && (m.status === 'sent' || m.status === 'read'), 'the reply as sent');
    // The console sent read receipts for what it showed; the customer reads the reply.
    await waitFor('chat_read from the console', () => sentByConsole.find((f) => f.type === 'chat_read' && f.contact_id === chatA.contactId));
    await cf(custA).locator('#composer-input').click(); // the window has the focus: it confirms what it shows
    await agentShows(chatA.contactId, (m) => m.seq === got.seq && m.status === 'read', 'the reply as read');
    // Typing both ways.
    await cf(custA).locator('#composer-input').pressSequentially('我再', { delay: 40 });
    await agent.locator(`${pane(chatA.contactId)} .typing-line:not([hidden])`).waitFor();
    await input.click();
    await input.pressSequentially('好', { delay: 40 });
    await cf(custA).locator('#typing').waitFor({ state: 'visible' });
    await shot(agent, 'chat-03-messages-console.png');
    await shot(custA, 'chat-03-messages-customer.png');
    await input.fill('');
    await cf(custA).locator('#composer-input').fill('');
    verified(`Chinese both ways; IME Enter (isComposing/229/composition events) did not send; Shift+Enter newline; sent → read (seq ${got.seq}); typing both ways`);
  });

  await step('attachments: an image shows as a thumbnail, a file as a chip; both download', async () => {
    const png = makePng(96, 64);
    const txt = Buffer.from('订单 A-10086\n破损：1 盒\n', 'utf8');
    const fileInput = cf(custA).locator('#file-input');
    await fileInput.setInputFiles({ name: '墨盒照片.png', mimeType: 'image/png', buffer: png });
    const up = { body: await customerGot(custA, (m) => m.text === '墨盒照片.png', 'the uploaded image') };
    await fileInput.setInputFiles({ name: '破损说明.txt', mimeType: 'text/plain', buffer: txt });
    const up2 = { body: await customerGot(custA, (m) => m.text === '破损说明.txt', 'the uploaded file') };
    const p = agent.locator(pane(chatA.contactId));
    const img = p.locator(`.msg[data-seq="${up.body.seq}"] a.att-image img`);
    await img.waitFor();
    await waitFor('the thumbnail to load', () => img.evaluate((el) => el.complete && el.naturalWidth === 96));
    const chip = p.locator(`.msg[data-seq="${up2.body.seq}"] a.att-file`);
    await chip.waitFor();
    assert.ok((await chip.innerText()).includes('破损说明.txt'), 'file chip shows the name');
    const href = await chip.getAttribute('href');
    assert.match(href, /^\/api\/v1\/attachments\/\d+$/);
    const [download] = await Promise.all([agent.waitForEvent('download'), chip.click()]);
    assert.equal(download.suggestedFilename(), '破损说明.txt');
    const saved = fs.readFileSync(await download.path());
    assert.deepEqual(saved, txt, 'the downloaded file is the uploaded one');
    await shot(agent, 'chat-04-attachments-console.png');
    verified(`image thumbnail (96x64 from /api/v1/attachments) and file chip; download "破损说明.txt" byte-identical`);
  });

  await step('markup in a message shows as text on both sides', async () => {
    await customerSend(custA, XSS);
    const shown = await agentShows(chatA.contactId, (m) => m.from === 'customer' && m.text === XSS, 'the customer\'s markup as text');
    assert.ok(shown);
    const input = agent.locator(`${pane(chatA.contactId)} textarea[data-role="composer"]`);
    await input.fill(XSS);
    await input.press('Enter');
    await customerGot(custA, (m) => m.from === 'agent' && m.text === XSS, 'the agent\'s markup as text');
    await agentShows(chatA.contactId, (m) => m.from === 'agent' && m.text === XSS && m.status !== 'sending', 'the agent\'s markup, sent');
    const imgs = await agent.locator(`${pane(chatA.contactId)} .transcript img:not(.att-image img)`).count();
    assert.equal(imgs, 0, 'no <img> element was made from message text (only attachment thumbnails)');
    const custImgs = await cf(custA).locator('#msg-list img:not(.file-thumb)').count();
    assert.equal(custImgs, 0, 'no <img> made from text on the customer side');
    const custOwn = cf(custA).locator('li.msg-own .msg-text', { hasText: 'onerror' });
    assert.equal(await custOwn.first().textContent(), XSS, 'the customer\'s own markup shows as text');
    await sleep(300);
    assert.deepEqual(pageErrors, [], 'no script ran, no dialog opened');
    verified(`"${XSS}" shown as text in the console and to the customer; no <img>, no alert`);
  });

  await step('a canned response with {customer.name} filled in', async () => {
    const p = agent.locator(pane(chatA.contactId));
    await p.locator('[data-action="canned"]').click();
    const search = p.locator('[data-role="canned-search"]');
    await search.waitFor();
    await search.fill(RUN);
    const item = p.locator('.canned-item', { hasText: CANNED_TITLE });
    await item.waitFor();
    await shot(agent, 'chat-05-canned-console.png');
    await item.click();
    const want = `您好 ${CUSTOMER_A.name}，我是 ${agentName}，您的工单号是 ${chatA.contactId}。`;
    assert.equal(await p.locator('textarea[data-role="composer"]').inputValue(), want, 'placeholders filled in the composer');
    await p.locator('[data-action="send"]').click();
    await customerGot(custA, (m) => m.from === 'agent' && m.text === want, 'the canned response');
    verified(`canned response sent as "${want}"`);
  });

  await step('an internal note the customer never sees', async () => {
    const p = agent.locator(pane(chatA.contactId));
    await p.locator('.mode-tab[data-mode="note"]').click();
    assert.ok(await p.locator('form.composer.is-note').isVisible(), 'the composer shows note mode');
    const note = 'VIP 客户，墨盒免费补发，运费我们承担。';
    await p.locator('textarea[data-role="composer"]').fill(note);
    await p.locator('textarea[data-role="composer"]').press('Enter');
    const sentNote = await waitFor('chat_note', () => sentByConsole.find((f) => f.type === 'chat_note' && f.text === note));
    assert.ok(sentNote.client_id);
    await agentShows(chatA.contactId, (m) => m.from === 'note' && m.text === note && m.status === 'note', 'the note');
    const label = await p.locator('.msg-note .note-label').first().innerText();
    assert.equal(label.trim(), '内部备注');
    await p.locator('.mode-tab[data-mode="reply"]').click();
    await p.locator('textarea[data-role="composer"]').fill('已为您安排免费补发，2–3 个工作日送达。');
    await p.locator('textarea[data-role="composer"]').press('Enter');
    await customerGot(custA, (m) => m.text.startsWith('已为您安排免费补发'), 'the message after the note');
    const cs = await customerState(custA);
    assert.ok(!cs.messages.some((m) => m.text === note), 'the customer never got the note');
    assert.ok(!JSON.stringify(customerFrames.get(custA)).includes(note), 'no frame to the customer carried the note');
    await shot(agent, 'chat-06-note-console.png');
    await shot(custA, 'chat-06-note-customer.png');
    verified('internal note shown amber and labelled 内部备注; not in any frame the customer received');
  });

  await step('a second concurrent chat from an unknown visitor; unread badge on the other chat', async () => {
    custB = await customerPage('b');
    await customerStart(custB, { name: VISITOR_B.name, email: VISITOR_B.email, topic: 'support' }, '请问你们周末有人值班吗？');
    const offer = await waitFor('the second offer', () => agentFrames.find((f) => f.type === 'offer' && f.chat && f.chat.visitor && String(f.chat.visitor.page).includes(`${RUN}-b`)), 30_000);
    chatB = { contactId: offer.contact.id, conversationId: offer.chat.conversation_id };
    ours.add(chatB.contactId);
    assert.equal(offer.screen_pop, null, 'an unknown visitor has no screen-pop');
    const card = agent.locator(`li.offer-card[data-contact-id="${chatB.contactId}"]`);
    await card.waitFor();
    assert.ok((await card.innerText()).includes(VISITOR_B.name));
    await shot(agent, 'chat-07-second-offer-console.png');
    await card.locator('[data-action="accept"]').click();
    await agent.locator(pane(chatB.contactId)).waitFor({ state: 'visible' });
    await agentShows(chatB.contactId, (m) => m.text === '请问你们周末有人值班吗？', 'the second chat\'s first message');
    // Chat A is not on screen: its new messages count as unread.
    await customerSend(custA, '另外，发票也需要重新开一张。');
    await customerSend(custA, '抬头是北京华星贸易有限公司。');
    const badge = agent.locator(`li.chat-card[data-contact-id="${chatA.contactId}"] [data-role="unread"]`);
    await waitFor('unread badge 2', async () => (await badge.isVisible()) && (await badge.innerText()).trim() === '2');
    const waiting = await agent.locator(`li.chat-card[data-contact-id="${chatA.contactId}"] [data-role="waiting"]`).innerText();
    assert.ok(waiting.includes('客户等待'), `who waits on whom: "${waiting}"`);
    const preview = await agent.locator(`li.chat-card[data-contact-id="${chatA.contactId}"] [data-role="preview"]`).innerText();
    assert.ok(preview.includes('北京华星贸易'), `last message preview: "${preview}"`);
    // A draft in chat B survives switching to A and back.
    const inputB = agent.locator(`${pane(chatB.contactId)} textarea[data-role="composer"]`);
    await inputB.fill('周末 9:00–18:00 有人值班');
    await shot(agent, 'chat-08-unread-console.png');
    await shot(custB, 'chat-08-unread-customer-b.png');
    await agent.locator(`li.chat-card[data-contact-id="${chatA.contactId}"] .acd-main`).click();
    await agent.locator(pane(chatA.contactId)).waitFor({ state: 'visible' });
    await waitFor('badge cleared', async () => !(await badge.isVisible()));
    await agentShows(chatA.contactId, (m) => m.text === '抬头是北京华星贸易有限公司。', 'the unread messages');
    await agent.locator(`li.chat-card[data-contact-id="${chatB.contactId}"] .acd-main`).click();
    assert.equal(await inputB.inputValue(), '周末 9:00–18:00 有人值班', 'the draft is kept');
    await inputB.press('Enter');
    await customerGot(custB, (m) => m.from === 'agent' && m.text === '周末 9:00–18:00 有人值班', 'the reply in chat B');
    verified(`two chats (${chatA.contactId}, ${chatB.contactId}); unread badge 2 with preview and "customer waiting"; cleared on switch; draft kept`);
  });

  await step('an unknown visitor becomes a customer record from the pre-chat form', async () => {
    const p = agent.locator(pane(chatB.contactId));
    const form = p.locator('[data-role="create-customer"] form');
    await form.waitFor();
    assert.equal(await form.locator('input[name="name"]').inputValue(), VISITOR_B.name, 'prefilled name');
    assert.equal(await form.locator('input[name="email"]').inputValue(), VISITOR_B.email, 'prefilled email');
    await shot(agent, 'chat-09-unknown-visitor-console.png');
    await form.locator('[data-action="create-customer"]').click();
    await p.locator('[data-role="side-customer"] .side-name', { hasText: VISITOR_B.name }).waitFor();
    const found = await rest('GET', '/api/v1/customers?q=' + encodeURIComponent(VISITOR_B.email), supToken);
    assert.equal(found.status, 200);
    const cust = (found.json.customers || []).find((c) => c.name === VISITOR_B.name);
    assert.ok(cust, 'the new customer is in the archive');
    const contact = await rest('GET', `/api/v1/contacts/${chatB.contactId}`, supToken);
    assert.equal(contact.json.contact.customer_id, cust.id, 'the chat contact is linked to the new customer');
    assert.equal((await agent.locator(`li.chat-card[data-contact-id="${chatB.contactId}"] .acd-name`).innerText()).trim(), VISITOR_B.name);
    await shot(agent, 'chat-10-created-customer-console.png');
    verified(`customer ${cust.id} created from the pre-chat form and linked to conversation ${chatB.conversationId}`);
  });

  await step('the customer reloads mid-conversation and loses nothing', async () => {
    await agent.locator(`li.chat-card[data-contact-id="${chatA.contactId}"] .acd-main`).click();
    const before = (await customerState(custA)).messages;
    assert.ok(before.length >= 8, `a real conversation before the reload (${before.length} messages)`);
    const resumedBefore = customerFrames.get(custA).filter((f) => f.type === 'resumed').length;
    await custA.reload();
    await waitFor('resumed', () => customerFrames.get(custA).filter((f) => f.type === 'resumed').length > resumedBefore);
    await waitFor('the chat window again', async () => {
      if (chatFrameOf(custA) && await custA.locator('contact-hub-chat iframe').isVisible()) return true;
      await custA.locator('contact-hub-chat .launcher').click().catch(() => {});
      return false;
    });
    await waitFor('every message again', async () => (await customerState(custA)).messages.length >= before.length);
    const after = (await customerState(custA)).messages;
    assert.deepEqual(after.slice(0, before.length), before, 'the same messages in the same order after the reload');
    // The console shows exactly what the customer sees (plus its notes), in the same order.
    const shown = (await agentTranscript(chatA.contactId)).filter((m) => m.from !== 'note');
    assert.deepEqual(shown.map((m) => [m.seq, m.from, m.text]), after.map((m) => [m.seq, m.from, m.from === 'system' ? shown.find((s) => s.seq === m.seq)?.text : m.text]),
      'console and customer show the same messages in the same order');
    for (const m of after.filter((x) => x.from !== 'system')) {
      assert.equal(shown.find((s) => s.seq === m.seq).text, m.text, `message ${m.seq} reads the same on both sides`);
    }
    // The console saw the customer go and come back.
    const presence = agentFrames.filter((f) => f.type === 'chat_presence' && f.contact_id === chatA.contactId).map((f) => f.online);
    assert.ok(presence.includes(false) && presence[presence.length - 1] === true, `chat_presence offline then online (got ${presence})`);
    await agent.locator(`${pane(chatA.contactId)} .presence[data-online="true"]`).waitFor();
    await customerSend(custA, '刷新后还能继续聊吗？');
    await agentShows(chatA.contactId, (m) => m.text === '刷新后还能继续聊吗？', 'a message after the reload');
    await shot(custA, 'chat-11-after-reload-customer.png');
    await shot(agent, 'chat-11-after-reload-console.png');
    verified(`customer reload: ${after.length} messages, same seq order and text on both sides`);
  });

  await step('a send lost on the way is sent again with the same client_id after a reconnect, and stored once', async () => {
    const text = '网络断开后重发的消息，只应出现一次。';
    const from = sentByConsole.length;
    route.dropSendsOf = text;
    const input = agent.locator(`${pane(chatA.contactId)} textarea[data-role="composer"]`);
    await input.fill(text);
    await input.press('Enter');
    const first = await waitFor('the send', () => sentByConsole.slice(from).find((f) => f.type === 'chat_send' && f.text === text));
    await sleep(800);
    await agentShows(chatA.contactId, (m) => m.text === text && m.status === 'sending', 'the message still sending');
    assert.ok(!(await customerState(custA)).messages.some((m) => m.text === text), 'the hub never got it');
    await shot(agent, 'chat-12-sending-console.png');
    // The socket drops; the console reconnects, gets hello (without the message) and sends it
    // again — delivered twice here, as if the first copy had arrived after all.
    route.dropSendsOf = null;
    route.duplicateSendsOf = text;
    const n = route.sockets.length;
    await route.sockets[n - 1].close({ code: 1011, reason: 'e2e: network drop' });
    await waitFor('a new agent socket', () => route.sockets.length > n, 30_000);
    await agentShows(chatA.contactId, (m) => m.text === text && (m.status === 'sent' || m.status === 'read'), 'the message as sent', 30_000);
    route.duplicateSendsOf = null;
    const copies = sentByConsole.slice(from).filter((f) => f.type === 'chat_send' && f.text === text);
    assert.ok(copies.length >= 2, 'sent again after the reconnect');
    assert.ok(copies.every((f) => f.client_id === first.client_id), 'with the same client_id');
    await customerGot(custA, (m) => m.text === text, 'the message');
    await sleep(800);
    const onAgent = (await agentTranscript(chatA.contactId)).filter((m) => m.text === text);
    assert.equal(onAgent.length, 1, 'once in the console');
    const onCustomer = (await customerState(custA)).messages.filter((m) => m.text === text);
    assert.equal(onCustomer.length, 1, 'once for the customer');
    verified(`send lost, socket cut: resent with client_id ${first.client_id} (delivered twice); stored once (seq ${onCustomer[0].seq})`);
  });

  await step('the agent reloads the console: every chat in hand comes back', async () => {
    const beforeA = await agentTranscript(chatA.contactId);
    const beforeB = await agentTranscript(chatB.contactId);
    await agent.reload();
    await agent.locator('#conn-indicator[data-conn="connected"]').waitFor();
    await agent.locator(pane(chatA.contactId)).waitFor({ state: 'visible' });
    await agent.locator(`li.chat-card[data-contact-id="${chatB.contactId}"]`).waitFor();
    const strip = (list) => list.map((m) => [m.seq, m.from, m.text]);
    await waitFor('chat A restored', async () => JSON.stringify(strip(await agentTranscript(chatA.contactId))) === JSON.stringify(strip(beforeA)));
    await agent.locator(`li.chat-card[data-contact-id="${chatB.contactId}"] .acd-main`).click();
    await waitFor('chat B restored', async () => JSON.stringify(strip(await agentTranscript(chatB.contactId))) === JSON.stringify(strip(beforeB)));
    await agent.setViewportSize({ width: 1440, height: 900 });
    await agent.locator(`li.chat-card[data-contact-id="${chatA.contactId}"] .acd-main`).click();
    await shot(agent, 'chat-13-restored-1440-console.png');
    await agent.setViewportSize({ width: 1280, height: 800 });
    verified(`console reload: chat ${chatA.contactId} (${beforeA.length} messages, notes included) and chat ${chatB.contactId} (${beforeB.length}) restored`);
  });

  await step('the chat pane speaks en and zh-TW too, and a language switch keeps the draft', async () => {
    const p = agent.locator(pane(chatA.contactId));
    await agent.locator(`li.chat-card[data-contact-id="${chatA.contactId}"] .acd-main`).click();
    await p.locator('textarea[data-role="composer"]').fill('草稿：换语言也不会丢');
    const want = { en: ['Internal note', 'End chat', 'Transfer'], 'zh-TW': ['內部備註', '結束對話', '轉接'], 'zh-CN': ['内部备注', '结束对话', '转接'] };
    for (const lang of ['en', 'zh-TW', 'zh-CN']) {
      await agent.selectOption('#header-lang', lang);
      await agent.waitForFunction((l) => document.documentElement.lang === l, lang);
      const p2 = agent.locator(pane(chatA.contactId));
      await p2.waitFor({ state: 'visible' });
      assert.equal((await p2.locator('.mode-tab[data-mode="note"]').innerText()).trim(), want[lang][0], `${lang} note tab`);
      assert.equal((await p2.locator('[data-action="end-chat"]').innerText()).trim(), want[lang][1], `${lang} end button`);
      assert.equal((await p2.locator('[data-action="transfer"]').innerText()).trim(), want[lang][2], `${lang} transfer button`);
      assert.equal((await p2.locator('.msg-note .note-label').first().textContent()).trim(), want[lang][0], `${lang} note label`);
      assert.equal(await p2.locator('textarea[data-role="composer"]').inputValue(), '草稿：换语言也不会丢', `${lang}: the draft is kept`);
      if (lang !== 'zh-CN') await shot(agent, `chat-14-lang-${lang}-console.png`);
    }
    await p.locator('textarea[data-role="composer"]').fill('');
    verified('chat pane in en, zh-TW and zh-CN; the draft survived each switch');
  });

  await step('transfer the second chat to a colleague, who takes it with its history and hands it to the billing queue', async () => {
    // The colleague: the supervisor, signed in to her own console (zh-TW), available.
    const { page: colleague } = await open({ width: 1280, height: 800 }, 'zh-TW');
    colleague.on('pageerror', (e) => pageErrors.push(`colleague: ${String(e && e.stack || e)}`));
    colleague.on('dialog', (d) => { pageErrors.push(`colleague: unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
    const colleagueFrames = [];
    colleague.on('websocket', (ws) => {
      if (!ws.url().endsWith('/api/v1/agent/ws')) return;
      ws.on('framereceived', (f) => { try { colleagueFrames.push(JSON.parse(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8'))); } catch { /* not JSON */ } });
    });
    await colleague.goto(HUB_URL + '/');
    await colleague.fill('#login-username', SUPERVISOR_USER);
    await colleague.fill('#login-password', SUPERVISOR_PASS);
    await colleague.click('#login-submit');
    await colleague.locator('#conn-indicator[data-conn="connected"]').waitFor();
    const hello = await waitFor('the colleague\'s hello', () => colleagueFrames.find((f) => f.type === 'hello'));
    const colleagueName = hello.agent.display_name;
    await colleague.locator('#state-select:not([disabled])').waitFor();
    await colleague.selectOption('#state-select', 'available');
    await waitFor('the colleague available', () => colleagueFrames.find((f) => f.type === 'agent_state' && f.state.state === 'available'));

    await agent.locator(`li.chat-card[data-contact-id="${chatB.contactId}"] .acd-main`).click();
    await agent.locator(`${pane(chatB.contactId)} [data-action="transfer"]`).click();
    const dlg = agent.locator('dialog.modal');
    await dlg.locator('input[data-queue="billing"]').waitFor();
    assert.ok(await dlg.locator('[data-action="confirm-transfer"]').isDisabled(), 'nothing chosen, nothing to confirm');
    await dlg.locator('[data-transfer-tab="agent"]').click();
    const option = dlg.locator('.transfer-option', { hasText: colleagueName });
    await option.waitFor();
    assert.ok((await option.innerText()).includes('空闲'), 'the colleague is listed as available');
    await option.locator('input').check();
    assert.ok((await dlg.locator('.transfer-confirm').innerText()).includes(colleagueName), 'the confirmation names the colleague');
    await shot(agent, 'chat-15-transfer-agent-console.png');
    await dlg.locator('[data-action="confirm-transfer"]').click();
    const tr = await waitFor('transferred', () => agentFrames.find((f) => f.type === 'transferred' && f.contact_id === chatB.contactId));
    assert.equal(tr.agent_id, hello.agent.id, 'transferred to the colleague');
    await agent.locator(`li.wrapup-card[data-contact-id="${chatB.contactId}"]`).waitFor();
    await agent.locator(`${pane(chatB.contactId)} .chat-closed:not([hidden])`, { hasText: colleagueName }).waitFor();

    // The colleague is offered the chat with its whole conversation, accepts and reads it.
    const offer = await waitFor('the colleague\'s offer', () => colleagueFrames.find((f) => f.type === 'offer' && f.contact.id === tr.new_contact_id), 15_000);
    assert.equal(offer.chat.conversation_id, chatB.conversationId, 'the same conversation');
    await colleague.locator(`li.offer-card[data-contact-id="${tr.new_contact_id}"] [data-action="accept"]`).click();
    const cpane = colleague.locator(`.chat-pane[data-contact-id="${tr.new_contact_id}"]`);
    await cpane.waitFor({ state: 'visible' });
    await cpane.locator('.msg-text', { hasText: '周末 9:00–18:00 有人值班' }).waitFor();
    assert.ok(await cpane.locator('.msg-text', { hasText: '请问你们周末有人值班吗？' }).count() === 1, 'the customer\'s first message is there');
    assert.equal((await cpane.locator('[data-role="side-customer"] .side-name').innerText()).trim(), VISITOR_B.name, 'the record made from the pre-chat form');
    await customerGot(custB, (m) => m.from === 'system' && m.text.includes(colleagueName), 'the colleague joining');
    await shot(colleague, 'chat-16-colleague-console.png');

    // She hands it to the billing queue (queue transfer, confirmed), then wraps up.
    await cpane.locator('[data-action="transfer"]').click();
    const cdlg = colleague.locator('dialog.modal');
    await cdlg.locator('input[data-queue="billing"]').check();
    assert.ok((await cdlg.locator('.transfer-confirm').innerText()).includes('账务'), 'the confirmation names the queue');
    await shot(colleague, 'chat-17-transfer-queue-console.png');
    await cdlg.locator('[data-action="confirm-transfer"]').click();
    const tr2 = await waitFor('transferred to billing', () => colleagueFrames.find((f) => f.type === 'transferred' && f.contact_id === tr.new_contact_id));
    assert.equal(tr2.queue, 'billing');
    const queued = await rest('GET', `/api/v1/contacts/${tr2.new_contact_id}`, supToken);
    assert.equal(queued.json.contact.queue, 'billing', 'the new contact waits in billing');
    await waitFor('the customer to see both transfers', async () => (await customerState(custB)).messages.filter((m) => m.event === 'transferred').length >= 2);
    await shot(custB, 'chat-17-transferred-customer-b.png');
    for (const [page, id, code] of [[colleague, tr.new_contact_id, 'escalated'], [agent, chatB.contactId, 'escalated']]) {
      const card = page.locator(`li.wrapup-card[data-contact-id="${id}"]`);
      await card.locator('[data-role="disposition"]').selectOption(code);
      await card.locator('[data-role="notes"]').fill('周末值班咨询，转账务组');
      await card.locator('[data-action="wrap_up"]').click();
    }
    await waitFor('chat B closed for the agent', () => agentFrames.find((f) => f.type === 'contact_state' && f.contact_id === chatB.contactId && f.state === 'closed'));
    await waitFor('closed for the colleague', () => colleagueFrames.find((f) => f.type === 'contact_state' && f.contact_id === tr.new_contact_id && f.state === 'closed'));
    await colleague.selectOption('#state-select', 'logged_out');
    // The customer leaves while waiting in billing, so nothing of this test stays queued for
    // the tests after it (an agent of theirs who becomes available would be offered it).
    const fb = cf(custB);
    await fb.locator('#end-btn').click();
    await fb.locator('#end-confirm').click();
    await fb.locator('#ended-card').waitFor({ state: 'visible' });
    const left = await waitFor('the billing contact to end', async () => {
      const r = await rest('GET', `/api/v1/contacts/${tr2.new_contact_id}`, supToken);
      return ['abandoned', 'closed'].includes(r.json.contact.state) ? r.json.contact.state : null;
    }, 15_000);
    verified(`chat ${chatB.contactId} → ${colleagueName} (contact ${tr.new_contact_id}, history shown) → queue billing (contact ${tr2.new_contact_id}, ${left} when the customer left); both wrap-ups escalated and closed`);
  });

  await step('end the first chat; wrap-up with a disposition; the contact shows closed', async () => {
    await agent.locator(`li.chat-card[data-contact-id="${chatA.contactId}"] .acd-main`).click();
    await agent.locator(`${pane(chatA.contactId)} [data-action="end-chat"]`).click();
    await agent.locator('dialog.modal [data-action="confirm-end"]').click();
    await waitFor('the customer told', async () => (await customerState(custA)).ended, 15_000);
    const card = agent.locator(`li.wrapup-card[data-contact-id="${chatA.contactId}"]`);
    await card.waitFor();
    await agent.locator(`${pane(chatA.contactId)} .chat-closed:not([hidden])`).waitFor();
    await shot(agent, 'chat-18-wrapup-console.png');
    await shot(custA, 'chat-18-ended-customer.png');
    await card.locator('[data-role="disposition"]').selectOption('resolved');
    await card.locator('[data-role="notes"]').fill('墨盒免费补发，发票重开');
    await card.locator('[data-action="wrap_up"]').click();
    await waitFor('chat A closed', () => agentFrames.find((f) => f.type === 'contact_state' && f.contact_id === chatA.contactId && f.state === 'closed'));
    await agent.locator(pane(chatA.contactId)).waitFor({ state: 'detached' });
    const c = await rest('GET', `/api/v1/contacts/${chatA.contactId}`, supToken);
    assert.equal(c.status, 200);
    assert.equal(c.json.contact.state, 'closed', 'the contact is closed in the store');
    // The customer's history now shows this chat closed.
    const pop = await rest('GET', `/api/v1/customers/${c.json.contact.customer_id}/screen-pop`, supToken);
    const mine = (pop.json.recent_contacts || []).find((x) => x.id === chatA.contactId);
    assert.ok(mine && mine.state === 'closed', 'the screen-pop history lists the chat as closed');
    await shot(agent, 'chat-19-closed-console.png');
    assert.deepEqual(pageErrors, [], 'no page errors');
    // Signed out, so that the next test finds nobody logged in.
    await agent.click('#logout-btn');
    await agent.locator('#login-view').waitFor({ state: 'visible' });
    verified(`chat ${chatA.contactId} ended by the agent, wrapped up "resolved", closed in the store and in the customer's history`);
  });
});
