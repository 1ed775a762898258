// Browser end-to-end test of email in the agent console, in a real Chromium driven by
// playwright-core, against a real hub: a customer's mail is delivered over SMTP (this file speaks
// SMTP to the hub's listener with node:net), the agent is offered it, reads it in the email pane
// (the HTML in a sandboxed iframe, remote images held back until asked for), downloads its file,
// answers with a canned response, a Cc and an attachment, watches the send state (the demo has no
// relay: the reply ends failed with the error and a Retry), adds a note, splits and merges the
// conversation, and wraps up.
//
// Needs a running hub with the demo data (`contact-hub demo`: the customer 刘芳, email
// liufang@example.cn; the agent alice; the demo's mailbox is the default service@contact-hub.local)
// and its logins and SMTP port:
//   HUB_URL=http://127.0.0.1:18282 HUB_SMTP_PORT=2525 AGENT_USER=alice AGENT_PASS=... \
//   SUPERVISOR_USER=sophie SUPERVISOR_PASS=... npm test
// Optional: CHROMIUM=/path/to/chromium (default /usr/bin/chromium).
//
// It never passes without checking: a missing HUB_URL, SMTP port, account or Chromium is a failure
// that says what to set or install. Screenshots go to tests/e2e/artifacts/email-*.png.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import http from 'node:http';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HUB_URL = (process.env.HUB_URL || '').replace(/\/+$/, '');
const SMTP_PORT = Number(process.env.HUB_SMTP_PORT || 0);
const AGENT_USER = process.env.AGENT_USER || '';
const AGENT_PASS = process.env.AGENT_PASS || '';
const SUPERVISOR_USER = process.env.SUPERVISOR_USER || '';
const SUPERVISOR_PASS = process.env.SUPERVISOR_PASS || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');

const RUN = crypto.randomBytes(4).toString('hex').toUpperCase();
const CUSTOMER = { name: '刘芳', email: 'liufang@example.cn' }; // a demo customer (key account)
const REPLY_TO = 'caiwu.liufang@example.cn'; // where her second mail asks answers to go
const MAILBOX = 'service@contact-hub.local'; // the demo's mailbox (EmailConfig's default)
const ORDER = `SO-${RUN}`;
const SUBJECT = `发票抬头需要更正 · 订单 ${ORDER}`;
const BODY_LINE = `我的订单 ${ORDER} 的发票抬头写错了，应为“北京华星贸易有限公司”，请帮忙更正。`;
const FILE_TEXT = `订单 ${ORDER}\n抬头：北京华星贸易有限公司\n税号：91110105MA00XXXX1K\n`;
const CANNED_TITLE = `e2e 发票更正 ${RUN}`;
const CANNED_BODY = '{customer.name}您好：\n\n我是客服 {agent.name}。您的发票抬头已更正为“北京华星贸易有限公司”，新发票将在 3 个工作日内寄出。\n\n工单号：{contact.id}';
const CC = 'caiwu@huaxing.example.cn';

const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function verified(what) {
  console.log(`verified: ${what}`);
}

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

// ---- a MIME message and an SMTP client (RFC 5321), enough for one delivery

const b64lines = (buf) => buf.toString('base64').replace(/.{76}/g, '$&\r\n');
const encWord = (s) => '=?UTF-8?B?' + Buffer.from(s, 'utf8').toString('base64') + '?=';

/** multipart/mixed [ multipart/related [ multipart/alternative [text, html], inline images ], files ] */
function buildMail({ fromName, from, replyTo, to, subject, messageId, inReplyTo, text, html, inline, files }) {
  const tag = () => crypto.randomBytes(8).toString('hex');
  const [mix, rel, alt] = ['mix-' + tag(), 'rel-' + tag(), 'alt-' + tag()];
  const out = [
    `From: ${encWord(fromName)} <${from}>`, `To: ${to}`, `Subject: ${encWord(subject)}`, `Message-ID: <${messageId}>`,
    ...(replyTo ? [`Reply-To: ${replyTo}`] : []),
    ...(inReplyTo ? [`In-Reply-To: <${inReplyTo}>`, `References: <${inReplyTo}>`] : []),
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`, 'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${mix}"`, '', `--${mix}`];
  const alternative = [`Content-Type: multipart/alternative; boundary="${alt}"`, '', `--${alt}`,
    'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '', b64lines(Buffer.from(text, 'utf8')), `--${alt}`,
    'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: base64', '', b64lines(Buffer.from(html, 'utf8')), `--${alt}--`];
  if (inline && inline.length) {
    out.push(`Content-Type: multipart/related; boundary="${rel}"`, '', `--${rel}`, ...alternative);
    for (const i of inline) {
      out.push(`--${rel}`, `Content-Type: ${i.type}`, 'Content-Transfer-Encoding: base64', `Content-ID: <${i.cid}>`,
        `Content-Disposition: inline; filename="${i.name}"`, '', b64lines(i.data));
    }
    out.push(`--${rel}--`);
  } else {
    out.push(...alternative);
  }
  for (const f of files || []) {
    out.push(`--${mix}`, `Content-Type: ${f.type}; name="${encWord(f.name)}"`, 'Content-Transfer-Encoding: base64',
      `Content-Disposition: attachment; filename="${encWord(f.name)}"`, '', b64lines(f.data));
  }
  out.push(`--${mix}--`, '');
  return out.join('\r\n');
}

/** Delivers one message over SMTP; resolves with every reply line, fails on any unexpected code. */
function smtpSend({ host, port, from, to, data }) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, host);
    const lines = [];
    const steps = [['', 220], ['EHLO e2e.example.net', 250], [`MAIL FROM:<${from}>`, 250],
      ...to.map((r) => [`RCPT TO:<${r}>`, 250]), ['DATA', 354], ['<data>', 250], ['QUIT', 221]];
    let i = 0;
    let buf = '';
    sock.setTimeout(15_000, () => { sock.destroy(); reject(new Error('SMTP timeout; so far: ' + lines.join(' | '))); });
    sock.on('error', (e) => reject(new Error(`cannot speak SMTP to ${host}:${port} (is HUB_SMTP_PORT the hub's smtp.listen port?): ${e.message}`)));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      let idx;
      while ((idx = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, idx);
        buf = buf.slice(idx + 2);
        lines.push(line);
        if (/^\d{3}-/.test(line)) continue; // more lines of the same reply
        if (+line.slice(0, 3) !== steps[i][1]) {
          sock.destroy();
          reject(new Error(`SMTP "${steps[i][0] || 'greeting'}" answered "${line}"`));
          return;
        }
        i += 1;
        if (i >= steps.length) { sock.end(); resolve(lines); return; }
        if (steps[i][0] === '<data>') {
          const body = data.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
          sock.write(body + (body.endsWith('\r\n') ? '' : '\r\n') + '.\r\n');
        } else {
          sock.write(steps[i][0] + '\r\n');
        }
      }
    });
  });
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

test('email: an SMTP mail read, answered and wrapped up in the agent console', { timeout: 420_000 }, async (t) => {
  assert.ok(HUB_URL, 'HUB_URL is not set. Start the hub (e.g. HUB_SMTP_LISTEN=127.0.0.1:2525 contact-hub demo) and run e.g. '
    + 'HUB_URL=http://127.0.0.1:18282 HUB_SMTP_PORT=2525 AGENT_USER=alice AGENT_PASS=... SUPERVISOR_USER=sophie SUPERVISOR_PASS=... npm test');
  assert.ok(SMTP_PORT > 0, 'HUB_SMTP_PORT is not set: the port of the hub\'s SMTP listener (smtp.listen / HUB_SMTP_LISTEN)');
  assert.ok(AGENT_USER && AGENT_PASS, 'AGENT_USER and AGENT_PASS must name an agent account (contact-hub demo prints them)');
  assert.ok(SUPERVISOR_USER && SUPERVISOR_PASS, 'SUPERVISOR_USER and SUPERVISOR_PASS must name a supervisor (contact-hub demo prints sophie)');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}. Install it with `
    + '"apt-get update && apt-get install -y chromium", or set CHROMIUM=/path/to/chromium');
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  // The "remote" server of the mail's tracking banner: it counts who fetched it, and when.
  const png = makePng(240, 60);
  const remoteHits = [];
  const remote = http.createServer((req, res) => {
    remoteHits.push({ url: req.url, at: Date.now() });
    res.writeHead(200, { 'Content-Type': 'image/png', 'Cache-Control': 'no-store' });
    res.end(png);
  });
  await new Promise((r) => remote.listen(0, '127.0.0.1', r));
  t.after(() => remote.close());
  const BANNER = `http://127.0.0.1:${remote.address().port}/banner.png?run=${RUN}`;

  const contexts = [];
  t.after(async () => {
    for (const { context, dir } of contexts) {
      await context.close().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'contact-hub-e2e-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS, viewport: { width: 1280, height: 800 },
    locale: 'zh-CN', timezoneId: 'Asia/Shanghai', acceptDownloads: true,
  });
  contexts.push({ context, dir });
  const agent = context.pages()[0] || (await context.newPage());
  agent.setDefaultTimeout(15_000);
  const pageErrors = [];
  agent.on('pageerror', (e) => pageErrors.push(String(e && e.stack || e)));
  agent.on('dialog', (d) => { pageErrors.push(`unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
  agent.on('crash', () => pageErrors.push('the console page crashed'));
  if (process.env.E2E_CONSOLE) agent.on('console', (m) => console.log(`console ${m.type()}: ${m.text()}`));
  // What the hub tells the console (every agent socket of the page, reloads included).
  const frames = [];
  agent.on('websocket', (ws) => {
    if (!ws.url().endsWith('/api/v1/agent/ws')) return;
    ws.on('framereceived', (f) => {
      try { frames.push(JSON.parse(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8'))); } catch { /* not JSON */ }
    });
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
  async function shot(name) {
    await agent.screenshot({ path: path.join(ARTIFACTS, name) });
  }

  // Offers that are not this test's mail (left by another test) are declined at once.
  const ours = new Set();
  const declineStrays = setInterval(() => {
    for (const f of frames) {
      if (f.type !== 'offer' || f._seen) continue;
      f._seen = true;
      const mine = f.email && (f.email.messages || []).some((m) => m.email && String(m.email.message_id).includes(RUN.toLowerCase()));
      if (mine) { ours.add(f.contact.id); continue; }
      agent.locator(`li.offer-card[data-contact-id="${f.contact.id}"] [data-action="reject"]`).click({ timeout: 5000 }).catch(() => {});
    }
  }, 200);
  t.after(() => clearInterval(declineStrays));

  let broken = false;
  // A step the later ones do not build on (independent) does not stop them when it fails.
  const step = (name, fn, opts) => t.test(name, { skip: broken ? 'an earlier step failed' : false }, async () => {
    try {
      await fn();
    } catch (e) {
      if (!(opts && opts.independent)) broken = true;
      await agent.screenshot({ path: path.join(ARTIFACTS, 'email-failure.png') }).catch(() => {});
      console.log('step failed; screenshot in artifacts/email-failure.png');
      throw e;
    }
  });

  const pane = (id) => `.email-pane[data-contact-id="${id}"]`;
  const msgSel = (id, seq) => `${pane(id)} .email-msg[data-seq="${seq}"]`;
  /** The sandboxed document of one message's HTML. */
  async function htmlFrame(id, seq) {
    const el = await agent.locator(`${msgSel(id, seq)} iframe.email-frame`).elementHandle();
    const fr = await el.contentFrame();
    await fr.waitForLoadState();
    return fr;
  }
  const conversation = async (id) => (await rest('GET', `/api/v1/conversations/${id}`, supToken)).json;

  let supToken = '';
  let agentName = '';
  let contactId = null;
  let convId = null;
  let first = null; // the customer's first mail, as the offer carried it
  let firstSeq = null;
  let followSeq = null;
  let replySeq = null;
  let replyOutbox = null;
  const MSG_ID = `e2e-${RUN.toLowerCase()}-1@example.cn`;

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
    await agent.locator('#conn-indicator[data-conn="connected"]').waitFor();
    const hello = await waitFor('hello', () => frames.find((f) => f.type === 'hello'));
    agentName = hello.agent.display_name;
    for (const item of hello.contacts || []) {
      assert.fail(`the agent already holds contact ${item.contact.id} (${item.state}); run against a fresh demo hub`);
    }
    await agent.locator('#state-select:not([disabled])').waitFor();
    await agent.selectOption('#state-select', 'available');
    await waitFor('agent_state available', () => frames.find((f) => f.type === 'agent_state' && f.state.state === 'available'));
    verified(`${AGENT_USER} (${agentName}) signed in in zh-CN and is available`);
  });

  await step('a customer writes in Chinese over SMTP (HTML with a remote and an inline image, a file): the offer shows it', async () => {
    const logo = makePng(96, 32);
    const html = `<div style="font-family: sans-serif; color: #1f2937"><p>您好，</p>`
      + `<p>我的订单 <b>${ORDER}</b> 的发票抬头写错了，应为<span style="color: #cc0000">“北京华星贸易有限公司”</span>，请帮忙更正。</p>`
      + `<p><img src="${BANNER}" width="240" height="60" alt="活动横幅"></p>`
      + `<p><img src="cid:logo-${RUN}@huaxing.example.cn" alt="华星 logo" width="96" height="32"></p>`
      + `<p>谢谢！<br>刘芳<br>北京华星贸易有限公司 财务部</p>`
      + `<blockquote><p>在 2026年11月20日，客户服务中心 写道：</p><p>您好，您的发票已开具，请查收。</p></blockquote></div>`;
    const text = `您好，\n\n${BODY_LINE}\n\n谢谢！\n刘芳\n北京华星贸易有限公司 财务部\n\n在 2026年11月20日，客户服务中心 写道：\n> 您好，您的发票已开具，请查收。\n`;
    const lines = await smtpSend({
      host: '127.0.0.1', port: SMTP_PORT, from: CUSTOMER.email, to: [MAILBOX],
      data: buildMail({
        fromName: CUSTOMER.name, from: CUSTOMER.email, to: `客户服务 <${MAILBOX}>`, subject: SUBJECT, messageId: MSG_ID, text, html,
        inline: [{ cid: `logo-${RUN}@huaxing.example.cn`, type: 'image/png', name: 'logo.png', data: logo }],
        files: [{ name: '订单明细.txt', type: 'text/plain; charset=utf-8', data: Buffer.from(FILE_TEXT, 'utf8') }],
      }),
    });
    assert.ok(lines.some((l) => /^250 .*stored/i.test(l)), `the hub stored the mail before answering 250 (got ${lines.join(' | ')})`);
    const offer = await waitFor('the email offer', () => frames.find((f) => f.type === 'offer' && ours.has(f.contact.id)), 30_000);
    contactId = offer.contact.id;
    convId = offer.email.conversation.id;
    first = offer.email.messages.find((m) => m.email && m.email.message_id === MSG_ID);
    firstSeq = first.seq;
    assert.equal(offer.contact.channel, 'email');
    assert.equal(offer.contact.subject, SUBJECT, 'the subject, decoded');
    assert.equal(first.email.flags.thread_reason, 'new');
    assert.equal(offer.screen_pop && offer.screen_pop.customer && offer.screen_pop.customer.name, CUSTOMER.name, 'matched to the demo customer by address');
    const card = agent.locator(`li.offer-card[data-contact-id="${contactId}"]`);
    await card.waitFor();
    assert.equal(await card.getAttribute('data-channel'), 'email');
    const offerEmail = card.locator('[data-role="offer-email"]');
    await offerEmail.waitFor();
    assert.equal((await offerEmail.locator('.offer-email-subject').innerText()).trim(), SUBJECT, 'offer card: the subject');
    assert.equal((await offerEmail.locator('[data-role="offer-from"]').innerText()).trim(), `${CUSTOMER.name} <${CUSTOMER.email}>`, 'offer card: the sender');
    assert.ok((await offerEmail.locator('.offer-msg').innerText()).includes('发票抬头写错了'), 'offer card: the first lines');
    assert.equal((await offerEmail.locator('[data-role="offer-files"]').innerText()).trim(), '1 个附件', 'offer card: one file (the inline logo is not a file)');
    assert.equal(await offerEmail.locator('[data-role="offer-reason"]').count(), 0, 'a new thread: no "joined because" line');
    await agent.locator('#customer-card #customer-name', { hasText: CUSTOMER.name }).waitFor();
    await shot('email-01-offer.png');
    verified(`SMTP 250 after storing; offer for email contact ${contactId} (conversation ${convId}) with subject, sender, first lines, 1 file, screen-pop`);
  });

  await step('accept: the pane shows the thread, the mail\'s HTML in a sandbox, remote images held back', async () => {
    await agent.click(`li.offer-card[data-contact-id="${contactId}"] [data-action="accept"]`);
    const p = agent.locator(pane(contactId));
    await p.waitFor({ state: 'visible' });
    assert.equal(await agent.evaluate(() => location.hash), `#email/${contactId}`);
    assert.equal((await p.locator('[data-role="subject"]').innerText()).trim(), SUBJECT);
    assert.equal((await p.locator('[data-role="ticket"]').innerText()).trim(), `[#${convId}]`);
    const msg = agent.locator(msgSel(contactId, firstSeq));
    await msg.locator('.email-frame').waitFor();
    assert.ok(await msg.evaluate((el) => el.classList.contains('is-open')), 'the customer\'s mail is open');
    assert.equal((await msg.locator('.email-from-name').innerText()).trim(), CUSTOMER.name);
    assert.equal((await msg.locator('.email-addr').innerText()).trim(), `<${CUSTOMER.email}>`);
    assert.equal((await msg.locator('[data-role="to"]').innerText()).trim(), MAILBOX);
    assert.match(await msg.locator('.email-date').innerText(), /\d{4}年\d{1,2}月\d{1,2}日/, 'the date');
    assert.equal((await msg.locator('.email-reason').getAttribute('data-reason')), 'new');
    assert.equal((await msg.locator('.email-reason').innerText()).trim(), '新会话');
    // The automatic acknowledgement (when the hub stored one) is one line.
    const acks = (await conversation(convId)).messages.filter((m) => m.from === 'system' && m.email && m.email.flags.kind === 'ack');
    for (const a of acks) {
      const ack = agent.locator(msgSel(contactId, a.seq));
      await ack.waitFor();
      assert.ok(await ack.evaluate((el) => el.classList.contains('is-collapsed')), 'the acknowledgement is collapsed to one line');
      assert.equal((await ack.locator('.email-kind').innerText()).trim(), '自动确认');
    }

    // The sandbox: no scripts, the HTML through srcdoc.
    const iframe = msg.locator('iframe.email-frame');
    const sandbox = await iframe.getAttribute('sandbox');
    assert.ok(sandbox !== null && !sandbox.split(/\s+/).includes('allow-scripts'), `sandboxed without allow-scripts (got "${sandbox}")`);
    assert.ok((await iframe.evaluate((el) => el.srcdoc)).includes(ORDER), 'the HTML is the frame\'s srcdoc');
    const fr = await htmlFrame(contactId, firstSeq);
    const body = await fr.evaluate(() => document.body.innerText);
    assert.ok(body.includes(BODY_LINE), `the decoded Chinese body is in the frame (got ${JSON.stringify(body.slice(0, 200))})`);
    assert.equal(await fr.evaluate(() => getComputedStyle([...document.querySelectorAll('span')].find((s) => s.textContent.includes('北京华星'))).color), 'rgb(204, 0, 0)',
      'the mail\'s own styles apply');
    // The remote banner has no source, and nobody asked the remote server for it.
    const banner = await fr.evaluate(() => [...document.querySelectorAll('img[data-remote-src]')].map((i) => ({ src: i.getAttribute('src'), remote: i.dataset.remoteSrc })));
    assert.deepEqual(banner, [{ src: null, remote: BANNER }], 'the remote image is held back');
    // The inline logo comes from the hub (cid: -> /api/v1/attachments/{id}) and shows.
    await waitFor('the inline image to load', () => fr.evaluate(() => {
      const img = [...document.images].find((i) => i.alt === '华星 logo');
      return img && img.complete && img.naturalWidth === 96 && img.getAttribute('src');
    }));
    const logoSrc = await fr.evaluate(() => [...document.images].find((i) => i.alt === '华星 logo').getAttribute('src'));
    const logoAtt = first.attachments.find((a) => a.inline);
    assert.equal(logoSrc, `/api/v1/attachments/${logoAtt.id}`, 'the cid: image points at its stored file');
    // The quoted history is behind "…".
    assert.equal(await fr.evaluate(() => getComputedStyle(document.querySelector('blockquote')).display), 'none', 'quoted history collapsed');
    await msg.locator('[data-action="quotes"]').click();
    assert.notEqual(await fr.evaluate(() => getComputedStyle(document.querySelector('blockquote')).display), 'none', 'quoted history shown');
    await msg.locator('[data-action="quotes"]').click();
    await p.locator('[data-role="images-bar"]', { hasText: '1 张远程图片' }).waitFor();
    await sleep(800);
    assert.deepEqual(remoteHits, [], 'the remote server was never asked for the image');
    await shot('email-02-pane.png');
    verified(`pane: subject, ticket, from/to/date, "new conversation", ${acks.length} ack collapsed; sandbox without allow-scripts via srcdoc; `
      + `Chinese body decoded; styles applied; remote image without src and 0 requests; cid image from /api/v1/attachments; quotes collapsed`);
  });

  await step('plain-text view; the file downloads as sent', async () => {
    const msg = agent.locator(msgSel(contactId, firstSeq));
    await msg.locator('[data-view="text"]').click();
    const textView = agent.locator(`${msgSel(contactId, firstSeq)} [data-role="text"]`);
    await textView.waitFor();
    assert.ok((await textView.innerText()).includes(BODY_LINE), 'the text part');
    assert.ok(!(await textView.innerText()).includes('您的发票已开具'), 'without the quoted history');
    const quoted = agent.locator(`${msgSel(contactId, firstSeq)} [data-role="quoted"]`);
    assert.ok(await quoted.isHidden(), 'quoted text hidden');
    await agent.locator(`${msgSel(contactId, firstSeq)} [data-action="quotes"]`).click();
    assert.ok((await quoted.innerText()).includes('> 您好，您的发票已开具，请查收。'), 'quoted text behind "…"');
    await agent.locator(`${msgSel(contactId, firstSeq)} [data-view="html"]`).click();
    await agent.locator(`${msgSel(contactId, firstSeq)} iframe.email-frame`).waitFor();
    const chips = agent.locator(`${msgSel(contactId, firstSeq)} .email-atts a.att-file`);
    assert.equal(await chips.count(), 1, 'one file chip (the inline logo is shown in place)');
    assert.ok((await chips.first().innerText()).includes('订单明细.txt'));
    const [download] = await Promise.all([agent.waitForEvent('download'), chips.first().click()]);
    assert.equal(download.suggestedFilename(), '订单明细.txt');
    const got = fs.readFileSync(await download.path(), 'utf8');
    assert.equal(got, FILE_TEXT, 'the file downloads byte for byte');
    verified('plain-text view with quotes behind "…"; 订单明细.txt downloaded, content identical');
  });

  await step('the customer writes again: the new mail appears in the open pane without a reload', async () => {
    await agent.evaluate(() => { window.__sameDocument = true; });
    const photo = makePng(120, 80);
    const text = `补充一下：纳税人识别号是 91110105MA00XXXX1K，附上营业执照照片。\n\n刘芳\n`;
    await smtpSend({
      host: '127.0.0.1', port: SMTP_PORT, from: CUSTOMER.email, to: [MAILBOX],
      data: buildMail({
        fromName: CUSTOMER.name, from: CUSTOMER.email, replyTo: REPLY_TO, to: MAILBOX, subject: `Re: [#${convId}] ${SUBJECT}`,
        messageId: `e2e-${RUN.toLowerCase()}-2@example.cn`, inReplyTo: MSG_ID, text,
        html: `<p>补充一下：纳税人识别号是 <b>91110105MA00XXXX1K</b>，附上营业执照照片。</p><p>刘芳</p>`,
        files: [{ name: '营业执照.png', type: 'image/png', data: photo }],
      }),
    });
    const note = await waitFor('email_message', () => frames.find((f) => f.type === 'email_message' && f.contact_id === contactId), 15_000);
    assert.equal(note.conversation_id, convId, 'it joined this conversation');
    followSeq = note.seq;
    const msg = agent.locator(msgSel(contactId, followSeq));
    await msg.locator('.email-frame').waitFor();
    assert.ok(await agent.evaluate(() => window.__sameDocument === true), 'no reload');
    assert.equal(await msg.locator('.email-reason').getAttribute('data-reason'), 'in_reply_to');
    assert.equal((await msg.locator('[data-role="reply-to"]').innerText()).trim(), REPLY_TO, 'its Reply-To shown');
    assert.ok((await msg.locator('.email-reason').innerText()).startsWith('回复了 '), 'joined as a reply: "回复了 …"');
    const thumb = msg.locator('.email-atts a.att-image img');
    await waitFor('the thumbnail', () => thumb.evaluate((el) => el.complete && el.naturalWidth === 120));
    const fr = await htmlFrame(contactId, followSeq);
    assert.ok((await fr.evaluate(() => document.body.innerText)).includes('纳税人识别号'), 'its HTML');
    // The older mail is one line now; the ticket stays the same.
    await waitFor('the first mail collapsed', () => agent.locator(msgSel(contactId, firstSeq)).evaluate((el) => el.classList.contains('is-collapsed')));
    await shot('email-03-new-mail.png');
    verified(`email_message seq ${followSeq} shown live: "回复了 …" (in_reply_to), its Reply-To, image thumbnail, older mail collapsed`);
  });

  await step('reply with a canned response, a Cc and a file: on screen at once as sending, then failed (no relay) with a Retry', async () => {
    const p = agent.locator(pane(contactId));
    const input = p.locator('textarea[data-role="composer"]');
    await input.click();
    const subjectWanted = `Re: [#${convId}] ${SUBJECT}`; // the latest mail's subject already has both
    assert.equal((await p.locator('[data-role="subject-preview"]').innerText()).trim(), subjectWanted, 'the subject the hub will give it');
    assert.deepEqual(await p.locator('.rcpt-field[data-field="to"] .rcpt-chip').evaluateAll((els) => els.map((e) => [e.dataset.address, e.dataset.auto || ''])),
      [[REPLY_TO, 'true']], 'To: the Reply-To of the mail answered, added by the reply');
    // A Cc: a wrong address is refused before anything is sent, then a right one.
    await p.locator('[data-action="show-cc"]').click();
    const cc = p.locator('[data-role="cc-input"]');
    await cc.fill('caiwu@');
    await cc.press('Enter');
    await p.locator('.rcpt-chip.is-invalid[data-address="caiwu@"]').waitFor();
    await input.fill('x');
    await p.locator('[data-role="composer-error"]', { hasText: '“caiwu@”不是有效的邮箱地址' }).waitFor();
    assert.ok(await p.locator('[data-action="send"]').isDisabled(), 'no send with a wrong address');
    await p.locator('.rcpt-chip.is-invalid .rcpt-remove').click();
    await cc.fill(CC + ',');
    await p.locator(`.rcpt-chip[data-address="${CC}"]:not(.is-invalid)`).waitFor();
    await input.fill('');
    // The canned response, its placeholders filled in.
    await p.locator('[data-action="canned"]').click();
    await p.locator('[data-role="canned-search"]').fill(RUN);
    await p.locator('.canned-item', { hasText: CANNED_TITLE }).waitFor();
    await p.locator('[data-role="canned-search"]').press('Enter');
    const text = await input.inputValue();
    const wantText = CANNED_BODY.replace('{customer.name}', CUSTOMER.name).replace('{agent.name}', agentName).replace('{contact.id}', String(contactId));
    assert.equal(text, wantText, 'canned response with customer, agent and contact filled in');
    // A file, uploaded to the conversation before sending.
    const NOTE_FILE = '更正说明.txt';
    await p.locator('[data-role="file-input"]').setInputFiles({ name: NOTE_FILE, mimeType: 'text/plain', buffer: Buffer.from('抬头已更正。\n', 'utf8') });
    await p.locator('.file-chip[data-attachment-id]', { hasText: NOTE_FILE }).waitFor();
    await shot('email-04-composer.png');
    // The hub takes a moment to answer (held here): the reply is on screen at once, sending.
    let release;
    const held = new Promise((r) => { release = r; });
    await agent.route('**/api/v1/conversations/*/reply', async (route) => { await held; await route.continue(); }, { times: 1 });
    await p.locator('[data-action="send"]').click();
    const pending = p.locator('.email-msg.is-pending');
    await pending.waitFor();
    assert.equal(await pending.getAttribute('data-status'), 'sending');
    assert.ok((await pending.innerText()).includes('发送中'), 'shown as sending');
    assert.ok((await pending.locator('.email-text').innerText()).includes('您的发票抬头已更正'), 'with its text');
    assert.equal(await input.inputValue(), '', 'the composer is empty again');
    await shot('email-05-sending.png');
    release();
    const status = await waitFor('email_status failed', () => frames.find((f) => f.type === 'email_status' && f.contact_id === contactId && f.status === 'failed'), 20_000);
    replySeq = status.seq;
    replyOutbox = status.outbox_id;
    assert.equal(status.error, 'no relay is configured (email.relay.host)');
    assert.equal(status.attempts, 1);
    const msg = agent.locator(msgSel(contactId, replySeq));
    await msg.locator('[data-role="send-state"][data-state="failed"]').waitFor();
    assert.equal(await p.locator('.email-msg.is-pending').count(), 0, 'the pending copy gave way to the stored mail');
    assert.equal((await msg.locator('[data-role="send-error"]').innerText()).trim(), '未配置发信服务器（email.relay.host）', 'the error, in words');
    assert.ok(await msg.locator('[data-action="retry-send"]').isVisible(), 'a Retry button');
    assert.equal(await msg.getAttribute('data-from'), 'agent');
    // What the hub stored and queued.
    const conv = await conversation(convId);
    const stored = conv.messages.find((m) => m.seq === replySeq);
    assert.equal(stored.from, 'agent');
    assert.equal(stored.text, wantText);
    assert.deepEqual(stored.email.to, [REPLY_TO], 'sent where the customer asked (Reply-To)');
    assert.deepEqual(stored.email.cc, [CC]);
    assert.equal(stored.email.subject, subjectWanted, 'the subject the composer showed');
    assert.equal(stored.email.in_reply_to, `e2e-${RUN.toLowerCase()}-2@example.cn`, 'answering the latest mail');
    assert.deepEqual(stored.attachments.map((a) => a.name), [NOTE_FILE]);
    assert.deepEqual(stored.outbox.map((o) => [o.id, o.status, o.attempts]), [[replyOutbox, 'failed', 1]]);
    await shot('email-06-failed.png');
    verified(`reply seq ${replySeq}: sending at once; then failed "${status.error}" with Retry; stored to ${stored.email.to} cc ${stored.email.cc}, subject "${stored.email.subject}", file ${NOTE_FILE}`);
  });

  await step('retry: the hub tries again, the console shows it sending then failed, attempts counted', async () => {
    const msg = agent.locator(msgSel(contactId, replySeq));
    const [res] = await Promise.all([
      agent.waitForResponse((r) => r.url().endsWith(`/api/v1/outbox/${replyOutbox}/retry`) && r.request().method() === 'POST'),
      msg.locator('[data-action="retry-send"]').click(),
    ]);
    assert.equal(res.status(), 204);
    const again = await waitFor('the second attempt', () => frames.find((f) => f.type === 'email_status' && f.outbox_id === replyOutbox && f.attempts === 2), 20_000);
    assert.equal(again.status, 'failed');
    await msg.locator('[data-role="send-state"][data-state="failed"]').waitFor();
    const conv = await conversation(convId);
    assert.deepEqual(conv.messages.find((m) => m.seq === replySeq).outbox.map((o) => [o.status, o.attempts]), [['failed', 2]]);
    verified(`retry → POST /api/v1/outbox/${replyOutbox}/retry 204 → attempt 2 failed, shown again with Retry`);
  });

  await step('forward the first mail to a colleague with a note: its own subject, the recipient required', async () => {
    const p = agent.locator(pane(contactId));
    const firstMsg = agent.locator(msgSel(contactId, firstSeq));
    await firstMsg.locator('.email-line').click();
    await firstMsg.locator('[data-action="forward"]').click();
    assert.ok(await p.locator('.mode-tab[data-mode="forward"]').evaluate((el) => el.classList.contains('is-active')), 'forward mode');
    assert.equal((await p.locator('[data-role="subject-preview"]').innerText()).trim(), `[#${convId}] Fwd: ${SUBJECT}`, 'the forwarded mail\'s subject');
    assert.ok((await p.locator('[data-role="answering"]').innerText()).includes(`转发 ${CUSTOMER.name} 的邮件`), 'which mail goes');
    assert.equal(await p.locator('.rcpt-field[data-field="to"] .rcpt-chip').count(), 0, 'nobody by itself');
    const input = p.locator('textarea[data-role="composer"]');
    await input.fill('请财务同事重开发票，原邮件见附件。');
    await p.locator('[data-role="composer-error"]', { hasText: '请填写转发给谁' }).waitFor();
    assert.ok(await p.locator('[data-action="send"]').isDisabled(), 'no forward without a recipient');
    await p.locator('[data-role="to-input"]').fill('finance@contact-hub.local');
    const before = frames.length;
    await p.locator('[data-action="send"]').click();
    const st = await waitFor('the forward\'s send state', () => frames.slice(before).find((f) => f.type === 'email_status' && f.contact_id === contactId && f.status === 'failed'), 20_000);
    const msg = agent.locator(msgSel(contactId, st.seq));
    await msg.locator('[data-role="send-state"][data-state="failed"]').waitFor();
    assert.equal((await msg.locator('.email-kind').innerText()).trim(), '转发');
    const stored = (await conversation(convId)).messages.find((m) => m.seq === st.seq);
    assert.equal(stored.email.flags.kind, 'forward');
    assert.deepEqual(stored.email.to, ['finance@contact-hub.local']);
    assert.equal(stored.email.subject, `[#${convId}] Fwd: ${SUBJECT}`);
    assert.ok(await p.locator('.mode-tab[data-mode="reply"]').evaluate((el) => el.classList.contains('is-active')), 'back to reply after a forward');
    verified(`forward seq ${st.seq} to finance@contact-hub.local, subject "${stored.email.subject}", failed (no relay) like the reply`);
  });

  await step('an internal note joins the thread, never sent', async () => {
    const p = agent.locator(pane(contactId));
    await p.locator('.mode-tab[data-mode="note"]').click();
    assert.ok(await p.locator('.email-composer.is-note').isVisible(), 'note mode');
    assert.ok(await p.locator('.email-headers').isHidden(), 'no recipients for a note');
    const input = p.locator('textarea[data-role="composer"]');
    await input.fill('客户要求加急，发票已交财务重开。');
    await input.press('Control+Enter');
    const note = p.locator('.email-note:not(.is-pending)', { hasText: '客户要求加急' });
    await note.waitFor();
    const conv = await conversation(convId);
    assert.ok(conv.messages.some((m) => m.from === 'note' && m.text === '客户要求加急，发票已交财务重开。'), 'stored as a note');
    assert.ok(!conv.messages.some((m) => m.from === 'note' && (m.outbox || []).length), 'nothing queued to send');
    await p.locator('.mode-tab[data-mode="reply"]').click();
    verified('note stored (from "note", nothing queued) and shown in the thread');
  });

  await step('reload: the pane comes back from hello with its thread and draft', async () => {
    const p = agent.locator(pane(contactId));
    const input = p.locator('textarea[data-role="composer"]');
    await input.fill('草稿：刷新后还在');
    const seqs = async () => agent.locator(`${pane(contactId)} .email-thread > [data-seq]`).evaluateAll((els) => els.map((e) => +e.dataset.seq));
    const before = await seqs();
    const n = frames.length;
    await agent.reload();
    await agent.locator('#conn-indicator[data-conn="connected"]').waitFor();
    const hello = await waitFor('hello after reload', () => frames.slice(n).find((f) => f.type === 'hello'));
    const item = hello.contacts.find((c) => c.contact.id === contactId);
    assert.ok(item && item.email && item.email.messages.length === before.length, 'hello.contacts[].email carries the conversation');
    await agent.locator(pane(contactId)).waitFor({ state: 'visible' });
    assert.equal(await agent.evaluate(() => location.hash), `#email/${contactId}`);
    await waitFor('the thread restored', async () => JSON.stringify(await seqs()) === JSON.stringify(before));
    assert.equal(await agent.locator(`${pane(contactId)} textarea[data-role="composer"]`).inputValue(), '草稿：刷新后还在', 'the draft survived');
    await agent.locator(`${msgSel(contactId, replySeq)} [data-role="send-state"][data-state="failed"]`).waitFor();
    await shot('email-07-after-reload.png');
    verified(`reload: ${before.length} messages and the draft restored from hello.contacts[].email`);
  });

  await step('the email pane speaks en and zh-TW too', async () => {
    const want = {
      en: ['Reply', 'Reply all', 'Forward', 'Complete', 'Merge', 'Not sent:'],
      'zh-TW': ['回覆', '全部回覆', '轉寄', '完成處理', '合併', '寄送失敗：'],
      'zh-CN': ['回复', '全部回复', '转发', '完成处理', '合并', '发送失败：'],
    };
    for (const lang of ['en', 'zh-TW', 'zh-CN']) {
      await agent.selectOption('#header-lang', lang);
      await agent.waitForFunction((l) => document.documentElement.lang === l, lang);
      const p = agent.locator(pane(contactId));
      await p.waitFor({ state: 'visible' });
      const got = [
        await p.locator('.mode-tab[data-mode="reply"]').innerText(), await p.locator('.mode-tab[data-mode="reply_all"]').innerText(),
        await p.locator('.mode-tab[data-mode="forward"]').innerText(), await p.locator('[data-action="complete-email"]').innerText(),
        await p.locator('[data-action="merge"]').innerText(), await agent.locator(`${msgSel(contactId, replySeq)} .email-send-text`).innerText(),
      ].map((s) => s.trim());
      assert.deepEqual(got, want[lang], `${lang} labels`);
      assert.equal(await p.locator('textarea[data-role="composer"]').inputValue(), '草稿：刷新后还在', `${lang}: the draft is kept`);
      if (lang !== 'zh-CN') await shot(`email-08-lang-${lang}.png`);
    }
    await agent.locator(`${pane(contactId)} textarea[data-role="composer"]`).fill('');
    verified('email pane in en, zh-TW and zh-CN; the draft survived each switch');
  });

  let splitConv = null;
  await step('split: the follow-up starts a new conversation; merge: this one joins it by ticket number', async () => {
    const p = agent.locator(pane(contactId));
    const follow = agent.locator(msgSel(contactId, followSeq));
    if (await follow.evaluate((el) => el.classList.contains('is-collapsed'))) await follow.locator('.email-line').click();
    await follow.locator('[data-action="split"]').click();
    const dlg = agent.locator('dialog.modal');
    await dlg.locator('[data-action="confirm-split"]').waitFor();
    assert.ok((await dlg.innerText()).includes(`Re: [#${convId}]`), 'the dialog names the mail');
    await shot('email-09-split-confirm.png');
    const [res] = await Promise.all([
      agent.waitForResponse((r) => r.url().endsWith(`/api/v1/conversations/${convId}/split`)),
      dlg.locator('[data-action="confirm-split"]').click(),
    ]);
    assert.equal(res.status(), 201);
    splitConv = (await res.json()).conversation_id;
    await waitFor('the split-off mails gone from this pane', async () => (await agent.locator(msgSel(contactId, followSeq)).count()) === 0);
    const left = await conversation(convId);
    assert.ok(left.messages.every((m) => m.seq < followSeq), 'this conversation keeps what came before');
    const moved = await conversation(splitConv);
    assert.ok(moved.messages.some((m) => m.email && m.email.message_id === `e2e-${RUN.toLowerCase()}-2@example.cn`), 'the follow-up is in the new conversation');
    // Merge this conversation into the new one, found by its ticket number.
    await p.locator('[data-action="merge"]').click();
    await dlg.locator('[data-role="merge-ticket"]').fill(`[#${splitConv}]`);
    await dlg.locator('[data-role="merge-found"].is-ok').waitFor();
    assert.ok((await dlg.locator('[data-role="merge-found"]').innerText()).includes(`[#${splitConv}]`), 'the dialog shows the target');
    await shot('email-10-merge-confirm.png');
    const [mres] = await Promise.all([
      agent.waitForResponse((r) => r.url().endsWith(`/api/v1/conversations/${convId}/merge`)),
      dlg.locator('[data-action="confirm-merge"]').click(),
    ]);
    assert.equal(mres.status(), 204);
    await waitFor('the ticket number of the merged conversation', async () => (await p.locator('[data-role="ticket"]').innerText()).trim() === `[#${splitConv}]`);
    const merged = await conversation(splitConv);
    const ids = merged.messages.filter((m) => m.email).map((m) => m.email.message_id);
    assert.ok(ids.includes(MSG_ID) && ids.includes(`e2e-${RUN.toLowerCase()}-2@example.cn`), 'both customer mails in one conversation');
    await waitFor('every message on screen', async () => (await agent.locator(`${pane(contactId)} .email-thread > [data-seq]`).count()) === merged.messages.length);
    const contact = await rest('GET', `/api/v1/contacts/${contactId}`, supToken);
    assert.equal(contact.json.contact.conversation_id, splitConv, 'the contact belongs to the merged conversation');
    assert.equal((await rest('GET', `/api/v1/conversations/${convId}`, supToken)).json.conversation.status, 'closed', 'the merged-away conversation is closed');
    await shot('email-11-merged.png');
    verified(`split at seq ${followSeq} → [#${splitConv}]; merged [#${convId}] into [#${splitConv}] (${merged.messages.length} messages); contact follows`);
  });

  await step('"show images" (only now: not before, nor after the reload, split and merge) fetches the remote image inside the sandbox', async () => {
    assert.deepEqual(remoteHits, [], 'nothing asked the remote server so far');
    const sel = `${pane(contactId)} .email-msg[data-key="m:${MSG_ID}"]`;
    const msg = agent.locator(sel);
    if (await msg.evaluate((el) => el.classList.contains('is-collapsed'))) await msg.locator('.email-line').click();
    await msg.locator('[data-action="show-images"]').click();
    const fr = await (await agent.locator(`${sel} iframe.email-frame`).elementHandle()).contentFrame();
    await waitFor('the source swapped in inside the sandbox', () => fr.evaluate((url) => document.querySelector('img[data-remote-src]').getAttribute('src') === url, BANNER));
    try {
      await waitFor('the remote server to be asked for the banner', () => remoteHits.find((h) => h.url === `/banner.png?run=${RUN}`));
    } catch (e) {
      // Say why when it is the page's policy that stops it (the sandbox inherits it).
      const csp = (await fetch(HUB_URL + '/')).headers.get('content-security-policy') || '';
      const img = (/img-src([^;]*)/.exec(csp) || [])[1] || '';
      assert.ok(/\bhttps?:/.test(img), `the console's Content-Security-Policy (src/web.rs) blocks remote images: "img-src${img}"; `
        + 'it must allow https: http: for "show images" to load them (the sandboxed email frame inherits the page\'s policy)');
      throw e;
    }
    await waitFor('the banner to show', () => fr.evaluate((url) => {
      const img = document.querySelector('img[data-remote-src]');
      return img && img.getAttribute('src') === url && img.complete && img.naturalWidth === 240;
    }, BANNER));
    assert.equal(await agent.locator(`${sel} [data-role="images-bar"]`).count(), 0, 'the notice is gone');
    await shot('email-12-images.png');
    verified(`after "show images": ${remoteHits.length} request to the remote server, the banner shows in the sandbox`);
  }, { independent: true });

  await step('complete: wrap-up with a disposition; the contact closes', async () => {
    const p = agent.locator(pane(contactId));
    await p.locator('[data-action="complete-email"]').click();
    const card = agent.locator(`li.wrapup-card[data-contact-id="${contactId}"]`);
    await card.waitFor();
    await p.locator('.chat-closed:not([hidden])', { hasText: '已完成处理' }).waitFor();
    assert.ok(await p.locator('.email-composer.is-note').isVisible(), 'notes only in wrap-up');
    await shot('email-13-wrapup.png');
    await card.locator('[data-role="disposition"]').selectOption('resolved');
    await card.locator('[data-role="notes"]').fill('发票抬头已更正，新发票 3 个工作日内寄出');
    await card.locator('[data-action="wrap_up"]').click();
    await waitFor('closed', () => frames.find((f) => f.type === 'contact_state' && f.contact_id === contactId && f.state === 'closed'));
    await agent.locator(pane(contactId)).waitFor({ state: 'detached' });
    const c = await rest('GET', `/api/v1/contacts/${contactId}`, supToken);
    assert.equal(c.json.contact.state, 'closed', 'closed in the store');
    await shot('email-14-closed.png');
    assert.deepEqual(pageErrors, [], 'no page errors');
    await agent.click('#logout-btn');
    await agent.locator('#login-view').waitFor({ state: 'visible' });
    verified(`email contact ${contactId} completed, wrapped up "resolved", closed`);
  });
});
