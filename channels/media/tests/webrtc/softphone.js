// Test page for the media engine's WebRTC leg. It does what the console softphone will do
// (offer, trickle ICE, DTMF keypad, ICE restart) and measures what it hears, reporting
// everything to the test over the WebSocket as JSON.
'use strict';

const params = new URLSearchParams(location.search);
const ws = new WebSocket(`ws://127.0.0.1:${params.get('ws')}/`);
const logEl = document.getElementById('log');
const send = (m) => ws.send(JSON.stringify(m));
const log = (m) => { logEl.textContent += m + '\n'; send({ type: 'log', message: String(m) }); };

let pc, sender, samples = new Float32Array(0), sampleRate = 48000, answered = null;
window.onerror = (e) => log('page error: ' + e);

// Rolling buffer of the received audio (last 4 s), mono f32.
function pushSamples(chunk, rate) {
  sampleRate = rate;
  const max = rate * 4;
  const joined = new Float32Array(Math.min(max, samples.length + chunk.length));
  const keep = joined.length - chunk.length;
  joined.set(samples.subarray(samples.length - keep), 0);
  joined.set(chunk.subarray(Math.max(0, chunk.length - joined.length)), keep);
  samples = joined;
}

async function capture(track) {
  if (typeof MediaStreamTrackProcessor === 'function') {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    log('capture: MediaStreamTrackProcessor');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const buf = new Float32Array(value.numberOfFrames);
      value.copyTo(buf, { planeIndex: 0, format: 'f32-planar' });
      pushSamples(buf, value.sampleRate);
      value.close();
    }
  }
  // Fallback: WebAudio (Chrome needs the remote stream on a media element too).
  log('capture: WebAudio');
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(new MediaStream([track]));
  const proc = ctx.createScriptProcessor(4096, 1, 1);
  proc.onaudioprocess = (e) => pushSamples(new Float32Array(e.inputBuffer.getChannelData(0)), ctx.sampleRate);
  src.connect(proc);
  proc.connect(ctx.destination);
}

function goertzel(x, freq, rate) {
  const k = 2 * Math.cos(2 * Math.PI * freq / rate);
  let s1 = 0, s2 = 0;
  for (let i = 0; i < x.length; i++) { const s = x[i] + k * s1 - s2; s2 = s1; s1 = s; }
  return (s1 * s1 + s2 * s2 - k * s1 * s2) / (x.length * x.length);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The dominant of candidate frequencies over the last `ms` of received audio.
async function measure(ms, freqs) {
  await sleep(ms);
  const n = Math.min(samples.length, Math.floor(sampleRate * ms / 1000));
  const x = samples.subarray(samples.length - n);
  const powers = {};
  for (const f of freqs) powers[f] = goertzel(x, f, sampleRate);
  const sorted = freqs.slice().sort((a, b) => powers[b] - powers[a]);
  let rms = 0;
  for (let i = 0; i < x.length; i++) rms += x[i] * x[i];
  return { dominant: sorted[0], ratio: powers[sorted[0]] / Math.max(powers[sorted[1]], 1e-12),
           powers, rms: Math.sqrt(rms / Math.max(1, x.length)), samples: n };
}

// DTMF digits present in the last `ms` of audio, 40 ms blocks, in order, deduplicated.
const ROWS = [697, 770, 852, 941], COLS = [1209, 1336, 1477, 1633];
const KEYS = ['123A', '456B', '789C', '*0#D'];
async function listenDtmf(ms) {
  await sleep(ms);
  const n = Math.min(samples.length, Math.floor(sampleRate * ms / 1000));
  const x = samples.subarray(samples.length - n);
  const block = Math.floor(sampleRate * 0.04);
  const digits = [];
  let last = null;
  for (let at = 0; at + block <= x.length; at += block) {
    const b = x.subarray(at, at + block);
    const rp = ROWS.map((f) => goertzel(b, f, sampleRate));
    const cp = COLS.map((f) => goertzel(b, f, sampleRate));
    const r = rp.indexOf(Math.max(...rp)), c = cp.indexOf(Math.max(...cp));
    const others = [...rp.filter((_, i) => i !== r), ...cp.filter((_, i) => i !== c)];
    const loud = rp[r] > 1e-5 && cp[c] > 1e-5 && Math.min(rp[r], cp[c]) > 10 * Math.max(...others);
    const d = loud ? KEYS[r][c] : null;
    if (d && d !== last) digits.push(d);
    last = d;
  }
  return digits;
}

async function stats() {
  const out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      out.inbound = { packetsReceived: s.packetsReceived, packetsLost: s.packetsLost, jitter: s.jitter,
                      audioLevel: s.audioLevel, codecId: s.codecId };
    }
    if (s.type === 'outbound-rtp' && s.kind === 'audio') out.outbound = { packetsSent: s.packetsSent };
    if (s.type === 'remote-inbound-rtp' && s.kind === 'audio') {
      out.remoteInbound = { roundTripTime: s.roundTripTime, fractionLost: s.fractionLost, jitter: s.jitter };
    }
    if (s.type === 'candidate-pair' && s.nominated) out.pair = { currentRoundTripTime: s.currentRoundTripTime, state: s.state };
    if (s.type === 'codec') (out.codecs = out.codecs || []).push(s.mimeType);
    if (s.type === 'transport') out.transport = { dtlsState: s.dtlsState, srtpCipher: s.srtpCipher, tlsVersion: s.tlsVersion };
  });
  return out;
}

// Sends an offer; resolves with the answer SDP, or { error } when the engine refused it.
function negotiate(offer, leg) {
  return new Promise((resolve) => {
    answered = { resolve };
    send({ type: 'offer', leg, sdp: offer.sdp });
  });
}

async function start() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  pc = new RTCPeerConnection({ iceServers: [] });
  sender = pc.addTrack(stream.getAudioTracks()[0], stream);
  pc.ontrack = (e) => {
    document.getElementById('remote').srcObject = e.streams[0] || new MediaStream([e.track]);
    capture(e.track);
  };
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      send({ type: 'candidate', candidate: e.candidate.candidate, ufrag: e.candidate.usernameFragment });
    }
  };
  pc.onconnectionstatechange = () => send({ type: 'state', state: pc.connectionState });
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const answer = await negotiate(offer, 'agent');
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
}

// An offer with Opus only, as a browser that lost its G.711 codecs would send.
async function opusOnly() {
  const other = new RTCPeerConnection({ iceServers: [] });
  const t = other.addTransceiver('audio', { direction: 'sendrecv' });
  const caps = RTCRtpReceiver.getCapabilities('audio').codecs.filter((c) => /opus/i.test(c.mimeType));
  t.setCodecPreferences(caps);
  const offer = await other.createOffer();
  await other.setLocalDescription(offer);
  const reply = await negotiate(offer, 'opus');
  other.close();
  return reply;
}

ws.onmessage = async (e) => {
  const m = JSON.parse(e.data);
  try {
    if (m.type === 'answer' || m.type === 'error') {
      if (answered) answered.resolve(m.type === 'answer' ? m.sdp : { error: m.message });
    } else if (m.cmd === 'measure') {
      send({ type: 'heard', ...(await measure(m.ms, m.freqs)) });
    } else if (m.cmd === 'listen-dtmf') {
      send({ type: 'dtmf-heard', digits: await listenDtmf(m.ms) });
    } else if (m.cmd === 'dtmf') {
      sender.dtmf.insertDTMF(m.digits, 120, 80);
      send({ type: 'dtmf-sent', digits: m.digits });
    } else if (m.cmd === 'restart') {
      const offer = await pc.createOffer({ iceRestart: true });
      await pc.setLocalDescription(offer);
      const answer = await negotiate(offer, 'agent');
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      send({ type: 'restarted', ufrag: (offer.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1] });
    } else if (m.cmd === 'opus-offer') {
      send({ type: 'opus-result', result: await opusOnly() });
    } else if (m.cmd === 'stats') {
      send({ type: 'stats', stats: await stats() });
    }
  } catch (err) {
    log('command failed: ' + err);
  }
};

ws.onopen = () => { send({ type: 'hello', userAgent: navigator.userAgent }); start().catch((err) => log('start failed: ' + err)); };
