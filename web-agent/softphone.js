/*
 * Contact Hub — the browser softphone of the agent console (issue 7).
 *
 * Loaded after app.js; talks to the hub over the agent socket through window.ContactHub
 * (docs/protocol.md, "Calls"): the agent's endpoint (browser or desk phone, remembered in
 * localStorage and sent again on every socket (re)connect), ringing with the screen-pop,
 * answer = getUserMedia + RTCPeerConnection + webrtc_offer/webrtc_answer over the socket
 * (the hub is ICE-lite; no ICE servers), call control frames (hold, mute, DTMF, blind and
 * attended transfer, conference, hang-up), live quality from getStats() and the hub's
 * call_quality pushes (the browser's figures go back as call_stats), ICE restart after a
 * network drop, click-to-dial (call_dial) from the customer card and the dock's dial field.
 *
 * The dock lives at the top of the work list (#softphone), so calls stay in sight next to the
 * chat, email and customer panes. Same safety rule as app.js: server strings go into the page
 * as text only (h() builds nodes; no innerHTML).
 */
'use strict';

(function () {
  const CH = window.ContactHub;
  const S = window.HubShared;
  const I18N = window.I18N;
  if (!CH || !S || !I18N) return;
  const t = I18N.t;
  const { $, h, formatDuration } = S;
  const UI = CH.ui;

  // Icon paths adapted from Feather Icons (MIT licence, https://feathericons.com).
  const P = S.PHONE;
  const C10 = S.CIRCLE10;
  const icon = S.makeIcon(Object.assign({}, S.ICON_PATHS, {
    phone: [P],
    'phone-incoming': [P, 'M16 2v6h6', 'M23 1l-7 7'],
    'phone-outgoing': [P, 'M23 7V1h-6', 'M16 8l7-7'],
    'phone-off': ['M10.68 13.31a16 16 0 0 0 3.41 2.6l1.27-1.27a2 2 0 0 1 2.11-.45 12.84 12.84 0 0 0 2.81.7 2 2 0 0 1 1.72 2v3a2 2 0 0 1-2.18 2 19.79 19.79 0 0 1-8.63-3.07 19.42 19.42 0 0 1-3.33-2.67m-2.67-3.34a19.79 19.79 0 0 1-3.07-8.63A2 2 0 0 1 4.11 2h3a2 2 0 0 1 2 1.72 12.84 12.84 0 0 0 .7 2.81 2 2 0 0 1-.45 2.11L8.09 9.91', 'M23 1L1 23'],
    'phone-forward': [P, 'M19 1l4 4-4 4', 'M15 5h8'],
    mic: ['M12 1a3 3 0 0 0-3 3v8a3 3 0 0 0 6 0V4a3 3 0 0 0-3-3z', 'M19 10v2a7 7 0 0 1-14 0v-2', 'M12 19v4', 'M8 23h8'],
    'mic-off': ['M1 1l22 22', 'M9 9v3a3 3 0 0 0 5.12 2.12M15 9.34V4a3 3 0 0 0-5.94-.6', 'M17 16.95A7 7 0 0 1 5 12v-2m14 0v2a7 7 0 0 1-.11 1.23', 'M12 19v4', 'M8 23h8'],
    pause: ['M6 4h4v16H6z', 'M14 4h4v16h-4z'],
    play: ['M5 3l14 9-14 9V3z'],
    grid: ['M5 4h.01', 'M12 4h.01', 'M19 4h.01', 'M5 10h.01', 'M12 10h.01', 'M19 10h.01', 'M5 16h.01', 'M12 16h.01', 'M19 16h.01', 'M12 21h.01'],
    transfer: ['M17 1l4 4-4 4', 'M3 11V9a4 4 0 0 1 4-4h14', 'M7 23l-4-4 4-4', 'M21 13v2a4 4 0 0 1-4 4H3'],
    settings: ['M12 9a3 3 0 1 0 0 6a3 3 0 1 0 0-6z', 'M19.4 15a1.65 1.65 0 0 0 .33 1.82l.06.06a2 2 0 1 1-2.83 2.83l-.06-.06a1.65 1.65 0 0 0-1.82-.33 1.65 1.65 0 0 0-1 1.51V21a2 2 0 1 1-4 0v-.09A1.65 1.65 0 0 0 9 19.4a1.65 1.65 0 0 0-1.82.33l-.06.06a2 2 0 1 1-2.83-2.83l.06-.06A1.65 1.65 0 0 0 4.68 15a1.65 1.65 0 0 0-1.51-1H3a2 2 0 1 1 0-4h.09A1.65 1.65 0 0 0 4.6 9a1.65 1.65 0 0 0-.33-1.82l-.06-.06a2 2 0 1 1 2.83-2.83l.06.06A1.65 1.65 0 0 0 9 4.68a1.65 1.65 0 0 0 1-1.51V3a2 2 0 1 1 4 0v.09a1.65 1.65 0 0 0 1 1.51 1.65 1.65 0 0 0 1.82-.33l.06-.06a2 2 0 1 1 2.83 2.83l-.06.06A1.65 1.65 0 0 0 19.4 9a1.65 1.65 0 0 0 1.51 1H21a2 2 0 1 1 0 4h-.09a1.65 1.65 0 0 0-1.51 1z'],
    volume: ['M11 5L6 9H2v6h4l5 4V5z', 'M19.07 4.93a10 10 0 0 1 0 14.14', 'M15.54 8.46a5 5 0 0 1 0 7.07'],
    'volume-x': ['M11 5L6 9H2v6h4l5 4V5z', 'M23 9l-6 6', 'M17 9l6 6'],
    monitor: ['M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z', 'M8 21h8', 'M12 17v4'],
    merge: ['M18 15a3 3 0 1 0 0 6a3 3 0 1 0 0-6z', 'M6 3a3 3 0 1 0 0 6a3 3 0 1 0 0-6z', 'M6 21V9a9 9 0 0 0 9 9'],
    check: ['M20 6L9 17l-5-5'],
    x: ['M18 6L6 18', 'M6 6l12 12'],
    'alert-triangle': ['M10.29 3.86L1.82 18a2 2 0 0 0 1.71 3h16.94a2 2 0 0 0 1.71-3L13.71 3.86a2 2 0 0 0-3.42 0z', 'M12 9v4', 'M12 17h.01'],
    'alert-octagon': ['M7.86 2h8.28L22 7.86v8.28L16.14 22H7.86L2 16.14V7.86z', 'M12 8v4', 'M12 16h.01'],
    wifi: ['M5 12.55a11 11 0 0 1 14.08 0', 'M1.42 9a16 16 0 0 1 21.16 0', 'M8.53 16.11a6 6 0 0 1 6.95 0', 'M12 20h.01'],
    'wifi-off': ['M1 1l22 22', 'M16.72 11.06A10.94 10.94 0 0 1 19 12.55', 'M5 12.55a10.94 10.94 0 0 1 5.17-2.39', 'M10.71 5.05A16 16 0 0 1 22.58 9', 'M1.42 9a15.91 15.91 0 0 1 4.7-2.88', 'M8.53 16.11a6 6 0 0 1 6.95 0', 'M12 20h.01'],
    user: ['M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2', 'M12 3a4 4 0 1 0 0 8a4 4 0 1 0 0-8z'],
    record: [C10, 'M12 8a4 4 0 1 0 0 8a4 4 0 1 0 0-8z'],
    ban: [C10, 'M4.93 4.93l14.14 14.14'],
    lock: ['M5 11h14a2 2 0 0 1 2 2v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2z', 'M7 11V7a5 5 0 0 1 10 0v4'],
  }), 'phone');

  // ------------------------------------------------------------------ state

  const KEYS = { endpoint: 'contact-hub.endpoint', mic: 'contact-hub.mic', speaker: 'contact-hub.speaker', ringer: 'contact-hub.ringer' };
  const store = {
    get(k) { try { return window.localStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { window.localStorage.setItem(k, v); } catch (e) { /* private mode */ } },
  };
  const LIVE = ['connected', 'held', 'consulting', 'consult_ringing', 'conference'];
  const STATS_MS = 2000;
  const ENDED_KEEP_MS = 5000;
  const FAILED_KEEP_MS = 15000;

  const sp = {
    endpoint: store.get(KEYS.endpoint) === 'phone' ? 'phone' : 'browser',
    ready: null, // the hub's answer to set_endpoint
    calls: new Map(), // contact id -> call
    pops: new Map(), // contact id -> screen_pop of the ACD offer
    agents: new Map(), // agent id -> display name (GET /api/v1/agents)
    dial: { number: '', pending: null, error: null },
    devices: { inputs: [], outputs: [], mic: store.get(KEYS.mic) || '', speaker: store.get(KEYS.speaker) || '' },
    ringer: store.get(KEYS.ringer) !== 'off',
    settingsOpen: false,
    keypadOpen: false,
    qualityOpen: false,
    micProblem: null, // catalogue key: the last getUserMedia failure
    lastAction: null, // {id, at}: where a call_refused error belongs
    audioCtx: null,
    ringTimer: null,
  };

  function newCall(id, kind) {
    const call = {
      id, kind, // inbound | consult (a colleague consults me) | outbound
      state: kind === 'outbound' ? 'dialing' : 'ringing',
      held: false, muted: false, consult: null, recording: false,
      caller: '', number: '', customerId: null, fromAgent: null, pop: null,
      ringingAt: Date.now(), startedAt: null, endedAt: null, endedBy: null,
      pc: null, stream: null, sender: null, audio: null, analyser: null, source: null,
      stats: { browser: null, agent: null, customer: null }, prevStats: null,
      answering: false, waiting: null, offerSent: false, ringPushed: false,
      iceDown: false, reconnecting: false, restarting: false, restarts: 0, restartTimer: null,
      error: null, notice: null, transferAsked: false, removeTimer: null, dtmfSent: '',
    };
    if (id !== null && id !== undefined) sp.calls.set(id, call);
    return call;
  }

  function liveCalls() {
    return [...sp.calls.values()].filter((c) => c.state !== 'ended');
  }

  function agentName(id) {
    if (id === null || id === undefined) return '';
    return sp.agents.get(id) || t('phone.agent_n', { id });
  }

  async function loadAgents() {
    try {
      const data = await UI.api('GET', '/api/v1/agents');
      for (const a of (data && Array.isArray(data.agents)) ? data.agents : []) {
        if (a && a.id !== undefined) sp.agents.set(a.id, a.display_name || a.username || String(a.id));
      }
      render();
    } catch (err) { /* names are a nicety */ }
    return sp.agents;
  }

  // ------------------------------------------------------------------ audio helpers

  function audioCtx() {
    if (!sp.audioCtx) {
      try { sp.audioCtx = new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { return null; }
    }
    if (sp.audioCtx.state === 'suspended') sp.audioCtx.resume().catch(() => {});
    return sp.audioCtx;
  }

  /** The ring: two short bursts of 440+480 Hz every 3 s, while a call rings (optional). */
  function updateRinger() {
    const ringing = liveCalls().some((c) => c.state === 'ringing' && !c.answering && c.kind !== 'outbound');
    if (!ringing || !sp.ringer || sp.endpoint !== 'browser') {
      clearInterval(sp.ringTimer);
      sp.ringTimer = null;
      return;
    }
    if (sp.ringTimer) return;
    const burst = () => {
      const ctx = audioCtx();
      if (!ctx) return;
      const gain = ctx.createGain();
      gain.gain.value = 0;
      gain.connect(ctx.destination);
      const now = ctx.currentTime;
      for (const f of [440, 480]) {
        const o = ctx.createOscillator();
        o.frequency.value = f;
        o.connect(gain);
        o.start(now);
        o.stop(now + 1.2);
      }
      gain.gain.setValueAtTime(0.06, now);
      gain.gain.setValueAtTime(0, now + 0.4);
      gain.gain.setValueAtTime(0.06, now + 0.6);
      gain.gain.setValueAtTime(0, now + 1.0);
    };
    burst();
    sp.ringTimer = setInterval(burst, 3000);
  }

  function micKey(err) {
    const name = err && err.name;
    if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') return 'phone.mic.denied';
    if (name === 'NotFoundError' || name === 'DevicesNotFoundError' || name === 'OverconstrainedError') return 'phone.mic.none';
    if (name === 'NotReadableError' || name === 'TrackStartError' || name === 'AbortError') return 'phone.mic.busy';
    if (name === 'InsecureContext') return 'phone.mic.insecure';
    return null;
  }

  async function getMic() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      const e = new Error('no mediaDevices');
      e.name = 'InsecureContext';
      throw e;
    }
    const want = sp.devices.mic;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: want ? { deviceId: { exact: want } } : true });
      sp.micProblem = null;
      listDevices();
      return stream;
    } catch (err) {
      if (want && (err.name === 'OverconstrainedError' || err.name === 'NotFoundError')) {
        sp.devices.mic = ''; // the chosen microphone is gone: the default one
        return getMic();
      }
      throw err;
    }
  }

  async function listDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    try {
      const all = await navigator.mediaDevices.enumerateDevices();
      sp.devices.inputs = all.filter((d) => d.kind === 'audioinput');
      sp.devices.outputs = all.filter((d) => d.kind === 'audiooutput');
      if (sp.settingsOpen) render();
    } catch (err) { /* leave the lists as they are */ }
  }

  const canChooseOutput = typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;

  function applySpeaker(call) {
    if (!call.audio || !canChooseOutput) return;
    call.audio.setSinkId(sp.devices.speaker || '').catch(() => {
      call.notice = 'phone.devices.output_failed';
      render();
    });
  }

  function attachRemote(call, stream) {
    if (!call.audio) {
      call.audio = h('audio', { autoplay: true, class: 'sp-remote-audio' });
      document.body.append(call.audio);
    }
    call.audio.srcObject = stream;
    applySpeaker(call);
    const p = call.audio.play();
    if (p && p.catch) p.catch(() => {});
    // A level meter (and the test's tone check) on what the other side sends.
    const ctx = audioCtx();
    if (ctx) {
      try {
        if (call.source) call.source.disconnect();
        call.source = ctx.createMediaStreamSource(stream);
        call.analyser = ctx.createAnalyser();
        call.analyser.fftSize = 8192;
        const sink = ctx.createGain();
        sink.gain.value = 0;
        call.source.connect(call.analyser);
        call.analyser.connect(sink);
        sink.connect(ctx.destination);
      } catch (err) {
        call.analyser = null;
      }
    }
  }

  function closeMedia(call) {
    clearTimeout(call.restartTimer);
    if (call.waiting) {
      clearTimeout(call.waiting.timer);
      call.waiting.reject(new Error('closed'));
      call.waiting = null;
    }
    if (call.pc) {
      try { call.pc.close(); } catch (e) { /* closed */ }
      call.pc = null;
    }
    if (call.stream) for (const tr of call.stream.getTracks()) tr.stop();
    call.stream = null;
    call.sender = null;
    if (call.source) { try { call.source.disconnect(); } catch (e) { /* gone */ } }
    call.source = null;
    call.analyser = null;
    if (call.audio) {
      call.audio.srcObject = null;
      call.audio.remove();
      call.audio = null;
    }
  }

  function goertzel(x, freq, rate) {
    const k = 2 * Math.cos(2 * Math.PI * freq / rate);
    let s1 = 0;
    let s2 = 0;
    for (let i = 0; i < x.length; i++) {
      const s = x[i] + k * s1 - s2;
      s2 = s1;
      s1 = s;
    }
    return (s1 * s1 + s2 * s2 - k * s1 * s2) / (x.length * x.length);
  }

  function level(call) {
    if (!call.analyser) return 0;
    const buf = new Float32Array(1024);
    call.analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    return Math.sqrt(sum / buf.length);
  }

  // ------------------------------------------------------------------ WebRTC

  function createPc(call, stream) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    call.pc = pc;
    call.stream = stream;
    call.sender = pc.addTrack(stream.getAudioTracks()[0], stream);
    for (const tr of stream.getAudioTracks()) tr.enabled = !call.muted;
    pc.ontrack = (ev) => attachRemote(call, ev.streams[0] || new MediaStream([ev.track]));
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (!c || !c.candidate || !call.offerSent || call.id === null) return;
      CH.send({ type: 'webrtc_candidate', contact_id: call.id, candidate: c.candidate, ufrag: c.usernameFragment || undefined });
    };
    pc.oniceconnectionstatechange = () => onIce(call);
    return pc;
  }

  function gathered(pc, ms) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
      function check() { if (pc.iceGatheringState === 'complete') done(); }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  async function localOffer(call, restart) {
    const offer = await call.pc.createOffer(restart ? { iceRestart: true } : undefined);
    await call.pc.setLocalDescription(offer);
    await gathered(call.pc, 1500);
    return call.pc.localDescription.sdp;
  }

  /** Sends our SDP offer for the call; resolves with the hub's answer SDP. */
  function negotiate(call, sdp) {
    return new Promise((resolve, reject) => {
      if (call.waiting) { clearTimeout(call.waiting.timer); call.waiting.reject(new Error('superseded')); }
      const timer = setTimeout(() => {
        call.waiting = null;
        reject(Object.assign(new Error(t('phone.error.no_answer_sdp')), { shown: true }));
      }, 10000);
      call.waiting = { resolve, reject, timer };
      if (!CH.send({ type: 'webrtc_offer', contact_id: call.id, sdp })) {
        clearTimeout(timer);
        call.waiting = null;
        reject(Object.assign(new Error(t('phone.error.offline')), { shown: true }));
        return;
      }
      call.offerSent = true;
    });
  }

  function waitFor(pred, ms) {
    return new Promise((resolve) => {
      if (pred()) { resolve(true); return; }
      const start = Date.now();
      const timer = setInterval(() => {
        if (pred()) { clearInterval(timer); resolve(true); } else if (Date.now() - start > ms) { clearInterval(timer); resolve(false); }
      }, 50);
    });
  }

  /** Answer a call ringing in this console (an ACD offer or a colleague's consultation). */
  async function answer(id) {
    if (sp.endpoint !== 'browser') return false;
    let call = sp.calls.get(id);
    if (!call) call = newCall(id, 'inbound');
    if (call.answering || call.pc || call.state !== 'ringing') return true;
    call.answering = true;
    call.error = null;
    render();
    audioCtx(); // inside the click: audio may start
    try {
      // The ring push can follow the ACD's offer by a moment.
      await waitFor(() => call.ringPushed || call.state === 'ended', 3000);
      if (call.state === 'ended') return true;
      const stream = await getMic();
      if (call.state === 'ended') { for (const tr of stream.getTracks()) tr.stop(); return true; }
      createPc(call, stream);
      const sdp = await localOffer(call, false);
      const answerSdp = await negotiate(call, sdp);
      await call.pc.setRemoteDescription({ type: 'answer', sdp: answerSdp });
      call.notice = 'phone.notice.connecting';
    } catch (err) {
      call.answering = false;
      const key = micKey(err);
      if (key) {
        sp.micProblem = key;
        call.error = { key };
      } else if (call.state !== 'ended' && err.message !== 'closed') {
        call.error = { text: err.message || String(err) };
      }
      closeMedia(call);
    }
    render();
    return true;
  }

  function decline(call) {
    if (call.kind === 'consult') {
      CH.send({ type: 'call_hangup', contact_id: call.id });
      endCall(call, 'declined');
      return;
    }
    if (!CH.send({ type: 'reject', contact_id: call.id })) UI.toast(t('phone.error.offline'), 'error');
    call.notice = 'phone.notice.declining';
    render();
  }

  function onIce(call) {
    const pc = call.pc;
    if (!pc) return;
    const st = pc.iceConnectionState;
    if (st === 'connected' || st === 'completed') {
      const wasDown = call.iceDown;
      call.iceDown = false;
      call.restarts = 0;
      clearTimeout(call.restartTimer);
      if (call.notice === 'phone.notice.connecting') call.notice = null;
      if (call.kind === 'consult' && call.state === 'ringing') {
        call.state = 'connected';
        call.answering = false;
        call.startedAt = Date.now();
      }
      if (wasDown) call.notice = 'phone.notice.recovered';
      render();
    } else if (st === 'disconnected' || st === 'failed') {
      if (call.state === 'ended') return;
      call.iceDown = true;
      render();
      clearTimeout(call.restartTimer);
      call.restartTimer = setTimeout(() => restartIce(call), st === 'failed' ? 0 : 1500);
    }
  }

  /** After a network drop: a new offer with fresh ICE credentials for the same call. */
  async function restartIce(call, force) {
    if (!call.pc || call.state === 'ended' || call.restarting) return;
    const st = call.pc.iceConnectionState;
    if (!force && st !== 'disconnected' && st !== 'failed') return;
    call.restarting = true;
    call.restarts += 1;
    render();
    try {
      const sdp = await localOffer(call, true);
      const answerSdp = await negotiate(call, sdp);
      if (call.pc) await call.pc.setRemoteDescription({ type: 'answer', sdp: answerSdp });
    } catch (err) {
      /* tried again below, while the hub keeps the call */
    } finally {
      call.restarting = false;
    }
    clearTimeout(call.restartTimer);
    if (call.restarts < 10) call.restartTimer = setTimeout(() => restartIce(call), 4000);
  }

  // ------------------------------------------------------------------ statistics

  async function pollStats() {
    for (const call of liveCalls()) {
      if (!call.pc || call.state === 'ringing' && !call.answering) continue;
      let report;
      try { report = await call.pc.getStats(); } catch (err) { continue; }
      let inb = null;
      let rin = null;
      let pair = null;
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') inb = s;
        else if (s.type === 'remote-inbound-rtp' && s.kind === 'audio') rin = s;
        else if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated || !pair)) pair = s;
      });
      if (!inb) continue;
      const received = inb.packetsReceived || 0;
      const lost = Math.max(0, inb.packetsLost || 0);
      const prev = call.prevStats;
      let fraction = null;
      if (prev) {
        const dr = received - prev.received;
        const dl = lost - prev.lost;
        fraction = dr + dl > 0 ? Math.max(0, dl) / (dr + Math.max(0, dl)) : 0;
      }
      call.prevStats = { received, lost };
      let rtt = null;
      if (rin && typeof rin.roundTripTime === 'number') rtt = rin.roundTripTime * 1000;
      else if (pair && typeof pair.currentRoundTripTime === 'number') rtt = pair.currentRoundTripTime * 1000;
      const b = {
        packets_received: received, packets_lost: lost, fraction_lost: fraction,
        jitter_ms: typeof inb.jitter === 'number' ? inb.jitter * 1000 : null, rtt_ms: rtt,
        audio_level: typeof inb.audioLevel === 'number' ? inb.audioLevel : null,
      };
      call.stats.browser = b;
      if (call.id !== null && LIVE.includes(call.state)) {
        const frame = { type: 'call_stats', contact_id: call.id };
        for (const k of ['packets_received', 'packets_lost', 'fraction_lost', 'jitter_ms', 'rtt_ms']) {
          const v = b[k];
          if (typeof v === 'number' && Number.isFinite(v) && v >= 0) frame[k] = Math.round(v * 1000) / 1000;
        }
        CH.send(frame);
      }
    }
    tick();
  }

  function lossPct(s) {
    if (!s) return null;
    if (typeof s.fraction_lost === 'number') return s.fraction_lost <= 1 ? s.fraction_lost * 100 : s.fraction_lost / 2.56;
    const total = (s.packets_received || 0) + (s.packets_lost || 0);
    return total ? (s.packets_lost || 0) * 100 / total : null;
  }

  /** good | fair | poor | unknown: the worst of the browser's and the hub's figures. */
  function qualityLevel(call) {
    const all = [call.stats.browser, call.stats.agent, call.stats.customer].filter(Boolean);
    if (!all.length) return 'unknown';
    let worst = 0;
    for (const s of all) {
      const loss = lossPct(s) || 0;
      const jitter = s.jitter_ms || 0;
      const rtt = s.rtt_ms || 0;
      const lvl = loss >= 5 || jitter >= 60 || rtt >= 500 ? 2 : loss >= 1 || jitter >= 30 || rtt >= 250 ? 1 : 0;
      worst = Math.max(worst, lvl);
    }
    return ['good', 'fair', 'poor'][worst];
  }

  const fmtMs = (v) => (typeof v === 'number' && Number.isFinite(v) ? t('phone.quality.ms', { n: Math.round(v) }) : '—');
  const fmtPct = (v) => (typeof v === 'number' && Number.isFinite(v) ? t('phone.quality.pct', { n: v < 10 ? v.toFixed(1) : Math.round(v) }) : '—');

  // ------------------------------------------------------------------ socket frames

  function onHello() {
    CH.send({ type: 'set_endpoint', endpoint: sp.endpoint });
    for (const call of liveCalls()) if (call.iceDown) restartIce(call);
    if (!sp.agents.size) loadAgents();
  }

  function onEndpoint(m) {
    if (m.endpoint === 'browser' || m.endpoint === 'phone') sp.endpoint = m.endpoint;
    sp.ready = !!m.ready;
    render();
  }

  function onOffer(m) {
    const c = m.contact;
    if (!c || c.channel !== 'voice') return;
    sp.pops.set(c.id, m.screen_pop || null);
    const call = sp.calls.get(c.id);
    if (call) { call.pop = m.screen_pop || call.pop; render(); }
  }

  function onOfferCancelled(m) {
    const call = sp.calls.get(m.contact_id);
    if (!call || call.kind === 'outbound') return;
    if (call.state === 'ringing' || call.answering) {
      const reason = String(m.reason || '');
      endCall(call, reason === 'rejected' ? 'declined' : 'missed');
    }
  }

  async function loadPop(call) {
    if (call.pop || call.customerId === null || call.customerId === undefined || call.popLoading) return;
    const pop = sp.pops.get(call.id);
    if (pop) { call.pop = pop; return; }
    call.popLoading = true;
    try {
      call.pop = await UI.api('GET', '/api/v1/customers/' + encodeURIComponent(call.customerId) + '/screen-pop');
      render();
    } catch (err) { /* the number is shown */ }
  }

  /** My consultation leg became the call itself: the colleague completed the transfer to me. */
  function adoptTransferred(id) {
    const mine = [...sp.calls.values()].find((c) => c.kind === 'consult' && c.pc && c.state !== 'ended');
    if (!mine) return null;
    sp.calls.delete(mine.id);
    mine.prevId = mine.id;
    mine.id = id;
    mine.kind = 'inbound';
    mine.transferredIn = true;
    mine.notice = 'phone.notice.transferred_in';
    sp.calls.set(id, mine);
    return mine;
  }

  function onCallState(m) {
    const id = m.contact_id;
    if (id === undefined || id === null) return;
    let call = sp.calls.get(id);
    if (!call && m.state !== 'ended' && m.state !== 'ringing') call = adoptTransferred(id);
    if (!call) {
      if (m.state === 'ended') return;
      call = newCall(id, m.consult === true ? 'consult' : m.state === 'dialing' ? 'outbound' : 'inbound');
    }
    if (call.removeTimer && m.state !== 'ended') { clearTimeout(call.removeTimer); call.removeTimer = null; }
    if (m.caller) call.caller = String(m.caller);
    if (m.number) call.number = String(m.number);
    if (m.customer_id !== undefined && m.customer_id !== null) call.customerId = m.customer_id;
    if (!call.pop && sp.pops.has(id)) call.pop = sp.pops.get(id);
    switch (m.state) {
      case 'ringing':
        call.ringPushed = true;
        if (m.consult === true) {
          call.kind = 'consult';
          call.fromAgent = m.from_agent === undefined ? null : m.from_agent;
          if (call.fromAgent !== null && !sp.agents.has(call.fromAgent)) loadAgents();
        }
        if (call.state !== 'connected') call.state = 'ringing';
        loadPop(call);
        break;
      case 'ended':
        endCall(call, m.ended_by || null);
        return;
      case 'reconnecting':
        call.reconnecting = true;
        break;
      default:
        if (typeof m.held === 'boolean') call.held = m.held;
        if (typeof m.muted === 'boolean') call.muted = m.muted;
        if (m.consult !== undefined && typeof m.consult !== 'boolean') call.consult = m.consult;
        if (typeof m.recording === 'boolean') call.recording = m.recording;
        if (LIVE.includes(m.state) && !call.startedAt) call.startedAt = Date.now();
        if (m.state !== 'consult_ringing' && m.state !== 'consulting') call.consultFailed = null;
        call.reconnecting = false;
        call.answering = false;
        if (call.notice === 'phone.notice.connecting' || call.notice === 'phone.notice.declining') call.notice = null;
        call.state = m.state;
        if (call.stream) for (const tr of call.stream.getAudioTracks()) tr.enabled = !call.muted;
        break;
    }
    render();
  }

  function endCall(call, by) {
    if (call.state === 'ended' && call.endedBy === by) return;
    const wasLive = LIVE.includes(call.state) || call.answering;
    const lostMedia = call.iceDown || call.reconnecting;
    call.state = 'ended';
    call.endedBy = by;
    call.endedAt = Date.now();
    call.answering = false;
    if (by === 'agent_media_failed' || (by === 'transfer' && lostMedia && !call.transferAsked)) {
      call.error = { key: by === 'transfer' ? 'phone.ended.requeued' : 'phone.ended.media_failed' };
    } else if (by === 'transfer') {
      call.notice = 'phone.ended.transferred';
    } else if (by === 'customer') {
      call.notice = 'phone.ended.customer';
    } else if (by === 'missed') {
      call.notice = 'phone.ended.missed';
    } else if (by === 'declined') {
      call.notice = 'phone.ended.declined';
    } else {
      call.notice = wasLive ? 'phone.ended.ended' : 'phone.ended.not_connected';
    }
    closeMedia(call);
    clearTimeout(call.removeTimer);
    call.removeTimer = setTimeout(() => {
      if (sp.calls.get(call.id) === call && call.state === 'ended') {
        sp.calls.delete(call.id);
        render();
      }
    }, call.error ? FAILED_KEEP_MS : ENDED_KEEP_MS);
    render();
  }

  function onAnswer(m) {
    const call = sp.calls.get(m.contact_id);
    if (call && call.waiting) {
      clearTimeout(call.waiting.timer);
      const w = call.waiting;
      call.waiting = null;
      w.resolve(String(m.sdp || ''));
    }
  }

  function onQuality(m) {
    const call = sp.calls.get(m.contact_id);
    if (!call || (m.leg !== 'agent' && m.leg !== 'customer')) return;
    call.stats[m.leg] = m;
    tick();
  }

  function onConsultFailed(m) {
    const call = sp.calls.get(m.contact_id);
    if (!call) return;
    const code = Number(m.code);
    call.consultFailed = code === 603 || code === 486 ? 'phone.consult.declined' : code === 480 || code === 408 ? 'phone.consult.no_answer' : 'phone.consult.failed';
    render();
  }

  function onDialing(m) {
    const call = sp.dialCall;
    sp.dial.pending = null;
    sp.dialCall = null;
    clearTimeout(sp.dialTimer);
    if (!call) return;
    call.id = m.contact_id;
    if (m.number) call.number = String(m.number);
    const known = sp.calls.get(call.id);
    if (known && known !== call) { // a push overtook the reply
      call.state = known.state;
      call.startedAt = known.startedAt;
    }
    sp.calls.set(call.id, call);
    call.offerSent = true;
    if (m.sdp && call.pc) {
      call.pc.setRemoteDescription({ type: 'answer', sdp: String(m.sdp) }).catch((err) => {
        call.error = { text: String(err && err.message) };
        render();
      });
    }
    sp.dial.number = '';
    render();
  }

  /** Errors of the softphone's own frames (app.js asks before its generic toast). */
  function ownsError(m) {
    if (m.code === 'webrtc_refused') {
      const call = sp.calls.get(m.contact_id) || null;
      if (call && call.waiting) {
        clearTimeout(call.waiting.timer);
        const w = call.waiting;
        call.waiting = null;
        w.reject(Object.assign(new Error(t('phone.error.webrtc_refused', { message: m.message || '' })), { shown: true }));
      } else if (call) {
        call.error = { text: t('phone.error.webrtc_refused', { message: m.message || '' }) };
        render();
      } else {
        UI.toast(t('phone.error.webrtc_refused', { message: m.message || '' }), 'error');
      }
      return true;
    }
    if (sp.dial.pending) {
      sp.dial.pending = null;
      clearTimeout(sp.dialTimer);
      sp.dial.error = m.message || m.code;
      if (sp.dialCall) { closeMedia(sp.dialCall); sp.dialCall = null; }
      render();
      return true;
    }
    if (m.code === 'call_refused') {
      const a = sp.lastAction;
      const call = a && Date.now() - a.at < 10000 ? sp.calls.get(a.id) : null;
      if (call) {
        call.error = { text: m.message || m.code };
        render();
        return true;
      }
      UI.toast(t('phone.error.refused', { message: m.message || m.code }), 'error');
      return true;
    }
    return false;
  }

  // ------------------------------------------------------------------ actions

  function control(call, type, extra) {
    const frame = Object.assign({ type, contact_id: call.id }, extra || {});
    if (!CH.send(frame)) {
      UI.toast(t('phone.error.offline'), 'error');
      return false;
    }
    call.error = null;
    sp.lastAction = { id: call.id, at: Date.now() };
    return true;
  }

  function hangup(call) {
    if (call.kind === 'consult' && call.state !== 'connected' && call.state !== 'ringing') return;
    control(call, 'call_hangup');
    if (call.kind === 'consult') endCall(call, 'agent');
  }

  function toggleMute(call) {
    const mute = !call.muted;
    if (control(call, mute ? 'call_mute' : 'call_unmute')) {
      call.muted = mute; // the push confirms
      if (call.stream) for (const tr of call.stream.getAudioTracks()) tr.enabled = !mute;
      render();
    }
  }

  function toggleHold(call) {
    control(call, call.held ? 'call_unhold' : 'call_hold');
  }

  function sendDigit(call, d) {
    control(call, 'call_dtmf', { digits: d });
    // Kept on the call: the console re-renders the keypad on every state push.
    call.dtmfSent = (call.dtmfSent + d).slice(-24);
    const out = $('sp-dtmf-sent');
    if (out) out.textContent = call.dtmfSent;
    // A short local key click so the agent hears the key went.
    const ctx = audioCtx();
    if (ctx) {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = 1200;
      g.gain.value = 0.03;
      o.connect(g);
      g.connect(ctx.destination);
      o.start();
      o.stop(ctx.currentTime + 0.06);
    }
  }

  /** Click-to-dial: a number (normalized by the hub to E.164), optionally for a customer. */
  async function dial(number, customerId) {
    number = String(number || '').trim();
    if (!number) {
      sp.dial.error = t('phone.dial.need_number');
      render();
      return;
    }
    if (sp.dial.pending) return;
    sp.dial = { number, pending: 'media', error: null };
    render();
    const frame = { type: 'call_dial', number };
    if (customerId !== undefined && customerId !== null) frame.customer_id = customerId;
    let call = null;
    if (sp.endpoint === 'browser') {
      call = newCall(null, 'outbound');
      call.number = number;
      call.customerId = customerId === undefined ? null : customerId;
      sp.dialCall = call;
      audioCtx();
      try {
        createPc(call, await getMic());
        frame.sdp = await localOffer(call, false);
      } catch (err) {
        const key = micKey(err);
        if (key) sp.micProblem = key;
        sp.dial.error = key ? t(key + '.short') : String(err && err.message);
        sp.dial.pending = null;
        sp.dialCall = null;
        closeMedia(call);
        render();
        return;
      }
    }
    if (!CH.send(frame)) {
      sp.dial = { number, pending: null, error: t('phone.error.offline') };
      if (call) closeMedia(call);
      sp.dialCall = null;
      render();
      return;
    }
    sp.dial.pending = 'hub';
    clearTimeout(sp.dialTimer);
    sp.dialTimer = setTimeout(() => {
      if (!sp.dial.pending) return;
      sp.dial.pending = null;
      sp.dial.error = t('phone.error.timeout');
      if (sp.dialCall) { closeMedia(sp.dialCall); sp.dialCall = null; }
      render();
    }, 15000);
    render();
  }

  function setEndpoint(ep) {
    if (ep !== 'browser' && ep !== 'phone') return;
    sp.endpoint = ep;
    store.set(KEYS.endpoint, ep);
    sp.ready = null;
    CH.send({ type: 'set_endpoint', endpoint: ep });
    render();
  }

  async function switchMic(deviceId) {
    sp.devices.mic = deviceId;
    store.set(KEYS.mic, deviceId);
    for (const call of liveCalls()) {
      if (!call.sender) continue;
      try {
        const stream = await getMic();
        const track = stream.getAudioTracks()[0];
        track.enabled = !call.muted;
        await call.sender.replaceTrack(track);
        if (call.stream) for (const tr of call.stream.getTracks()) tr.stop();
        call.stream = stream;
      } catch (err) {
        const key = micKey(err);
        if (key) sp.micProblem = key;
      }
    }
    render();
  }

  function switchSpeaker(deviceId) {
    sp.devices.speaker = deviceId;
    store.set(KEYS.speaker, deviceId);
    for (const call of liveCalls()) applySpeaker(call);
  }

  async function checkMic() {
    try {
      const stream = await getMic();
      for (const tr of stream.getTracks()) tr.stop();
      UI.toast(t('phone.mic.ok'));
    } catch (err) {
      sp.micProblem = micKey(err) || 'phone.mic.other';
    }
    render();
  }

  // ------------------------------------------------------------------ transfer dialog

  async function openTransfer(call) {
    let tab = 'agent';
    let chosen = null; // {queue} | {agent_id, name} | {number}
    const numberInput = h('input', {
      type: 'tel', class: 'sp-input', id: 'sp-transfer-number', maxlength: 32, autocomplete: 'off',
      placeholder: t('phone.transfer.number_placeholder'), dataset: { role: 'transfer-number' },
      oninput: (ev) => { chosen = ev.target.value.trim() ? { number: ev.target.value.trim() } : null; update(); },
    });
    const lists = {
      queue: h('div', { class: 'transfer-list', hidden: true }, h('div', { class: 'muted small', text: t('phone.transfer.loading') })),
      agent: h('div', { class: 'transfer-list' }, h('div', { class: 'muted small', text: t('phone.transfer.loading') })),
      number: h('div', { class: 'transfer-list sp-transfer-number', hidden: true },
        h('label', { for: 'sp-transfer-number', class: 'wrapup-label', text: t('phone.transfer.number') }), numberInput),
    };
    const blind = h('button', { type: 'button', class: 'btn', disabled: true, dataset: { action: 'phone-blind-go' } },
      icon('phone-forward', 'icon-xs'), h('span', { text: t('phone.transfer.blind') }));
    const consult = h('button', { type: 'button', class: 'btn btn-primary', disabled: true, dataset: { action: 'phone-consult-go' } },
      icon('users', 'icon-xs'), h('span', { text: t('phone.transfer.consult') }));
    const hint = h('p', { class: 'muted small sp-transfer-hint', text: t('phone.transfer.hint') });
    function update() {
      blind.disabled = !chosen;
      consult.disabled = !chosen || !!chosen.queue;
      consult.title = chosen && chosen.queue ? t('phone.transfer.no_consult_queue') : '';
    }
    const tabBtn = (key) => h('button', {
      type: 'button', role: 'tab', class: 'seg-btn' + (key === tab ? ' is-active' : ''), dataset: { transferTab: key },
      'aria-selected': key === tab ? 'true' : 'false',
      onclick: (ev) => {
        tab = key;
        for (const b of ev.currentTarget.parentNode.children) {
          const on = b.dataset.transferTab === key;
          b.classList.toggle('is-active', on);
          b.setAttribute('aria-selected', on ? 'true' : 'false');
        }
        for (const k of Object.keys(lists)) lists[k].hidden = k !== key;
        chosen = null;
        for (const r of document.querySelectorAll('#modal-root input[type=radio]')) r.checked = false;
        if (key === 'number') { numberInput.focus(); if (numberInput.value.trim()) chosen = { number: numberInput.value.trim() }; }
        update();
      },
    }, h('span', { text: t('phone.transfer.tab_' + key) }));
    const go = (type) => {
      if (!chosen) return;
      const target = chosen.queue ? { queue: chosen.queue } : chosen.agent_id !== undefined ? { agent_id: chosen.agent_id } : { number: chosen.number };
      if (type === 'call_transfer') call.transferAsked = true;
      if (control(call, type, target)) {
        call.consultTarget = chosen;
        UI.closeModal();
        render();
      }
    };
    blind.addEventListener('click', () => go('call_transfer'));
    consult.addEventListener('click', () => go('call_consult'));
    UI.openModal(t('phone.transfer.title', { name: callName(call) }),
      [h('div', { class: 'seg', role: 'tablist' }, tabBtn('agent'), tabBtn('queue'), tabBtn('number')),
        lists.agent, lists.queue, lists.number, hint],
      [h('button', { type: 'button', class: 'btn', onclick: UI.closeModal, text: t('phone.cancel') }), blind, consult]);

    UI.api('GET', '/api/v1/queues').then((data) => {
      const queues = (data && Array.isArray(data.queues)) ? data.queues : [];
      lists.queue.replaceChildren(...queues.map((q) => h('label', { class: 'transfer-option' },
        h('input', { type: 'radio', name: 'sp-transfer', dataset: { queue: q.name }, onchange: () => { chosen = { queue: q.name }; update(); } }),
        h('span', { class: 'transfer-name' }, h('strong', { text: q.display_name || q.name }), h('span', { class: 'muted small', text: q.description || '' })),
        h('span', { class: 'transfer-figures' }, h('span', { class: 'chip chip-xs ' + (q.waiting ? 'tone-warn' : 'tone-muted'), text: t('phone.transfer.waiting', { n: q.waiting || 0 }) })))));
    }).catch((err) => lists.queue.replaceChildren(h('p', { class: 'wrapup-error', text: UI.describeError(err) })));

    const me = CH.user() && CH.user().id;
    UI.api('GET', '/api/v1/agents').then((data) => {
      const agents = ((data && Array.isArray(data.agents)) ? data.agents : []).filter((a) => a && a.id !== me && a.state && a.state.state !== 'logged_out');
      for (const a of agents) sp.agents.set(a.id, a.display_name);
      if (!agents.length) {
        lists.agent.replaceChildren(h('p', { class: 'muted small transfer-empty', text: t('phone.transfer.no_agents') }));
        return;
      }
      lists.agent.replaceChildren(...agents.map((a) => h('label', { class: 'transfer-option', dataset: { agentId: a.id } },
        h('input', { type: 'radio', name: 'sp-transfer', dataset: { agent: a.id }, onchange: () => { chosen = { agent_id: a.id, name: a.display_name }; update(); } }),
        h('span', { class: 'transfer-name' }, h('strong', { text: a.display_name }), h('span', { class: 'muted small', text: UI.stateLabel(a.state) })),
        h('span', { class: 'transfer-figures' }, h('span', { class: 'chip chip-xs agent-chip st-' + a.state.state, text: UI.stateLabel(a.state) })))));
    }).catch((err) => lists.agent.replaceChildren(h('p', { class: 'wrapup-error', text: UI.describeError(err) })));
  }

  // ------------------------------------------------------------------ rendering

  function callCustomer(call) {
    const pop = call.pop || sp.pops.get(call.id);
    return (pop && pop.customer) || null;
  }

  function callName(call) {
    const cust = callCustomer(call);
    if (cust && cust.name) return cust.name;
    const num = call.caller || call.number;
    return num ? UI.formatPhone(num) : t('phone.unknown_caller');
  }

  function targetName(target) {
    if (!target) return '';
    if (target.agent_id !== undefined) return agentName(target.agent_id);
    if (target.number) return UI.formatPhone(target.number);
    if (target.queue) return UI.queueLabel(target.queue);
    return '';
  }

  function stateText(call) {
    if (call.state === 'ringing') {
      if (call.answering) return t('phone.state.answering');
      return call.kind === 'consult' ? t('phone.state.consult_in', { agent: agentName(call.fromAgent) }) : t('phone.state.ringing');
    }
    if (call.kind === 'consult' && call.state === 'connected') return t('phone.state.consult_talk', { agent: agentName(call.fromAgent) });
    if (call.state === 'consult_ringing') return t('phone.state.consult_ringing', { target: targetName(call.consult && call.consult.target) });
    if (call.state === 'consulting') return t('phone.state.consulting', { target: targetName(call.consult && call.consult.target) });
    if (call.state === 'held') return t('phone.state.held');
    if (call.state === 'dialing') return t('phone.state.dialing', { number: UI.formatPhone(call.number) });
    return I18N.has('phone.state.' + call.state) ? t('phone.state.' + call.state) : call.state;
  }

  function btn(action, iconName, label, onclick, extra) {
    const o = Object.assign({ type: 'button', class: 'sp-btn', dataset: { action }, title: label, onclick }, extra || {});
    return h('button', o, icon(iconName), h('span', { class: 'sp-btn-label', text: label }));
  }

  function buildBanner(call) {
    const out = [];
    if ((call.iceDown || call.reconnecting) && call.state !== 'ended') {
      out.push(h('div', { class: 'sp-banner sp-banner-warn', role: 'status', dataset: { role: 'reconnecting' } },
        icon('wifi-off', 'icon-xs'),
        h('span', { text: t('phone.reconnecting', { n: call.restarts }) })));
    }
    if (call.error) {
      const key = call.error.key;
      const micHelp = key && key.startsWith('phone.mic.');
      out.push(h('div', { class: 'sp-banner sp-banner-bad', role: 'alert', dataset: { role: 'call-error' } },
        icon(micHelp ? 'mic-off' : 'alert-octagon', 'icon-xs'),
        h('div', { class: 'sp-banner-body' },
          h('strong', { text: key ? t(key) : t('phone.error.title') }),
          micHelp ? h('span', { text: t(key + '.help') }) : key ? null : h('span', { text: call.error.text }))));
    }
    if (call.consultFailed) {
      out.push(h('div', { class: 'sp-banner sp-banner-warn', role: 'alert', dataset: { role: 'consult-failed' } },
        icon('alert-triangle', 'icon-xs'), h('span', { text: t(call.consultFailed, { target: targetName(call.consultTarget) }) })));
    }
    if (call.notice && !call.error && call.state !== 'ended') {
      out.push(h('div', { class: 'sp-banner sp-banner-info', role: 'status' }, h('span', { text: t(call.notice) })));
    }
    return out;
  }

  function buildWho(call) {
    const cust = callCustomer(call);
    const pop = call.pop || sp.pops.get(call.id);
    const num = call.caller || call.number;
    const bal = pop && pop.balance;
    const alerts = pop && Array.isArray(pop.alerts) ? pop.alerts.length : 0;
    return h('div', { class: 'sp-who' },
      h('span', { class: 'sp-avatar', 'aria-hidden': 'true' }, icon(call.kind === 'outbound' ? 'phone-outgoing' : call.kind === 'consult' ? 'users' : 'phone-incoming')),
      h('div', { class: 'sp-who-text' },
        h('div', { class: 'sp-name-row' },
          h('span', { class: 'sp-name', dataset: { role: 'caller-name' }, text: callName(call) }),
          cust && cust.tier ? UI.tierBadge(cust.tier) : null),
        h('div', { class: 'sp-sub' },
          num && cust ? h('span', { class: 'mono', dataset: { role: 'caller-number' }, text: UI.formatPhone(num) }) : null,
          !cust && call.customerId == null && call.kind !== 'outbound' ? h('span', { text: t('phone.not_in_archive') }) : null),
        cust && (bal || alerts) ? h('div', { class: 'sp-facts' },
          bal && bal.amount_minor !== null && bal.amount_minor !== undefined
            ? h('span', { class: 'sp-fact' + (bal.amount_minor > 0 ? ' is-owed' : ''), text: t('phone.balance', { amount: UI.formatMoney(bal.amount_minor, bal.currency) }) }) : null,
          alerts ? h('span', { class: 'sp-fact is-alert' }, icon('alert-triangle', 'icon-xs'), h('span', { text: t('phone.alerts', { n: alerts }) })) : null) : null),
      cust && cust.id !== undefined ? h('button', {
        type: 'button', class: 'icon-btn sp-open', title: t('phone.show_customer'), 'aria-label': t('phone.show_customer'),
        onclick: () => CH.openCustomer(cust.id),
      }, icon('user')) : null);
  }

  function buildQuality(call) {
    const lvl = qualityLevel(call);
    const b = call.stats.browser;
    const a = call.stats.agent;
    const c = call.stats.customer;
    const row = (label, s, rtt) => h('tr', null,
      h('th', { scope: 'row', text: label }),
      h('td', { text: s ? fmtPct(lossPct(s)) : '—' }),
      h('td', { text: s ? fmtMs(s.jitter_ms) : '—' }),
      h('td', { text: s ? fmtMs(rtt !== undefined ? rtt : s.rtt_ms) : '—' }));
    return h('div', { class: 'sp-quality', dataset: { role: 'quality', level: lvl } },
      h('button', {
        type: 'button', class: 'sp-quality-head', 'aria-expanded': sp.qualityOpen ? 'true' : 'false',
        onclick: () => { sp.qualityOpen = !sp.qualityOpen; render(); },
      },
      h('span', { class: 'sp-bars', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
      h('span', { class: 'sp-quality-label', text: t('phone.quality.' + lvl) }),
      h('span', { class: 'sp-quality-brief muted', text: b ? t('phone.quality.brief', { loss: fmtPct(lossPct(b)), jitter: fmtMs(b.jitter_ms), rtt: fmtMs(b.rtt_ms) }) : '' })),
      sp.qualityOpen ? h('table', { class: 'sp-quality-table' },
        h('thead', null, h('tr', null, h('th'), h('th', { text: t('phone.quality.loss') }), h('th', { text: t('phone.quality.jitter') }), h('th', { text: t('phone.quality.rtt') }))),
        h('tbody', null,
          row(t('phone.quality.leg_browser'), b),
          row(t('phone.quality.leg_agent'), a),
          row(t('phone.quality.leg_customer'), c))) : null);
  }

  function buildKeypad(call) {
    const keys = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#'];
    return h('div', { class: 'sp-keypad', dataset: { role: 'keypad' } },
      h('div', { class: 'sp-dtmf-sent mono', id: 'sp-dtmf-sent', 'aria-live': 'polite', text: call.dtmfSent }),
      h('div', { class: 'sp-keys' }, keys.map((k) => h('button', {
        type: 'button', class: 'sp-key', dataset: { digit: k }, 'aria-label': t('phone.keypad.key', { key: k }),
        onclick: () => sendDigit(call, k),
      }, k))));
  }

  function buildControls(call) {
    const s = call.state;
    if (s === 'ringing' && call.kind !== 'outbound') {
      return h('div', { class: 'sp-ring-actions' },
        h('button', {
          type: 'button', class: 'btn btn-accept sp-answer', dataset: { action: 'phone-answer' },
          disabled: call.answering || sp.endpoint !== 'browser', onclick: () => answer(call.id),
        }, icon('phone'), h('span', { text: t(call.answering ? 'phone.answering' : 'phone.answer') })),
        h('button', {
          type: 'button', class: 'btn btn-reject sp-decline', dataset: { action: 'phone-decline' },
          disabled: call.answering, onclick: () => decline(call),
        }, icon('phone-off'), h('span', { text: t('phone.decline') })));
    }
    if (s === 'ended') return null;
    if (call.kind === 'consult') {
      return h('div', { class: 'sp-controls' },
        h('button', { type: 'button', class: 'btn btn-danger sp-hangup', dataset: { action: 'phone-hangup' }, onclick: () => hangup(call) },
          icon('phone-off'), h('span', { text: t('phone.leave_consult') })));
    }
    const consulting = s === 'consulting' || s === 'consult_ringing';
    const live = LIVE.includes(s);
    const grid = h('div', { class: 'sp-grid' },
      btn('phone-mute', call.muted ? 'mic-off' : 'mic', t(call.muted ? 'phone.unmute' : 'phone.mute'), () => toggleMute(call),
        { class: 'sp-btn' + (call.muted ? ' is-on' : ''), 'aria-pressed': call.muted ? 'true' : 'false', disabled: !live }),
      btn('phone-hold', call.held ? 'play' : 'pause', t(call.held ? 'phone.unhold' : 'phone.hold'), () => toggleHold(call),
        { class: 'sp-btn' + (call.held ? ' is-on' : ''), 'aria-pressed': call.held ? 'true' : 'false', disabled: !live || consulting || s === 'conference' }),
      btn('phone-keypad', 'grid', t('phone.keypad'), () => { sp.keypadOpen = !sp.keypadOpen; render(); },
        { class: 'sp-btn' + (sp.keypadOpen ? ' is-on' : ''), 'aria-pressed': sp.keypadOpen ? 'true' : 'false', disabled: !live }),
      btn('phone-transfer', 'transfer', t('phone.transfer'), () => openTransfer(call),
        { disabled: !live || consulting || s === 'conference' }));
    const consultRow = consulting ? h('div', { class: 'sp-consult-actions' },
      h('button', {
        type: 'button', class: 'btn btn-primary btn-sm', dataset: { action: 'phone-complete' }, disabled: s !== 'consulting',
        title: t('phone.consult.complete_title'), onclick: () => control(call, 'call_complete_transfer'),
      }, icon('check', 'icon-xs'), h('span', { text: t('phone.consult.complete') })),
      h('button', {
        type: 'button', class: 'btn btn-sm', dataset: { action: 'phone-conference' }, disabled: s !== 'consulting',
        title: t('phone.consult.conference_title'), onclick: () => control(call, 'call_conference'),
      }, icon('merge', 'icon-xs'), h('span', { text: t('phone.consult.conference') })),
      h('button', {
        type: 'button', class: 'btn btn-sm', dataset: { action: 'phone-cancel-consult' },
        title: t('phone.consult.cancel_title'), onclick: () => control(call, 'call_cancel_consult'),
      }, icon('x', 'icon-xs'), h('span', { text: t('phone.consult.cancel') }))) : null;
    return h('div', { class: 'sp-controls' },
      grid,
      consultRow,
      sp.keypadOpen && live ? buildKeypad(call) : null,
      h('button', {
        type: 'button', class: 'btn btn-danger sp-hangup', dataset: { action: 'phone-hangup' }, onclick: () => hangup(call),
      }, icon('phone-off'), h('span', { text: t(s === 'dialing' ? 'phone.cancel_dial' : 'phone.hangup') })));
  }

  function buildCall(call) {
    const ended = call.state === 'ended';
    return h('article', {
      class: 'sp-call sp-' + call.state + (call.kind === 'consult' ? ' is-consult' : ''),
      dataset: { contactId: call.id === null ? '' : call.id, state: call.state, kind: call.kind, held: call.held ? 'true' : 'false', muted: call.muted ? 'true' : 'false' },
      'aria-label': t('phone.call_with', { name: callName(call) }),
    },
    buildBanner(call),
    buildWho(call),
    h('div', { class: 'sp-status' },
      h('span', { class: 'sp-state', dataset: { role: 'call-state' } },
        h('span', { class: 'sp-state-dot', 'aria-hidden': 'true' }),
        h('span', { text: ended ? t(call.error ? call.error.key || 'phone.error.title' : call.notice || 'phone.ended.ended') : stateText(call) })),
      call.recording && !ended ? h('span', { class: 'sp-rec', title: t('phone.recording') }, icon('record', 'icon-xs'), h('span', { text: t('phone.rec') })) : null,
      h('span', { class: 'sp-timer mono', dataset: { role: 'timer' } })),
    !ended && (call.pc || call.stats.agent) && call.state !== 'ringing' ? buildQuality(call) : null,
    !ended && call.pc && call.state !== 'ringing' ? h('div', { class: 'sp-level', 'aria-hidden': 'true' }, h('span', { dataset: { role: 'level' } })) : null,
    ended && call.kind !== 'consult' && call.startedAt ? h('p', { class: 'sp-wrapup-hint' }, icon('check', 'icon-xs'), h('span', { text: t('phone.wrapup_hint') })) : null,
    buildControls(call));
  }

  function buildHeader() {
    const ep = sp.endpoint;
    const ready = sp.ready;
    const status = ready === null ? 'pending' : ready ? 'ready' : 'not_ready';
    return h('header', { class: 'sp-head' },
      h('span', { class: 'sp-head-icon', 'aria-hidden': 'true' }, icon(ep === 'browser' ? 'headset' : 'phone')),
      h('div', { class: 'sp-head-text' },
        h('span', { class: 'sp-title', text: t('phone.title') }),
        h('span', { class: 'sp-endpoint', dataset: { role: 'endpoint', endpoint: ep, ready: status } },
          h('span', { class: 'sp-ready-dot', 'aria-hidden': 'true' }),
          h('span', { text: t('phone.endpoint.' + ep + '.' + status) }))),
      h('button', {
        type: 'button', class: 'icon-btn' + (sp.ringer ? '' : ' is-off'), dataset: { action: 'phone-ringer' },
        title: t(sp.ringer ? 'phone.ringer.on' : 'phone.ringer.off'), 'aria-label': t(sp.ringer ? 'phone.ringer.on' : 'phone.ringer.off'),
        onclick: () => { sp.ringer = !sp.ringer; store.set(KEYS.ringer, sp.ringer ? 'on' : 'off'); updateRinger(); render(); },
      }, icon(sp.ringer ? 'volume' : 'volume-x')),
      h('button', {
        type: 'button', class: 'icon-btn' + (sp.settingsOpen ? ' is-on' : ''), dataset: { action: 'phone-settings' },
        title: t('phone.settings'), 'aria-label': t('phone.settings'), 'aria-expanded': sp.settingsOpen ? 'true' : 'false',
        onclick: () => { sp.settingsOpen = !sp.settingsOpen; if (sp.settingsOpen) listDevices(); render(); },
      }, icon('settings')));
  }

  function deviceSelect(id, list, value, onchange, fallbackKey) {
    const sel = h('select', { id, class: 'sp-select', onchange: (ev) => onchange(ev.target.value) },
      h('option', { value: '', text: t(fallbackKey) }),
      list.filter((d) => d.deviceId && d.deviceId !== 'default').map((d, i) => h('option', { value: d.deviceId, text: d.label || t('phone.devices.unnamed', { n: i + 1 }) })));
    sel.value = value || '';
    return sel;
  }

  function buildSettings() {
    return h('div', { class: 'sp-settings', dataset: { role: 'phone-settings' } },
      h('div', { class: 'sp-field' },
        h('span', { class: 'wrapup-label', text: t('phone.endpoint.label') }),
        h('div', { class: 'seg seg-sm sp-endpoint-seg', role: 'radiogroup' },
          ['browser', 'phone'].map((ep) => h('button', {
            type: 'button', role: 'radio', class: 'seg-btn' + (sp.endpoint === ep ? ' is-active' : ''), dataset: { endpoint: ep },
            'aria-checked': sp.endpoint === ep ? 'true' : 'false', onclick: () => setEndpoint(ep),
          }, h('span', { text: t('phone.endpoint.' + ep) }))))),
      sp.endpoint === 'browser' ? [
        h('div', { class: 'sp-field' },
          h('label', { for: 'sp-mic', class: 'wrapup-label', text: t('phone.devices.input') }),
          deviceSelect('sp-mic', sp.devices.inputs, sp.devices.mic, switchMic, 'phone.devices.default')),
        h('div', { class: 'sp-field' },
          h('label', { for: 'sp-speaker', class: 'wrapup-label', text: t('phone.devices.output') }),
          canChooseOutput
            ? deviceSelect('sp-speaker', sp.devices.outputs, sp.devices.speaker, switchSpeaker, 'phone.devices.default')
            : h('span', { class: 'muted small', text: t('phone.devices.output_unsupported') })),
        h('button', { type: 'button', class: 'btn btn-sm', dataset: { action: 'phone-check-mic' }, onclick: checkMic },
          icon('mic', 'icon-xs'), h('span', { text: t('phone.mic.check') })),
      ] : h('p', { class: 'muted small', text: t('phone.endpoint.phone_help') }));
  }

  function buildMicProblem() {
    const key = sp.micProblem;
    return h('div', { class: 'sp-banner sp-banner-bad', role: 'alert', dataset: { role: 'mic-problem' } },
      icon('mic-off', 'icon-xs'),
      h('div', { class: 'sp-banner-body' },
        h('strong', { text: t(key) }),
        h('span', { text: t(key + '.help') }),
        h('button', { type: 'button', class: 'btn btn-sm', dataset: { action: 'phone-check-mic' }, onclick: checkMic }, h('span', { text: t('phone.mic.retry') }))));
  }

  function buildDialer() {
    const pending = !!sp.dial.pending;
    const input = h('input', {
      type: 'tel', id: 'sp-dial-number', class: 'sp-input', maxlength: 32, autocomplete: 'off', inputmode: 'tel',
      placeholder: t('phone.dial.placeholder'), 'aria-label': t('phone.dial.label'), dataset: { role: 'dial-number' },
      oninput: (ev) => { sp.dial.number = ev.target.value; if (sp.dial.error) { sp.dial.error = null; const e = $('sp-dial-error'); if (e) e.hidden = true; } },
    });
    input.value = sp.dial.number || '';
    return h('form', {
      class: 'sp-dialer', novalidate: true,
      onsubmit: (ev) => { ev.preventDefault(); dial(input.value, null); },
    },
    h('div', { class: 'sp-dial-row' },
      input,
      h('button', { type: 'submit', class: 'btn btn-accept btn-sm sp-dial-btn', disabled: pending, dataset: { action: 'phone-dial' }, title: t('phone.dial.button') },
        icon('phone-outgoing', 'icon-xs'), h('span', { text: t(pending ? 'phone.dial.calling' : 'phone.dial.button') }))),
    h('p', { class: 'sp-dial-error', id: 'sp-dial-error', role: 'alert', dataset: { role: 'dial-error' }, hidden: !sp.dial.error },
      icon('ban', 'icon-xs'), h('span', { text: sp.dial.error || '' })));
  }

  function render() {
    const root = $('softphone');
    if (!root) return;
    const calls = [...sp.calls.values()];
    const busy = calls.some((c) => c.state !== 'ended');
    root.dataset.state = busy ? (calls.find((c) => c.state !== 'ended').state) : 'idle';
    const kids = [buildHeader()];
    if (sp.settingsOpen) kids.push(buildSettings());
    if (sp.micProblem && !calls.some((c) => c.error && c.error.key === sp.micProblem)) kids.push(buildMicProblem());
    for (const c of calls) kids.push(buildCall(c));
    if (!busy) kids.push(buildDialer());
    root.replaceChildren(...kids.filter(Boolean).flat());
    updateRinger();
    tick();
  }

  /** Once a second (and after new statistics): timers, quality, level meters. */
  function tick() {
    const root = $('softphone');
    if (!root) return;
    for (const node of root.querySelectorAll('.sp-call')) {
      const id = node.dataset.contactId;
      const call = id === '' ? sp.dialCall : sp.calls.get(Number(id));
      if (!call) continue;
      const timer = node.querySelector('[data-role="timer"]');
      if (timer) {
        const from = call.startedAt || call.ringingAt;
        const to = call.endedAt || Date.now();
        timer.textContent = from ? formatDuration(to - from) : '';
      }
      const q = node.querySelector('[data-role="quality"]');
      if (q) q.replaceWith(buildQuality(call));
      const lv = node.querySelector('[data-role="level"]');
      if (lv) lv.style.width = Math.min(100, Math.round(level(call) * 400)) + '%';
    }
  }

  // ------------------------------------------------------------------ the endpoint choice at sign-in

  function decorateLogin() {
    const form = $('login-form');
    const err = $('login-error');
    if (!form || !err || $('sp-login-endpoint')) return;
    const opt = (ep) => h('label', { class: 'sp-login-opt' },
      h('input', {
        type: 'radio', name: 'sp-endpoint', value: ep, checked: sp.endpoint === ep,
        onchange: () => { sp.endpoint = ep; store.set(KEYS.endpoint, ep); },
      }),
      icon(ep === 'browser' ? 'headset' : 'phone', 'icon-xs'),
      h('span', { dataset: { spText: 'phone.endpoint.' + ep }, text: t('phone.endpoint.' + ep) }));
    const box = h('fieldset', { class: 'sp-login-endpoint', id: 'sp-login-endpoint' },
      h('legend', { dataset: { spText: 'phone.endpoint.label' }, text: t('phone.endpoint.label') }),
      h('div', { class: 'sp-login-opts' }, opt('browser'), opt('phone')));
    form.insertBefore(box, err);
  }

  function relabelLogin() {
    for (const el of document.querySelectorAll('#sp-login-endpoint [data-sp-text]')) el.textContent = t(el.dataset.spText);
    for (const r of document.querySelectorAll('#sp-login-endpoint input')) r.checked = r.value === sp.endpoint;
  }

  /** A dial button for a phone number in the customer card (disabled for do-not-call). */
  function dialButton(cust, number) {
    const dnc = !!(cust && cust.do_not_call);
    return h('button', {
      type: 'button', class: 'btn btn-sm sp-inline-dial' + (dnc ? ' is-blocked' : ''), dataset: { action: 'phone-dial-customer', number },
      disabled: dnc, 'aria-disabled': dnc ? 'true' : 'false',
      title: dnc ? t('phone.dial.dnc_title', { name: (cust && cust.name) || '' }) : t('phone.dial.title', { number: UI.formatPhone(number) }),
      onclick: () => dial(number, cust && cust.id),
    }, icon(dnc ? 'ban' : 'phone-outgoing', 'icon-xs'), h('span', { text: t(dnc ? 'phone.dial.dnc' : 'phone.dial.short') }));
  }

  function reset() {
    for (const call of sp.calls.values()) { closeMedia(call); clearTimeout(call.removeTimer); }
    sp.calls.clear();
    sp.pops.clear();
    sp.dial = { number: '', pending: null, error: null };
    if (sp.dialCall) closeMedia(sp.dialCall);
    sp.dialCall = null;
    sp.ready = null;
    updateRinger();
    render();
  }

  // ------------------------------------------------------------------ wiring

  CH.onMessage('hello', onHello);
  CH.onMessage('endpoint', onEndpoint);
  CH.onMessage('offer', onOffer);
  CH.onMessage('offer_cancelled', onOfferCancelled);
  CH.onMessage('call_state', onCallState);
  CH.onMessage('webrtc_answer', onAnswer);
  CH.onMessage('call_quality', onQuality);
  CH.onMessage('call_consult_failed', onConsultFailed);
  CH.onMessage('call_dialing', onDialing);
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', listDevices);
  }
  setInterval(tick, 1000);
  setInterval(() => { pollStats().catch(() => {}); }, STATS_MS);
  window.addEventListener('beforeunload', () => { for (const c of sp.calls.values()) closeMedia(c); });

  window.Softphone = Object.freeze({
    answer: (id) => { answer(id); return sp.endpoint === 'browser'; },
    handlesAnswer: () => sp.endpoint === 'browser',
    ownsError,
    dialButton,
    dial,
    reset,
    render: () => { relabelLogin(); render(); },
    /** For the browser test and diagnostics: what the remote side sends, by frequency. */
    debug: Object.freeze({
      async measure(id, freqs, ms) {
        const call = sp.calls.get(id) || [...sp.calls.values()].find((c) => c.analyser);
        if (!call || !call.analyser) return { error: 'no remote audio' };
        const rate = call.analyser.context.sampleRate;
        const buf = new Float32Array(call.analyser.fftSize);
        const sums = {};
        let rms = 0;
        let n = 0;
        const end = Date.now() + (ms || 1500);
        while (Date.now() < end) {
          await new Promise((r) => setTimeout(r, 150));
          call.analyser.getFloatTimeDomainData(buf);
          for (const f of freqs) sums[f] = (sums[f] || 0) + goertzel(buf, f, rate);
          let s = 0;
          for (let i = 0; i < buf.length; i++) s += buf[i] * buf[i];
          rms += Math.sqrt(s / buf.length);
          n += 1;
        }
        const powers = {};
        for (const f of freqs) powers[f] = sums[f] / Math.max(1, n);
        const dominant = freqs.slice().sort((a, b) => powers[b] - powers[a])[0];
        return { dominant, powers, rms: rms / Math.max(1, n), frames: n };
      },
      calls: () => [...sp.calls.values()].map((c) => ({ id: c.id, kind: c.kind, state: c.state, held: c.held, muted: c.muted, ice: c.pc && c.pc.iceConnectionState, stats: c.stats })),
      restartIce(id) {
        // What the softphone does after a network drop, on demand.
        const call = sp.calls.get(id);
        if (call) restartIce(call, true);
        return !!call;
      },
    }),
  });

  decorateLogin();
  render();
})();
