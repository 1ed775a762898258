// Browser end-to-end test of the softphone (web-agent/softphone.js): two agents in two real
// Chromium processes (each with its own fake microphone tone), a real SIP customer (PJSIP,
// tests/peers/pjsua_voice.py) calling through the trunk, the IVR and the queue.
//
//   customer → IVR (2 = support) → queue → alice's console rings with the screen-pop → answer
//   → audio both ways (tones) → mute (the customer hears nothing of alice) → keypad digits
//   reach the customer's phone → ICE restart (as after a network drop: new credentials over
//   the agent socket, audio both ways again) → hold (the customer hears music, not alice) → resume
//   → consult bob (by agent id) → bob answers in his browser → complete the transfer
//   → customer and bob hear each other → bob blind-transfers the call back to alice → she
//   answers and they hear each other → she consults bob again and joins a 3-way conference
//   (each hears the two others) → she hangs up and wraps up, the customer stays with bob
//   (they hear each other) → bob hangs up → wrap-up with a disposition
// and, before the call, click-to-dial refused for a do-not-call customer, with the message;
// then, in a Chromium that denies the microphone, the console explains the denial.
//
// Needs: HUB_URL, HUB_SIP_PORT, AGENT_USER/AGENT_PASS (alice) and AGENT2_USER/AGENT2_PASS (bob)
// of `contact-hub demo` (scripts/test passes them); python3 with pjsua2 (pip install
// pjsua2-python); Chromium (/usr/bin/chromium or CHROMIUM). Screenshots: tests/e2e/artifacts/.
// A missing peer fails with what to install: it never passes without checking.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HUB_URL = (process.env.HUB_URL || '').replace(/\/+$/, '');
const SIP_PORT = process.env.HUB_SIP_PORT || '';
const ALICE = { user: process.env.AGENT_USER || '', pass: process.env.AGENT_PASS || '' };
const BOB = { user: process.env.AGENT2_USER || 'bob', pass: process.env.AGENT2_PASS || '' };
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');
const PJSUA = path.join(HERE, '..', 'peers', 'pjsua_voice.py');

// The demo customer 刘芳 (important tier, +86 139 1000 2000) calls; 2 in the menu is support,
// a queue both alice (support:3) and bob (support:2) serve.
const CALLER = '+8613910002000';
const CALLER_NAME = '刘芳';
const HOTLINE = '+864008001234';
const TONE = { alice: 1000, bob: 700, customer: 440 };

const verified = (what) => console.log(`verified: ${what}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- WAV files and tone detection ------------------------------------------------------------

function writeTone(file, freq, secs, rate) {
  const n = Math.round(secs * rate);
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) data.writeInt16LE(Math.round(Math.sin(2 * Math.PI * freq * i / rate) * 12000), i * 2);
  const head = Buffer.alloc(44);
  head.write('RIFF', 0); head.writeUInt32LE(36 + data.length, 4); head.write('WAVEfmt ', 8);
  head.writeUInt32LE(16, 16); head.writeUInt16LE(1, 20); head.writeUInt16LE(1, 22);
  head.writeUInt32LE(rate, 24); head.writeUInt32LE(rate * 2, 28); head.writeUInt16LE(2, 32); head.writeUInt16LE(16, 34);
  head.write('data', 36); head.writeUInt32LE(data.length, 40);
  fs.writeFileSync(file, Buffer.concat([head, data]));
}

/** {rate, samples} of a 16-bit PCM WAV (first channel). */
function readWav(file) {
  const b = fs.readFileSync(file);
  let i = 12;
  let rate = 8000;
  let channels = 1;
  while (i + 8 <= b.length) {
    const id = b.toString('ascii', i, i + 4);
    let size = b.readUInt32LE(i + 4);
    if (id === 'fmt ') {
      channels = b.readUInt16LE(i + 10);
      rate = b.readUInt32LE(i + 12);
    } else if (id === 'data') {
      if (size === 0 || i + 8 + size > b.length) size = b.length - i - 8; // header not rewritten
      const n = Math.floor(size / 2 / channels);
      const out = new Float64Array(n);
      for (let k = 0; k < n; k++) out[k] = b.readInt16LE(i + 8 + k * 2 * channels);
      return { rate, samples: out };
    }
    i += 8 + size + (size & 1);
  }
  throw new Error(`${file}: no data chunk`);
}

function goertzel(x, rate, freq) {
  const c = 2 * Math.cos(2 * Math.PI * freq / rate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < x.length; i++) { const s = x[i] + c * s1 - s2; s2 = s1; s1 = s; }
  return (s1 * s1 + s2 * s2 - c * s1 * s2) / Math.max(1, x.length);
}

/** Per one-second window: which of `freqs` dominates (10x the others and loud), the RMS and
 *  each frequency's purity. */
function analyse(file, freqs) {
  const { rate, samples } = readWav(file);
  const windows = [];
  for (let at = 0; at + rate <= samples.length; at += rate) {
    const w = samples.subarray(at, at + rate);
    const p = freqs.map((f) => goertzel(w, rate, f));
    let rms = 0;
    for (let k = 0; k < w.length; k++) rms += w[k] * w[k];
    rms = Math.sqrt(rms / w.length);
    const best = p.indexOf(Math.max(...p));
    const others = p.filter((_, k) => k !== best);
    const dominant = p[best] > 1e4 && p[best] > 10 * Math.max(...others, 1e-9) ? freqs[best] : null;
    // Purity: the share of the window's energy in that one frequency (1 for a pure tone).
    const purity = Object.fromEntries(freqs.map((f, k) => [f, Math.round(100 * p[k] / Math.max(1e-9, w.length * rms * rms / 2)) / 100]));
    windows.push({ dominant, rms: Math.round(rms), purity });
  }
  return windows;
}

const secondsOf = (windows, f) => windows.filter((w) => w.dominant === f).length;
/** Seconds in which `f` is a tone of its own (most of the energy), not a part of music. */
const toneSeconds = (windows, f) => windows.filter((w) => w.purity[f] > 0.5).length;

// ---- the customer's phone ---------------------------------------------------------------------

class Phone {
  constructor(args) {
    this.lines = [];
    this.cursor = 0; // lines before it were matched by an expect() already
    this.wake = null;
    this.child = spawn('python3', [PJSUA, ...args], { stdio: ['pipe', 'pipe', 'ignore'] });
    readline.createInterface({ input: this.child.stdout }).on('line', (l) => {
      this.lines.push(l);
      if (this.wake) this.wake();
    });
  }

  send(cmd) { this.child.stdin.write(cmd + '\n'); }

  /** The next line (from the cursor on) starting with `prefix`, within `ms`. */
  async expect(prefix, ms) {
    const deadline = Date.now() + ms;
    for (;;) {
      for (let i = this.cursor; i < this.lines.length; i++) {
        if (this.lines[i].startsWith(prefix)) { this.cursor = i + 1; return this.lines[i]; }
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null) throw new Error(`phone: no ${prefix} within ${ms} ms; saw ${JSON.stringify(this.lines)}`);
      await new Promise((r) => { const timer = setTimeout(r, Math.min(left, 500)); this.wake = () => { clearTimeout(timer); r(); }; });
    }
  }

  async quit() {
    if (this.child.exitCode !== null) return;
    this.send('quit');
    await this.expect('BYE', 20000).catch(() => null);
    await new Promise((r) => (this.child.exitCode !== null ? r() : this.child.once('exit', r)));
  }

  kill() { if (this.child.exitCode === null) this.child.kill('SIGKILL'); }
}

// ---- browsers ---------------------------------------------------------------------------------

async function launchAgent(name, toneFile, dir, t) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${toneFile}`,
      '--autoplay-policy=no-user-gesture-required',
      // The hub's media listens on 127.0.0.1 only here: loopback ICE candidates.
      '--allow-loopback-in-peer-connection',
    ],
  });
  t.after(() => browser.close().catch(() => {}));
  const context = await browser.newContext({ viewport: { width: 1360, height: 920 }, locale: 'en-US', timezoneId: 'Asia/Shanghai' });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(`${name}: ${e && e.stack || e}`));
  const frames = [];
  page.on('websocket', (ws) => {
    if (!ws.url().endsWith('/api/v1/agent/ws')) return;
    ws.on('framereceived', (f) => {
      try { frames.push(JSON.parse(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8'))); } catch (e) { /* not JSON */ }
    });
  });
  return { name, browser, page, errors, frames };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `softphone-${name}.png`) });
}

async function login(agent, creds, screenshotName) {
  const { page } = agent;
  await page.goto(HUB_URL + '/');
  await page.locator('#login-view:not([hidden])').waitFor();
  // The endpoint choice at sign-in: the browser.
  await page.locator('#sp-login-endpoint input[value="browser"]').check();
  await page.fill('#login-username', creds.user);
  await page.fill('#login-password', creds.pass);
  if (screenshotName) await shot(page, screenshotName);
  await page.click('#login-submit');
  await page.locator('#console-view:not([hidden])').waitFor();
  // The hub confirms the browser endpoint as ready (the socket is open).
  await page.locator('#softphone [data-role="endpoint"][data-endpoint="browser"][data-ready="ready"]').waitFor({ timeout: 15000 });
  const me = await page.evaluate(async () => (await (await fetch('/api/v1/auth/me')).json()).user);
  return me.id;
}

async function setState(page, value) {
  await page.locator('#state-select:not([disabled])').waitFor();
  await page.locator('#state-select').selectOption(value);
  try {
    await page.locator(`#state-select[data-value="${value}"]`).waitFor();
  } catch (e) {
    await shot(page, 'state-failure');
    const shown = await page.locator('#state-select').getAttribute('data-value');
    const work = await page.locator('#workitem-list').innerText().catch(() => '');
    throw new Error(`the agent state stays ${shown}, not ${value}; work list: ${work.replace(/\s+/g, ' ').slice(0, 400)}`);
  }
}

const callCard = (page, extra) => page.locator(`#softphone .sp-call${extra || ''}`);

async function measure(page, freqs) {
  return page.evaluate(([f]) => window.Softphone.debug.measure(null, f, 2500), [freqs]);
}

async function wrapUp(page, label) {
  const card = page.locator('#workitem-list .wrapup-card').first();
  await card.waitFor({ timeout: 15000 });
  const sel = card.locator('[data-role="disposition"]');
  await sel.selectOption('resolved');
  await card.locator('[data-role="notes"]').fill(`Softphone e2e: ${label}`);
  await shot(page, `${label}-wrapup`);
  await card.locator('[data-action="wrap_up"]').click();
  await card.waitFor({ state: 'detached', timeout: 15000 });
}

/** Opens the transfer dialog of the call `card`, picks colleague `agentId` and presses `go`
 *  (`phone-consult-go` or `phone-blind-go`); `screenshot` names a shot of the dialog. */
async function transferTo(page, card, agentId, go, screenshot) {
  await card.locator('[data-action="phone-transfer"]').click();
  const option = page.locator(`#modal-root label[data-agent-id="${agentId}"] input`);
  await option.waitFor();
  await option.check();
  if (screenshot) await shot(page, screenshot);
  await page.click(`#modal-root [data-action="${go}"]`);
}

/** Work an earlier test left in the agent's hands (offers, contacts, wrap-ups) is finished
 *  first, so the call can be offered to this agent. Bounded in time. */
async function clearWork(page) {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    await sleep(500);
    const list = page.locator('#workitem-list');
    if (await list.locator('.wrapup-card').count()) {
      const card = list.locator('.wrapup-card').first();
      await card.locator('[data-role="disposition"]').selectOption('no_action');
      await card.locator('[data-action="wrap_up"]').click();
      await card.waitFor({ state: 'detached', timeout: 10000 }).catch(() => {});
    } else if (await list.locator('[data-action="complete"]').count()) {
      await list.locator('[data-action="complete"]').first().click();
    } else if (await page.locator('[data-action="complete-email"]:visible').count()) {
      // An accepted mail is completed from its pane.
      await page.locator('[data-action="complete-email"]:visible').first().click();
    } else if (await list.locator('.work-card').count()) {
      // Open the work item, so its pane (and its complete button) shows.
      await list.locator('.work-card').first().click();
    } else if (await list.locator('.offer-card [data-action="accept"]').count()) {
      // Accepted and then completed: a rejected contact would only be offered again as soon
      // as the agent goes available (e.g. the mail the email test split off).
      await list.locator('.offer-card [data-action="accept"]').first().click();
    } else {
      return;
    }
  }
}

// ---- the test ---------------------------------------------------------------------------------

test('browser softphone: IVR → queue → answer, mute, keypad, ICE restart, hold, attended and blind transfer, conference, wrap-up', { timeout: 300_000 }, async (t) => {
  assert.ok(HUB_URL, 'HUB_URL is not set (start `contact-hub demo` and pass its address; scripts/test does)');
  assert.ok(SIP_PORT, 'HUB_SIP_PORT is not set: the SIP port of the hub (scripts/test passes it)');
  assert.ok(ALICE.user && ALICE.pass, 'AGENT_USER/AGENT_PASS must name the first agent (alice of `contact-hub demo`)');
  assert.ok(BOB.pass, 'AGENT2_PASS must be the password of the second agent (bob of `contact-hub demo`)');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM`);
  const pj = spawnSync('python3', ['-c', 'import pjsua2'], { stdio: 'ignore' });
  assert.equal(pj.status, 0, 'PJSIP is missing: pip install pjsua2-python (scripts/peers/sip.sh)');

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'contact-hub-softphone-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const wav = (n) => path.join(dir, n);
  writeTone(wav('alice.wav'), TONE.alice, 300, 48000);
  writeTone(wav('bob.wav'), TONE.bob, 300, 48000);
  writeTone(wav('customer.wav'), TONE.customer, 60, 8000);

  const alice = await launchAgent('alice', wav('alice.wav'), dir, t);
  const bob = await launchAgent('bob', wav('bob.wav'), dir, t);
  t.after(() => {
    for (const a of [alice, bob]) if (a.errors.length) console.log(a.errors.join('\n'));
  });

  const aliceId = await login(alice, ALICE, 'login');
  const bobId = await login(bob, BOB);
  verified(`alice (${aliceId}) and bob (${bobId}) signed in with the browser as their phone (endpoint ready)`);
  await clearWork(alice.page);
  await clearWork(bob.page);
  await setState(bob.page, 'not_ready:break');
  // Work still waiting in the queues (e.g. the mail the email test split off) reaches alice as
  // soon as she is available: take and finish it, then she is available for the call.
  await alice.page.locator('#state-select:not([disabled])').waitFor();
  await alice.page.locator('#state-select').selectOption('available');
  await sleep(2000);
  await clearWork(alice.page);
  await setState(alice.page, 'available');
  await shot(alice.page, 'idle');

  // ---- click-to-dial refused for a do-not-call customer (before the inbound call) ----
  const dnc = await alice.page.evaluate(async () => {
    const r = await fetch('/api/v1/customers', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: '赵敏 (do not call)', tier: 'ordinary', phones: ['+86 135 0000 7777'], do_not_call: true }),
    });
    if (r.status === 409) { // made by an earlier run against this hub: find it
      const found = await (await fetch('/api/v1/customers?q=13500007777&limit=5')).json();
      const c = (found.customers || found.results || []).find((x) => x && (x.customer || x).do_not_call !== undefined);
      return { status: 200, body: c && (c.customer || c) };
    }
    return { status: r.status, body: await r.json() };
  });
  assert.ok((dnc.status === 200 || dnc.status === 201) && dnc.body && dnc.body.id, `create the DNC customer: ${JSON.stringify(dnc)}`);
  await alice.page.evaluate((id) => { location.hash = '#customer/' + id; }, dnc.body.id);
  await alice.page.locator(`#customer-card[data-customer-id="${dnc.body.id}"]`).waitFor();
  const dialBtn = alice.page.locator('#customer-card [data-action="phone-dial-customer"]').first();
  await dialBtn.waitFor();
  assert.equal(await dialBtn.isDisabled(), true, 'the dial button of a do-not-call customer is disabled');
  assert.match(await dialBtn.getAttribute('title'), /do-not-call/);
  await alice.page.fill('#sp-dial-number', '135 0000 7777');
  await alice.page.click('[data-action="phone-dial"]');
  const dialErr = alice.page.locator('#softphone [data-role="dial-error"]:not([hidden])');
  await dialErr.waitFor({ timeout: 15000 });
  const dialText = await dialErr.innerText();
  assert.match(dialText, /do-not-call/, dialText);
  await shot(alice.page, 'dnc-refused');
  verified(`click-to-dial: the DNC customer's dial button is disabled and explained; dialling the number anyway is refused: "${dialText.trim()}"`);
  await alice.page.fill('#sp-dial-number', '');

  // ---- the customer calls the hotline ----
  const rtp = 30000 + Math.floor(Math.random() * 2000) * 10;
  const customer = new Phone(['--rtp-port', String(rtp), '--user', CALLER, '--play', wav('customer.wav'), '--record', wav('ivr.wav'), '--timeout', '280']);
  t.after(() => customer.kill());
  await customer.expect('READY', 20000);
  customer.send(`call sip:${HOTLINE}@127.0.0.1:${SIP_PORT}`);
  await customer.expect('CONFIRMED', 15000);
  const ringing = callCard(alice.page, '[data-state="ringing"]');
  let rang = false;
  for (let i = 0; i < 4 && !rang; i++) {
    await sleep(2000);
    customer.send('dtmf 2'); // 2 = support
    rang = await ringing.waitFor({ timeout: 8000 }).then(() => true, () => false);
  }
  assert.ok(rang, `alice's console did not ring; frames: ${JSON.stringify(alice.frames.slice(-10))}`);
  await alice.page.locator('#softphone [data-role="caller-name"]', { hasText: CALLER_NAME }).waitFor();
  const contactId = Number(await ringing.getAttribute('data-contact-id'));
  await alice.page.locator('#customer-name', { hasText: CALLER_NAME }).waitFor(); // the screen-pop
  assert.ok(await ringing.locator('.tier-badge[data-tier="important"]').count(), 'the ringing call shows the tier');
  await shot(alice.page, 'ringing');
  verified(`IVR → support queue → alice's console rings with the screen-pop (${CALLER_NAME}, important) for contact ${contactId}`);

  // ---- answer ----
  await ringing.locator('[data-action="phone-answer"]').click();
  const live = callCard(alice.page, `[data-contact-id="${contactId}"]`);
  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"][data-state="connected"]`).waitFor({ timeout: 20000 });
  customer.send(`rec ${wav('talk.wav')}`);
  await customer.expect('RECORDING', 5000);
  await sleep(3500);
  const heard = await measure(alice.page, [TONE.customer, TONE.alice, TONE.bob]);
  assert.equal(heard.dominant, TONE.customer, `alice hears the customer's ${TONE.customer} Hz: ${JSON.stringify(heard)}`);
  await live.locator('.sp-quality-head').click(); // the quality details
  await live.locator('[data-role="quality"]:not([data-level="unknown"])').waitFor({ timeout: 10000 });
  await shot(alice.page, 'connected');
  verified(`answered in the browser; alice hears the customer's ${TONE.customer} Hz (WebAudio Goertzel); quality shown: ${await live.locator('.sp-quality-label').innerText()}`);

  // ---- mute / unmute, and the keypad's digits reach the customer ----
  await live.locator('[data-action="phone-mute"]').click();
  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"][data-muted="true"]`).waitFor({ timeout: 10000 });
  customer.send(`rec ${wav('muted.wav')}`);
  await customer.expect('RECORDING', 5000);
  await sleep(3000);
  await shot(alice.page, 'muted');
  customer.send(`rec ${wav('unmuted.wav')}`);
  await customer.expect('RECORDING', 5000);
  await live.locator('[data-action="phone-mute"]').click();
  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"][data-muted="false"]`).waitFor({ timeout: 10000 });
  await sleep(3000);
  const muted = analyse(wav('muted.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  const unmuted = analyse(wav('unmuted.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  assert.equal(toneSeconds(muted, TONE.alice), 0, `muted, the customer does not hear alice: ${JSON.stringify(muted)}`);
  assert.ok(secondsOf(unmuted, TONE.alice) >= 1, `unmuted, the customer hears alice again: ${JSON.stringify(unmuted)}`);
  verified(`mute: the customer heard nothing of alice's ${TONE.alice} Hz for 3 s; after unmute again (${secondsOf(unmuted, TONE.alice)} s)`);

  await live.locator('[data-action="phone-keypad"]').click();
  for (const d of ['5', '#']) {
    await live.locator(`[data-role="keypad"] [data-digit="${d}"]`).click();
    const got = await customer.expect('DTMF', 10000);
    assert.equal(got, `DTMF ${d}`, `the customer's phone received ${d}`);
  }
  // What was sent stays on the keypad, also after the card re-rendered (a quality push).
  await sleep(1500);
  assert.equal((await live.locator('[data-role="keypad"] #sp-dtmf-sent').innerText()).trim(), '5#', 'the keypad shows the digits sent');
  await shot(alice.page, 'keypad');
  await live.locator('[data-action="phone-keypad"]').click();
  verified('keypad: the digits 5 and # pressed in the console reached the customer\'s phone as RFC 4733 events, and the keypad still shows "5#"');

  // ---- ICE restart, what the softphone does after a network drop: fresh ICE credentials
  //      over the agent socket, the same call, the customer never notices ----
  const restartFrom = alice.frames.length;
  assert.ok(await alice.page.evaluate((id) => window.Softphone.debug.restartIce(id), contactId), 'the softphone has the call');
  const hubRestarts = () => Math.max(0, ...alice.frames.slice(restartFrom)
    .filter((f) => f.type === 'call_quality' && f.contact_id === contactId)
    .map((f) => f.ice_restarts || 0));
  for (let i = 0; i < 80 && hubRestarts() < 1; i++) await sleep(250);
  assert.ok(hubRestarts() >= 1, `the hub counted the ICE restart: ${JSON.stringify(alice.frames.slice(restartFrom).filter((f) => f.type === 'call_quality').slice(-3))}`);
  const iceAfter = (await alice.page.evaluate(() => window.Softphone.debug.calls())).find((c) => c.id === contactId);
  assert.ok(['connected', 'completed'].includes(iceAfter && iceAfter.ice), `ICE is up again: ${JSON.stringify(iceAfter)}`);
  customer.send(`rec ${wav('ice-restarted.wav')}`);
  await customer.expect('RECORDING', 5000);
  await sleep(3000);
  const heardRestarted = await measure(alice.page, [TONE.customer, TONE.alice, TONE.bob]);
  customer.send(`rec ${wav('after-ice-restart.wav')}`);
  await customer.expect('RECORDING', 5000);
  assert.equal(heardRestarted.dominant, TONE.customer, `after the ICE restart alice hears the customer: ${JSON.stringify(heardRestarted)}`);
  const restartedRec = analyse(wav('ice-restarted.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  assert.ok(secondsOf(restartedRec, TONE.alice) >= 1, `after the ICE restart the customer hears alice: ${JSON.stringify(restartedRec)}`);
  await shot(alice.page, 'ice-restarted');
  verified(`ICE restart mid-call: the hub answered the new offer (ice_restarts ${hubRestarts()}), ICE ${iceAfter.ice}; both still hear each other (${secondsOf(restartedRec, TONE.alice)} s of alice at the customer)`);

  // ---- hold / resume ----
  await live.locator('[data-action="phone-hold"]').click();
  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"][data-held="true"]`).waitFor({ timeout: 10000 });
  await customer.expect('MEDIA remote_hold', 10000); // the hub re-INVITEd the customer sendonly
  customer.send(`rec ${wav('hold.wav')}`);
  await customer.expect('RECORDING', 5000);
  await sleep(4000);
  await shot(alice.page, 'held');
  await live.locator('[data-action="phone-hold"]').click();
  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"][data-held="false"][data-state="connected"]`).waitFor({ timeout: 10000 });
  customer.send(`rec ${wav('talk2.wav')}`);
  await customer.expect('RECORDING', 5000);
  const talk = analyse(wav('talk.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  assert.ok(secondsOf(talk, TONE.alice) >= 2, `the customer heard alice's ${TONE.alice} Hz: ${JSON.stringify(talk)}`);
  const hold = analyse(wav('hold.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  const loud = hold.filter((w) => w.rms > 200).length;
  assert.equal(toneSeconds(hold, TONE.alice), 0, `on hold the customer does not hear alice: ${JSON.stringify(hold)}`);
  assert.ok(loud >= 2, `on hold the customer hears music (energy): ${JSON.stringify(hold)}`);
  verified(`the customer heard alice's ${TONE.alice} Hz for ${secondsOf(talk, TONE.alice)} s; on hold music (${loud} s with energy) and never alice's tone; resumed`);

  // ---- attended transfer to bob ----
  await setState(bob.page, 'available');
  await transferTo(alice.page, live, bobId, 'phone-consult-go', 'transfer-dialog');
  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"][data-state="consult_ringing"]`).waitFor({ timeout: 10000 });
  const bobRing = callCard(bob.page, '[data-kind="consult"][data-state="ringing"]');
  await bobRing.waitFor({ timeout: 10000 });
  await shot(bob.page, 'consult-ringing');
  await bobRing.locator('[data-action="phone-answer"]').click();
  await callCard(bob.page, '[data-kind="consult"][data-state="connected"]').waitFor({ timeout: 20000 });
  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"][data-state="consulting"]`).waitFor({ timeout: 10000 });
  await sleep(2500);
  const aliceHearsBob = await measure(alice.page, [TONE.customer, TONE.alice, TONE.bob]);
  assert.equal(aliceHearsBob.dominant, TONE.bob, `in the consultation alice hears bob: ${JSON.stringify(aliceHearsBob)}`);
  await shot(alice.page, 'consulting');
  verified(`consultation: bob's console rang, he answered in his browser, alice hears bob's ${TONE.bob} Hz (the customer waits on hold)`);

  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"] [data-action="phone-complete"]`).click();
  await alice.page.locator(`#softphone .sp-call[data-contact-id="${contactId}"][data-state="ended"]`).waitFor({ timeout: 10000 });
  const bobLive = callCard(bob.page, '[data-kind="inbound"][data-state="connected"]');
  await bobLive.waitFor({ timeout: 15000 });
  customer.send(`rec ${wav('with-bob.wav')}`); // not bob.wav: that is bob's microphone
  await customer.expect('RECORDING', 5000);
  await wrapUp(alice.page, 'alice');
  verified('alice completed the transfer; her call ended and she wrapped up with a disposition');
  await sleep(2500);
  const bobHears = await measure(bob.page, [TONE.customer, TONE.alice, TONE.bob]);
  assert.equal(bobHears.dominant, TONE.customer, `bob hears the customer: ${JSON.stringify(bobHears)}`);
  await shot(bob.page, 'connected');

  customer.send(`rec ${wav('before-blind.wav')}`); // closes with-bob.wav
  await customer.expect('RECORDING', 5000);
  const withBob = analyse(wav('with-bob.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  assert.ok(secondsOf(withBob, TONE.bob) >= 1, `the customer heard bob's ${TONE.bob} Hz: ${JSON.stringify(withBob)}`);
  verified(`after the transfer the customer heard bob's ${TONE.bob} Hz (${secondsOf(withBob, TONE.bob)} s) and bob hears the customer's ${TONE.customer} Hz`);

  // ---- blind transfer from bob back to alice ----
  await setState(alice.page, 'available');
  await transferTo(bob.page, bobLive, aliceId, 'phone-blind-go');
  await callCard(bob.page, '[data-state="ended"]').waitFor({ timeout: 15000 });
  const aliceRing = callCard(alice.page, '[data-state="ringing"]');
  await aliceRing.waitFor({ timeout: 20000 });
  await shot(alice.page, 'blind-ringing');
  await wrapUp(bob.page, 'bob-blind');
  await aliceRing.locator('[data-action="phone-answer"]').click();
  const back = callCard(alice.page, '[data-state="connected"]');
  await back.waitFor({ timeout: 20000 });
  customer.send(`rec ${wav('back.wav')}`);
  await customer.expect('RECORDING', 5000);
  await sleep(3000);
  const aliceHearsAgain = await measure(alice.page, [TONE.customer, TONE.alice, TONE.bob]);
  assert.equal(aliceHearsAgain.dominant, TONE.customer, `after the blind transfer alice hears the customer: ${JSON.stringify(aliceHearsAgain)}`);
  const backTalk = analyse(wav('back.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  assert.ok(secondsOf(backTalk, TONE.alice) >= 1, `after the blind transfer the customer hears alice: ${JSON.stringify(backTalk)}`);
  verified(`blind transfer: bob sent the call to alice without consulting; her console rang, she answered and they hear each other (${secondsOf(backTalk, TONE.alice)} s of ${TONE.alice} Hz)`);

  // The call she handed to bob earlier is not shown again as hers (one live card only).
  assert.equal(await alice.page.locator('#softphone .sp-call:not([data-state="ended"])').count(), 1,
    'alice sees only the call she answered, not the state of the one she transferred');

  // ---- 3-way conference: alice consults bob and joins the three ----
  await setState(bob.page, 'available');
  await transferTo(alice.page, back, bobId, 'phone-consult-go');
  const bobRing2 = callCard(bob.page, '[data-kind="consult"][data-state="ringing"]');
  await bobRing2.waitFor({ timeout: 15000 });
  await bobRing2.locator('[data-action="phone-answer"]').click();
  const bobConsult = callCard(bob.page, '[data-kind="consult"][data-state="connected"]');
  await bobConsult.waitFor({ timeout: 20000 });
  const consulting = callCard(alice.page, '[data-state="consulting"]');
  await consulting.waitFor({ timeout: 10000 });
  await consulting.locator('[data-action="phone-conference"]').click();
  const conf = callCard(alice.page, '[data-state="conference"]');
  await conf.waitFor({ timeout: 10000 });
  customer.send(`rec ${wav('conference.wav')}`);
  await customer.expect('RECORDING', 5000);
  await sleep(3500);
  await shot(alice.page, 'conference');
  const tones = [TONE.customer, TONE.bob, TONE.alice];
  const aliceInConf = await measure(alice.page, tones);
  const bobInConf = await measure(bob.page, tones);
  customer.send(`rec ${wav('after-conference.wav')}`);
  await customer.expect('RECORDING', 5000);
  const three = analyse(wav('conference.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  // A mix: both agents' tones carry a clear share of what the customer hears.
  const both = three.filter((w) => w.purity[TONE.alice] > 0.1 && w.purity[TONE.bob] > 0.1).length;
  assert.ok(both >= 2, `in the conference the customer hears alice and bob at once: ${JSON.stringify(three)}`);
  // Nobody gets their own voice back: it is the floor the two others must clear by 10x.
  for (const [who, m, own, others] of [['alice', aliceInConf, TONE.alice, [TONE.customer, TONE.bob]], ['bob', bobInConf, TONE.bob, [TONE.customer, TONE.alice]]]) {
    const floor = Math.max(m.powers[own], 1e-12);
    assert.ok(others.every((f) => m.powers[f] > 10 * floor), `in the conference ${who} hears both others: ${JSON.stringify(m)}`);
  }
  verified(`conference: the customer hears alice's ${TONE.alice} Hz and bob's ${TONE.bob} Hz together (${both} s); alice and bob each hear the two others`);

  // ---- alice leaves the conference: the customer stays with bob ----
  await conf.locator('[data-action="phone-hangup"]').click();
  await wrapUp(alice.page, 'alice-conference');
  const bobAfter = callCard(bob.page, '[data-kind="inbound"][data-state="connected"]');
  await bobAfter.waitFor({ timeout: 15000 });
  customer.send(`rec ${wav('left-with-bob.wav')}`);
  await customer.expect('RECORDING', 5000);
  await sleep(3000);
  const bobHearsCustomer = await measure(bob.page, [TONE.customer, TONE.alice, TONE.bob]);
  customer.send(`rec ${wav('end.wav')}`);
  await customer.expect('RECORDING', 5000);
  const leftWithBob = analyse(wav('left-with-bob.wav'), [TONE.alice, TONE.customer, TONE.bob]);
  assert.ok(secondsOf(leftWithBob, TONE.bob) >= 2, `after alice left, the customer hears bob: ${JSON.stringify(leftWithBob)}`);
  assert.equal(toneSeconds(leftWithBob, TONE.alice), 0, `after alice left, the customer no longer hears her: ${JSON.stringify(leftWithBob)}`);
  assert.equal(bobHearsCustomer.dominant, TONE.customer, `after alice left, bob hears the customer: ${JSON.stringify(bobHearsCustomer)}`);
  await shot(bob.page, 'after-conference');
  verified(`alice hung up in the conference and wrapped up; the customer stayed with bob and they hear each other (${secondsOf(leftWithBob, TONE.bob)} s of bob's ${TONE.bob} Hz, none of alice's)`);

  // ---- bob's hang-up ends the call ----
  await bobAfter.locator('[data-action="phone-hangup"]').click();
  await customer.expect('DISCONNECTED', 10000);
  await wrapUp(bob.page, 'bob-conference');
  await shot(bob.page, 'ended');
  verified('bob hung up; the customer\'s phone got the BYE; he wrapped up with a disposition');
  await customer.quit();
  // Signed out, so the next test (the widget's) finds nobody available and its customer waits.
  for (const a of [alice, bob]) await setState(a.page, 'logged_out');

  for (const a of [alice, bob]) assert.deepEqual(a.errors, [], `${a.name}: no page errors`);
});

test('browser softphone: a denied microphone is explained to the agent', { timeout: 60_000 }, async (t) => {
  assert.ok(HUB_URL && BOB.pass, 'HUB_URL and AGENT2_PASS must be set (scripts/test passes them)');
  // A (fake) microphone exists, but without the fake permission UI Chromium asks for it and
  // the prompt is denied: the same NotAllowedError an agent gets by blocking the permission.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream', '--deny-permission-prompts'],
  });
  t.after(() => browser.close().catch(() => {}));
  const context = await browser.newContext({ viewport: { width: 1360, height: 920 }, locale: 'en-US', permissions: [] });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const denied = await page.goto(HUB_URL + '/').then(() => page.evaluate(async () => {
    try { (await navigator.mediaDevices.getUserMedia({ audio: true })).getTracks().forEach((x) => x.stop()); return 'granted'; } catch (e) { return e.name; }
  }));
  assert.equal(denied, 'NotAllowedError', 'this browser is set up to deny the microphone');
  await login({ page }, BOB);
  await page.locator('[data-action="phone-settings"]').click();
  await page.locator('[data-role="phone-settings"] [data-action="phone-check-mic"]').click();
  const banner = page.locator('#softphone [data-role="mic-problem"]');
  await banner.waitFor({ timeout: 10000 });
  const text = (await banner.innerText()).replace(/\s+/g, ' ');
  assert.match(text, /Microphone blocked/, text);
  assert.ok(await banner.locator('[data-action="phone-check-mic"]').count(), 'the banner offers to try again');
  await shot(page, 'mic-denied');
  verified(`a denied microphone: the console says "${text.slice(0, 160)}"`);
  await setState(page, 'logged_out');
});
