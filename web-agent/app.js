/*
 * Contact Hub — agent console.
 *
 * Vanilla JS, no build step. Served by the hub at /app.js next to /i18n.js and /shared.js
 * (loaded first, in that order; shared.js holds what the wallboard uses too: h(), icons,
 * formatting, language pickers, the reconnecting socket).
 *
 * What it holds: sign-in, the agent's state, the agent socket, the work items (offer, connected,
 * wrap-up cards), customer search and the customer card (screen-pop), and the chat pane (one per
 * chat in hand: transcript, composer, notes, canned responses, transfer, the screen-pop beside it;
 * docs/protocol.md, "Chat (agent socket)"), and the email pane (one per email in hand: the thread
 * with the mails' HTML in a sandboxed iframe, reply / reply-all / forward with files, notes, send
 * state, split and merge; docs/protocol.md, "Email (agent socket and REST)").
 *
 * Safety rule for this file: every string that comes from the server (customer names, notes,
 * subjects, error messages ...) is put into the page with textContent / text nodes only.
 * No innerHTML is ever set; the `h()` helper (shared.js) builds DOM nodes and turns strings into
 * text nodes. The one exception to "text only" is an email's HTML (sanitized by the hub), which is
 * shown only inside a sandboxed iframe without scripts (see the email section). Icons are SVG built with createElementNS from the constant table ICONS.
 */
'use strict';

(function () {
  const I18N = window.I18N;
  const t = I18N.t;
  const tn = I18N.tn;
  const S = window.HubShared; // shared.js
  const { $, h, tOr, parseDate, formatDuration, initials, avatarHue } = S;

  // ------------------------------------------------------------------ icons

  // Icon paths adapted from Feather Icons (MIT licence, https://feathericons.com), 24x24 stroke:
  // the ones the wallboard draws too (shared.js), then the console's own.
  const PHONE = S.PHONE;
  const CIRCLE10 = S.CIRCLE10;
  const ICONS = Object.assign({}, S.ICON_PATHS, {
    phone: [PHONE],
    search: ['M11 3a8 8 0 1 0 0 16a8 8 0 1 0 0-16z', 'M21 21l-4.35-4.35'],
    user: ['M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2', 'M12 3a4 4 0 1 0 0 8a4 4 0 1 0 0-8z'],
    company: ['M4 7h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V9a2 2 0 0 1 2-2z', 'M16 21V5a2 2 0 0 0-2-2h-4a2 2 0 0 0-2 2v16'],
    'alert-triangle': ['M10.29 3.86L1.82 18a2 2 0 0 0 1.71 3h16.94a2 2 0 0 0 1.71-3L13.71 3.86a2 2 0 0 0-3.42 0z', 'M12 9v4', 'M12 17h.01'],
    'alert-octagon': ['M7.86 2h8.28L22 7.86v8.28L16.14 22H7.86L2 16.14V7.86z', 'M12 8v4', 'M12 16h.01'],
    logout: ['M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4', 'M16 17l5-5-5-5', 'M21 12H9'],
    'arrow-left': ['M19 12H5', 'M12 19l-7-7 7-7'],
    inbound: ['M17 7L7 17', 'M17 17H7V7'],
    'outbound-arrow': ['M7 17L17 7', 'M7 7h10v10'],
    document: ['M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z', 'M14 2v6h6', 'M16 13H8', 'M16 17H8', 'M10 9H8'],
    order: ['M9 20a1 1 0 1 0 0 2a1 1 0 1 0 0-2z', 'M20 20a1 1 0 1 0 0 2a1 1 0 1 0 0-2z', 'M1 1h4l2.68 13.39a2 2 0 0 0 2 1.61h9.72a2 2 0 0 0 2-1.61L23 6H6'],
    payment: ['M3 4h18a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z', 'M1 10h22'],
    transaction: ['M17 1l4 4-4 4', 'M3 11V9a4 4 0 0 1 4-4h14', 'M7 23l-4-4 4-4', 'M21 13v2a4 4 0 0 1-4 4H3'],
    return: ['M1 4v6h6', 'M3.51 15a9 9 0 1 0 2.13-9.36L1 10'],
    tag: ['M20.59 13.41l-7.17 7.17a2 2 0 0 1-2.83 0L2 12V2h10l8.59 8.59a2 2 0 0 1 0 2.82z', 'M7 7h.01'],
    ban: [CIRCLE10, 'M4.93 4.93l14.14 14.14'],
    star: ['M12 2l3.09 6.26L22 9.27l-5 4.87 1.18 6.88L12 17.77l-6.18 3.25L7 14.14 2 9.27l6.91-1.01z'],
    folder: ['M22 19a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h5l2 3h9a2 2 0 0 1 2 2z'],
    note: ['M11 4H4a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2v-7', 'M18.5 2.5a2.121 2.121 0 0 1 3 3L12 15l-4 1 1-4 9.5-9.5z'],
    shield: ['M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z'],
    'chevron-right': ['M9 18l6-6-6-6'],
    x: ['M18 6L6 18', 'M6 6l12 12'],
    wallet: ['M3 4h18a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z', 'M1 10h22', 'M16 15h3'],
    hash: ['M4 9h16', 'M4 15h16', 'M10 3L8 21', 'M16 3l-2 18'],
    language: ['M5 8l6 6', 'M4 14l6-6 2-3', 'M2 5h12', 'M7 2h1', 'M22 22l-5-10-5 10', 'M14 18h6'],
    wallboard: ['M18 20V10', 'M12 20V4', 'M6 20v-6'],
    check: ['M20 6L9 17l-5-5'],
    'check-circle': ['M22 11.08V12a10 10 0 1 1-5.93-9.14', 'M22 4L12 14.01l-3-3'],
    plus: ['M12 5v14', 'M5 12h14'],
    'phone-incoming': [PHONE, 'M16 2v6h6', 'M23 1l-7 7'],
    transfer: ['M17 1l4 4-4 4', 'M3 11V9a4 4 0 0 1 4-4h14', 'M7 23l-4-4 4-4', 'M21 13v2a4 4 0 0 1-4 4H3'],
    'x-circle': [CIRCLE10, 'M15 9l-6 6', 'M9 9l6 6'],
    lock: ['M5 11h14a2 2 0 0 1 2 2v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2z', 'M7 11V7a5 5 0 0 1 10 0v4'],
    zap: ['M13 2L3 14h9l-1 8 10-12h-9l1-8z'],
    send: ['M22 2L11 13', 'M22 2l-7 20-4-9-9-4 20-7z'],
    download: ['M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4', 'M7 10l5 5 5-5', 'M12 15V3'],
    'check-double': ['M18 7L9.5 15.5 6 12', 'M22 7l-8.5 8.5', 'M2 12l3.5 3.5'],
    paperclip: ['M21.44 11.05l-9.19 9.19a6 6 0 0 1-8.49-8.49l9.19-9.19a4 4 0 0 1 5.66 5.66l-9.2 9.19a2 2 0 0 1-2.83-2.83l8.49-8.48'],
    reply: ['M9 14L4 9l5-5', 'M20 20v-7a4 4 0 0 0-4-4H4'],
    'reply-all': ['M7 14L2 9l5-5', 'M12 14L7 9l5-5', 'M22 20v-7a4 4 0 0 0-4-4H7'],
    forward: ['M15 14l5-5-5-5', 'M4 20v-7a4 4 0 0 1 4-4h12'],
    image: ['M5 3h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z', 'M8.5 7a1.5 1.5 0 1 0 0 3a1.5 1.5 0 1 0 0-3z', 'M21 15l-5-5L5 21'],
    scissors: ['M6 3a3 3 0 1 0 0 6a3 3 0 1 0 0-6z', 'M6 15a3 3 0 1 0 0 6a3 3 0 1 0 0-6z', 'M20 4L8.12 15.88', 'M14.47 14.48L20 20', 'M8.12 8.12L12 12'],
    merge: ['M18 15a3 3 0 1 0 0 6a3 3 0 1 0 0-6z', 'M6 3a3 3 0 1 0 0 6a3 3 0 1 0 0-6z', 'M6 21V9a9 9 0 0 0 9 9'],
    eye: ['M1 12s4-8 11-8 11 8 11 8-4 8-11 8-11-8-11-8z', 'M12 9a3 3 0 1 0 0 6a3 3 0 1 0 0-6z'],
    info: [CIRCLE10, 'M12 16v-4', 'M12 8h.01'],
    link: ['M10 13a5 5 0 0 0 7.54.54l3-3a5 5 0 0 0-7.07-7.07l-1.72 1.71', 'M14 11a5 5 0 0 0-7.54-.54l-3 3a5 5 0 0 0 7.07 7.07l1.71-1.71'],
  });

  const icon = S.makeIcon(ICONS, 'document');

  const CHANNEL_ICON = { voice: 'voice', email: 'email', chat: 'chat', fax: 'fax', callback: 'callback', outbound: 'outbound' };
  const channelIcon = (ch, cls) => icon(CHANNEL_ICON[ch] || 'chat', cls);

  // ------------------------------------------------------------------ formatting

  /** Format integer minor units exactly (no float rounding): 123450 CNY -> "¥1,234.50". */
  function formatMoney(amountMinor, currency) {
    if (amountMinor === null || amountMinor === undefined || !currency) return '';
    const lang = I18N.getLang();
    let nf;
    try {
      nf = new Intl.NumberFormat(lang, { style: 'currency', currency, currencyDisplay: 'narrowSymbol' });
    } catch (e) {
      return (Number(amountMinor) / 100).toFixed(2) + ' ' + currency;
    }
    const digits = nf.resolvedOptions().maximumFractionDigits;
    let n = BigInt(Math.trunc(Number(amountMinor)));
    const neg = n < 0n;
    if (neg) n = -n;
    let s = n.toString();
    if (digits > 0) {
      s = s.padStart(digits + 1, '0');
      s = s.slice(0, s.length - digits) + '.' + s.slice(s.length - digits);
    }
    try {
      return nf.format((neg ? '-' : '') + s); // string input keeps exact decimals
    } catch (e) {
      return (neg ? '-' : '') + s + ' ' + currency;
    }
  }

  function formatDateTime(value) {
    const d = parseDate(value);
    if (!d) return value ? String(value) : '';
    return new Intl.DateTimeFormat(I18N.getLang(), { dateStyle: 'medium', timeStyle: 'short' }).format(d);
  }

  /** Compact: time only for today, else short date and time. */
  function formatWhen(value) {
    const d = parseDate(value);
    if (!d) return value ? String(value) : '';
    const lang = I18N.getLang();
    const now = new Date();
    if (d.toDateString() === now.toDateString()) {
      return new Intl.DateTimeFormat(lang, { timeStyle: 'short' }).format(d);
    }
    const opts = d.getFullYear() === now.getFullYear()
      ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }
      : { dateStyle: 'medium', timeStyle: 'short' };
    return new Intl.DateTimeFormat(lang, opts).format(d);
  }

  /** Timestamp -> localized date without time. */
  function formatDate(value) {
    const d = parseDate(value);
    if (!d) return value ? String(value) : '';
    return new Intl.DateTimeFormat(I18N.getLang(), { dateStyle: 'medium' }).format(d);
  }

  /** "2024-05-01" (a calendar date, no time zone) -> localized date. */
  function formatDay(value) {
    const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(value || '');
    if (!m) return value ? String(value) : '';
    const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
    return new Intl.DateTimeFormat(I18N.getLang(), { dateStyle: 'medium', timeZone: 'UTC' }).format(d);
  }

  /** Whole days from today (local calendar) to a YYYY-MM-DD date; negative = past. */
  function daysFromToday(day) {
    const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(day || '');
    if (!m) return null;
    const now = new Date();
    const today = Date.UTC(now.getFullYear(), now.getMonth(), now.getDate());
    return Math.round((Date.UTC(+m[1], +m[2] - 1, +m[3]) - today) / 86400000);
  }

  /** Light formatting of E.164 numbers for reading; anything else is shown as given. */
  function formatPhone(value) {
    const v = String(value || '');
    let m = /^\+86(1\d{2})(\d{4})(\d{4})$/.exec(v); // CN mobile
    if (m) return `+86 ${m[1]} ${m[2]} ${m[3]}`;
    m = /^\+86(10|2\d)(\d{4})(\d{4})$/.exec(v); // CN Beijing/Shanghai/... landline
    if (m) return `+86 ${m[1]} ${m[2]} ${m[3]}`;
    m = /^\+886(9\d{2})(\d{3})(\d{3})$/.exec(v); // TW mobile
    if (m) return `+886 ${m[1]} ${m[2]} ${m[3]}`;
    m = /^\+852(\d{4})(\d{4})$/.exec(v); // HK
    if (m) return `+852 ${m[1]} ${m[2]}`;
    m = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(v);
    if (m) return `+1 ${m[1]} ${m[2]} ${m[3]}`;
    return v;
  }

  function formatIdentity(kind, value) {
    return kind === 'phone' || kind === 'fax' ? formatPhone(value) : String(value || '');
  }

  // ------------------------------------------------------------------ HTTP API

  class ApiError extends Error {
    constructor(status, code, message, body) {
      super(message || code);
      this.status = status;
      this.code = code;
      this.body = body || {};
    }
  }

  async function api(method, path, body, signal) {
    const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', signal };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    return fetchJson(path, opts);
  }

  /** A file's raw bytes to `path` (the name percent-encoded in X-Filename); answers its JSON. */
  function uploadFile(path, file) {
    return fetchJson(path, {
      method: 'POST', credentials: 'same-origin', body: file,
      headers: { Accept: 'application/json', 'Content-Type': file.type || 'application/octet-stream', 'X-Filename': encodeURIComponent(file.name || 'file') },
    });
  }

  async function fetchJson(path, opts) {
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', String(e && e.message));
    }
    const text = res.status === 204 ? '' : await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!res.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText, err);
    }
    return data;
  }

  function describeError(err) {
    if (!err) return t('error.generic', { code: '?' });
    if (err.status === 0) return t('error.network');
    if (err.code && I18N.has('error.code.' + err.code)) return t('error.code.' + err.code);
    return t('error.generic', { code: err.code || err.status }) + (err.message ? ' — ' + err.message : '');
  }

  // ------------------------------------------------------------------ application state

  const app = {
    user: null,
    agentState: null, // {state, reason, since}
    pendingState: null, // option value requested, waiting for agent_state
    pendingTimer: null,
    clockOffsetMs: 0, // server time - local time, learned from heartbeats
    view: 'welcome', // welcome | results | customer | chat | email
    search: { q: '', status: 'idle', results: [], error: null, seq: 0, abort: null },
    customer: { id: null, status: 'idle', data: null, error: null, seq: 0, tab: 'orders', highlight: null },
    workItems: [], // items given by the channel panes through window.ContactHub
    acd: { contacts: new Map(), dispositions: [], queueNames: new Map(), seq: 0 }, // work from the ACD
    urlNotice: null, // catalogue key of a notice asked for by another page (?notice=...)
    next: null, // page to open after sign-in (?next=wallboard)
    loginMessage: null, // {kind:'error'|'info', key, vars}
    lockUntil: 0,
    lockTimer: null,
    handlers: new Map(), // socket message type -> [fn]
    chats: new Map(), // contact id -> chat in hand (see the chat section)
    activeChat: null, // contact id of the chat pane on screen
    emails: new Map(), // contact id -> email in hand (see the email section)
    activeEmail: null, // contact id of the email pane on screen
    canned: { status: 'idle', items: [], promise: null, error: null }, // canned responses, loaded once
    liveAgents: null, // agent id -> display name, from the transfer dialog's GET /api/v1/agents
  };

  // ------------------------------------------------------------------ i18n application

  const language = S.languageControl({
    title: () => (app.user ? t('app.title_console') : t('app.title_login')),
    rerender: () => {
      renderLoginMessage();
      renderHeaderUser();
      renderState();
      renderConn();
      renderWorkItems();
      renderSearch();
      renderCustomer();
      rebuildChatPanes();
      rebuildEmailPanes();
      if (window.Softphone) window.Softphone.render();
      updateTitleBadge();
    },
  });

  // ------------------------------------------------------------------ toasts

  function toast(message, kind) {
    const box = $('toasts');
    const item = h('div', { class: 'toast toast-' + (kind || 'info'), role: kind === 'error' ? 'alert' : 'status' },
      icon(kind === 'error' ? 'alert-octagon' : 'alert-triangle'),
      h('span', { class: 'toast-text', text: message }),
      h('button', { type: 'button', class: 'toast-close', 'aria-label': t('toast.dismiss'), onclick: () => item.remove() }, icon('x')));
    box.append(item);
    setTimeout(() => item.remove(), 6000);
  }

  // ------------------------------------------------------------------ views

  function showBoot(on) {
    $('boot').hidden = !on;
  }

  function showLogin(message) {
    app.user = null;
    app.loginMessage = message || null;
    showBoot(false);
    $('console-view').hidden = true;
    $('login-view').hidden = false;
    document.body.classList.remove('in-console');
    language.apply();
    renderLoginMessage();
    setLoginBusy(false);
    const u = $('login-username');
    (u.value ? $('login-password') : u).focus();
  }

  function showConsole(user) {
    app.user = user;
    showBoot(false);
    $('login-view').hidden = true;
    $('console-view').hidden = false;
    document.body.classList.add('in-console');
    language.apply();
    renderHeaderUser();
    renderState();
    renderWorkItems();
    sock.start();
    loadQueueNames();
    routeFromHash();
    if (app.view !== 'customer') $('search-input').focus();
  }

  // ------------------------------------------------------------------ login

  function setLoginMessage(kind, key, vars) {
    app.loginMessage = key ? { kind, key, vars } : null;
    renderLoginMessage();
  }

  function renderLoginMessage() {
    const err = $('login-error');
    const note = $('login-notice');
    const m = app.loginMessage;
    err.hidden = true;
    note.hidden = true;
    if (!m) return;
    let text;
    if (m.key === 'login.error.locked') {
      const secs = Math.max(0, Math.ceil((app.lockUntil - Date.now()) / 1000));
      text = tn('login.error.locked', secs, { secs });
    } else if (m.key === '@error') {
      text = describeError(m.vars);
    } else {
      text = t(m.key, m.vars);
    }
    const el = m.kind === 'error' ? err : note;
    el.textContent = text;
    el.hidden = false;
  }

  function setLoginBusy(busy) {
    const btn = $('login-submit');
    const locked = app.lockUntil > Date.now();
    btn.disabled = busy || locked;
    btn.classList.toggle('is-busy', busy);
    $('login-submit-label').textContent = t(busy ? 'login.submitting' : 'login.submit');
  }

  function startLockout(secs) {
    const n = Number.isFinite(+secs) && +secs > 0 ? Math.ceil(+secs) : 30;
    app.lockUntil = Date.now() + n * 1000;
    clearInterval(app.lockTimer);
    setLoginMessage('error', 'login.error.locked');
    setLoginBusy(false);
    app.lockTimer = setInterval(() => {
      if (Date.now() >= app.lockUntil) {
        clearInterval(app.lockTimer);
        app.lockUntil = 0;
        setLoginMessage('info', 'login.error.unlocked');
        setLoginBusy(false);
      } else {
        renderLoginMessage();
      }
    }, 1000);
  }

  async function onLoginSubmit(ev) {
    ev.preventDefault();
    if (app.lockUntil > Date.now()) return;
    const username = $('login-username').value.trim();
    const password = $('login-password').value;
    if (!username || !password) {
      setLoginMessage('error', 'login.required');
      (username ? $('login-password') : $('login-username')).focus();
      return;
    }
    setLoginMessage(null);
    setLoginBusy(true);
    try {
      const data = await api('POST', '/api/v1/auth/login', { username, password });
      $('login-password').value = '';
      setLoginBusy(false);
      // Signed in from the wallboard's redirect: a supervisor goes back there.
      const role = data && data.user && data.user.role;
      if (app.next && (role === 'supervisor' || role === 'admin')) {
        location.assign(app.next);
        return;
      }
      // The session lives in the HttpOnly cookie; the token is not kept by the page.
      showConsole(data && data.user ? data.user : { username, display_name: username, role: '' });
    } catch (err) {
      setLoginBusy(false);
      if (err.status === 401 || err.code === 'invalid_credentials') {
        setLoginMessage('error', 'login.error.invalid');
        $('login-password').value = '';
        $('login-password').focus();
      } else if (err.status === 429 || err.code === 'too_many_attempts') {
        startLockout(err.body && err.body.retry_after_secs);
      } else {
        setLoginMessage('error', '@error', err);
      }
    }
  }

  async function logout() {
    const btn = $('logout-btn');
    btn.disabled = true;
    // Take the agent out of routing before the session ends (best effort).
    socketSend({ type: 'set_state', state: 'logged_out' });
    sock.stop('logout');
    try {
      await api('POST', '/api/v1/auth/logout');
    } catch (err) {
      if (err.status !== 401) toast(describeError(err), 'error');
    }
    btn.disabled = false;
    resetConsole();
    showLogin({ kind: 'info', key: 'login.signed_out' });
  }

  function sessionExpired() {
    if (!app.user) return;
    sock.stop('logout');
    resetConsole();
    showLogin({ kind: 'info', key: 'login.session_expired' });
  }

  function resetConsole() {
    app.agentState = null;
    app.pendingState = null;
    clearTimeout(app.pendingTimer);
    app.workItems = [];
    for (const e of app.acd.contacts.values()) clearPending(e);
    app.acd.contacts = new Map();
    app.acd.dispositions = [];
    acdNodes.clear();
    clearDrafts();
    for (const id of [...app.chats.keys()]) dropChat(id);
    app.activeChat = null;
    for (const id of [...app.emails.keys()]) dropEmail(id);
    app.activeEmail = null;
    try { window.sessionStorage.removeItem(EMAIL_STORE_KEY); } catch (err) { /* ignore */ }
    app.canned = { status: 'idle', items: [], promise: null, error: null };
    try { window.sessionStorage.removeItem(CHAT_STORE_KEY); } catch (err) { /* ignore */ }
    closeModal();
    if (window.Softphone) window.Softphone.reset();
    renderWorkItems();
    if (app.search.abort) app.search.abort.abort();
    app.search = { q: '', status: 'idle', results: [], error: null, seq: app.search.seq + 1, abort: null };
    app.customer = { id: null, status: 'idle', data: null, error: null, seq: app.customer.seq + 1, tab: 'orders', highlight: null };
    $('search-input').value = '';
    $('customer-container').replaceChildren();
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
    setView('welcome');
  }

  // ------------------------------------------------------------------ header

  function renderHeaderUser() {
    const u = app.user;
    if (!u) return;
    S.renderUserChip(u);
    $('wallboard-link').hidden = !(u.role === 'supervisor' || u.role === 'admin');
  }

  // ------------------------------------------------------------------ agent state

  const NOT_READY_REASONS = ['break', 'lunch', 'meeting', 'training', 'admin'];

  function stateValue(s) {
    if (!s) return '';
    if (s.state === 'not_ready') return 'not_ready:' + (s.reason || '');
    return s.state;
  }

  function stateLabel(value) {
    const [state, reason] = value.split(':');
    if (state === 'not_ready') {
      const base = t('state.not_ready');
      return reason ? t('state.with_reason', { state: base, reason: tOr('reason.', reason) }) : base;
    }
    return tOr('state.', state);
  }

  function renderState() {
    const sel = $('state-select');
    const box = $('agent-state');
    const connected = sock.ready;
    const current = stateValue(app.agentState);
    const values = ['available', ...NOT_READY_REASONS.map((r) => 'not_ready:' + r), 'logged_out'];
    const opts = [];
    if (!app.agentState) {
      opts.push(h('option', { value: '', text: t(connected ? 'state.unknown' : 'state.offline_placeholder') }));
    } else if (!values.includes(current)) {
      // A state the agent cannot choose (reserved, busy, wrap_up, not_ready:rona ...): show it.
      opts.push(h('option', { value: current, disabled: true, text: stateLabel(current) }));
    }
    for (const v of values) {
      opts.push(h('option', { value: v, text: stateLabel(v), dataset: { state: v.split(':')[0] } }));
    }
    sel.replaceChildren(...opts);
    sel.value = app.pendingState || current;
    sel.disabled = !connected || !!app.pendingState;
    sel.dataset.state = app.agentState ? app.agentState.state : '';
    sel.dataset.value = current;
    box.dataset.state = app.agentState ? app.agentState.state : 'unknown';
    box.classList.toggle('is-pending', !!app.pendingState);
    sel.setAttribute('aria-busy', app.pendingState ? 'true' : 'false');
    tickStateTimer();
  }

  function tickStateTimer() {
    const el = $('state-timer');
    const since = app.agentState && parseDate(app.agentState.since);
    if (!since || !sock.ready) {
      el.textContent = '';
      return;
    }
    el.textContent = formatDuration(Date.now() + app.clockOffsetMs - since.getTime());
  }

  function requestState(value) {
    if (!value) return;
    const [state, reason] = value.split(':');
    const msg = { type: 'set_state', state };
    if (reason) msg.reason = reason;
    if (!socketSend(msg)) {
      toast(t('state.error.not_connected'), 'error');
      renderState();
      return;
    }
    app.pendingState = value;
    clearTimeout(app.pendingTimer);
    app.pendingTimer = setTimeout(() => {
      if (!app.pendingState) return;
      app.pendingState = null;
      toast(t('state.error.timeout'), 'error');
      renderState();
    }, 10000);
    renderState();
  }

  function applyAgentState(state) {
    app.agentState = state || null;
    app.pendingState = null;
    clearTimeout(app.pendingTimer);
    renderState();
    renderWorkItems();
  }

  // ------------------------------------------------------------------ agent socket

  const sock = S.connectSocket({
    path: '/api/v1/agent/ws',
    onMessage: handleSocketMessage,
    onLost: socketLost,
    render: renderConn,
  });

  /** The agent socket dropped (shared.js reconnects): resolves false when the session is over. */
  async function socketLost() {
    if (app.pendingState) {
      app.pendingState = null;
      clearTimeout(app.pendingTimer);
    }
    renderState();
    clearAllPending(); // buttons stay disabled until the next hello
    // Did the socket drop because the session ended? Then go back to the login page.
    try {
      await api('GET', '/api/v1/auth/me');
    } catch (err) {
      if (err.status === 401) {
        sessionExpired();
        return false;
      }
    }
    return true;
  }

  function socketSend(obj) {
    return sock.send(obj);
  }

  function renderConn() {
    S.renderConnIndicator(sock);
  }

  function handleSocketMessage(msg) {
    switch (msg.type) {
      case 'hello':
        sock.greet(msg);
        if (msg.agent && app.user) {
          app.user = Object.assign({}, app.user, msg.agent);
          renderHeaderUser();
        }
        sock.setStatus('connected');
        applyAgentState(msg.state);
        onHelloContacts(msg);
        break;
      case 'offer':
        onOffer(msg);
        break;
      case 'offer_cancelled':
        onOfferCancelled(msg);
        break;
      case 'contact_state':
        onContactState(msg);
        break;
      case 'agent_state':
        applyAgentState(msg.state);
        break;
      case 'heartbeat': {
        const st = parseDate(msg.server_time);
        if (st) app.clockOffsetMs = st.getTime() - Date.now();
        break;
      }
      case 'pong':
        break;
      case 'chat_message':
      case 'chat_ack':
      case 'chat_history':
      case 'chat_typing':
      case 'chat_read':
      case 'chat_presence':
      case 'chat_ended':
      case 'transferred':
        chatFrame(msg);
        break;
      case 'email_message':
      case 'email_status':
        emailFrame(msg);
        break;
      case 'error':
        // The softphone's own errors (a refused call, a refused SDP) show in its call pane.
        if (window.Softphone && window.Softphone.ownsError(msg)) break;
        // A refused chat message names its client_id: that message shows it, with a retry.
        if (msg.client_id && chatSendFailed(msg)) break;
        if (msg.code === 'unknown_queue' || msg.code === 'agent_unavailable') {
          const dlg = $('modal-root').querySelector('[data-action="confirm-transfer"]');
          if (dlg) { dlg.disabled = false; dlg.classList.remove('is-busy'); }
        }
        if (app.pendingState) {
          app.pendingState = null;
          clearTimeout(app.pendingTimer);
          renderState();
        }
        // Error frames name no contact: whatever was waiting for an answer is not waiting any more.
        clearAllPending();
        toast(msg.code && I18N.has('error.code.' + msg.code)
          ? t('error.code.' + msg.code)
          : t('error.server', { message: msg.message || msg.code || '?' }), 'error');
        break;
      default:
        break;
    }
    const list = app.handlers.get(msg.type);
    if (list) for (const fn of list) {
      try { fn(msg); } catch (e) { console.error(e); }
    }
  }

  // ------------------------------------------------------------------ work items (contacts)

  /*
   * Work in hand from the ACD (docs/protocol.md, agent socket): an offer, connected contacts and
   * contacts in wrap-up, kept in app.acd.contacts by contact id. A card is built once per state
   * and language (so a half-typed wrap-up note keeps its text and focus) and refreshed in place
   * by the ticker: countdowns, progress bars, buttons waiting for the server. Items given through
   * window.ContactHub (the channel panes) are listed after them.
   */

  const ACD_ORDER = { offered: 0, connected: 1, wrap_up: 2 };
  const ACTION_TIMEOUT_MS = 10000;
  const WRAP_UP_EXTEND_SECS = 30;
  const NOTES_MAX = 2000;
  const OFFER_URGENT_SECS = 5;
  const DRAFTS_KEY = 'contact-hub.wrapup-drafts';

  const acdNodes = new Map(); // contact id -> {key, node}
  const adopting = new Set(); // contact ids being fetched (a contact_state for an unknown id)

  function serverNow() {
    return Date.now() + app.clockOffsetMs;
  }

  function msUntil(value) {
    const d = parseDate(value);
    return d ? d.getTime() - serverNow() : null;
  }

  function queueLabel(name) {
    return app.acd.queueNames.get(name) || name;
  }

  function entryCustomer(e) {
    return (e.screen_pop && e.screen_pop.customer) || null;
  }

  function entryName(e) {
    const cust = entryCustomer(e);
    const chat = app.chats.get(e.id);
    const em = app.emails.get(e.id);
    const mail = em && latestCustomerEmail(em);
    return (cust && cust.name) || (chat && chat.visitor && chat.visitor.name)
      || (mail && (mail.email.from_name || mail.email.from_addr)) || t('contact.unknown_customer');
  }

  function newEntry(contact, state, extra) {
    return Object.assign({
      id: contact.id, seq: ++app.acd.seq, contact, state,
      expires_at: null, wrap_up_until: null, windowMs: null, screen_pop: null,
      pending: null, pendingTimer: null, disposition: '', notes: '', error: null,
    }, extra);
  }

  function clearPending(e) {
    clearTimeout(e.pendingTimer);
    e.pendingTimer = null;
    e.pending = null;
  }

  function removeEntry(id) {
    const e = app.acd.contacts.get(id);
    if (!e) return null;
    clearPending(e);
    app.acd.contacts.delete(id);
    saveDrafts();
    renderWorkItems();
    return e;
  }

  // Wrap-up drafts survive a reload of the page (sessionStorage, this tab only).
  function loadDrafts() {
    try {
      const v = JSON.parse(window.sessionStorage.getItem(DRAFTS_KEY) || '{}');
      return v && typeof v === 'object' ? v : {};
    } catch (e) {
      return {};
    }
  }

  function saveDrafts() {
    const out = {};
    for (const e of app.acd.contacts.values()) {
      if (e.disposition || e.notes) out[e.id] = { disposition: e.disposition, notes: e.notes };
    }
    try {
      window.sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(out));
    } catch (err) { /* storage full or disabled: the draft lives in the page only */ }
  }

  function clearDrafts() {
    try { window.sessionStorage.removeItem(DRAFTS_KEY); } catch (err) { /* ignore */ }
  }

  // ---- socket messages

  function onHelloContacts(msg) {
    app.acd.dispositions = Array.isArray(msg.dispositions) ? msg.dispositions.map(String) : [];
    const drafts = loadDrafts();
    const old = app.acd.contacts;
    const next = new Map();
    for (const item of Array.isArray(msg.contacts) ? msg.contacts : []) {
      const c = item && item.contact;
      if (!c || c.id === undefined || c.id === null || !Object.prototype.hasOwnProperty.call(ACD_ORDER, item.state)) continue;
      const prev = old.get(c.id);
      const e = newEntry(c, item.state, { screen_pop: item.screen_pop || (prev && prev.screen_pop) || null });
      if (prev) e.seq = prev.seq;
      // expires_at is the deadline of the state in hand: the offer's, or the wrap-up's end.
      if (item.state === 'offered') e.expires_at = item.expires_at || null;
      if (item.state === 'wrap_up') e.wrap_up_until = item.wrap_up_until || item.expires_at || null;
      const left = msUntil(item.state === 'offered' ? e.expires_at : e.wrap_up_until);
      e.windowMs = prev && prev.windowMs ? prev.windowMs : (left && left > 0 ? left : null);
      const d = (prev && (prev.disposition || prev.notes)) ? prev : drafts[c.id];
      if (d) {
        e.disposition = String(d.disposition || '');
        e.notes = String(d.notes || '');
      }
      next.set(c.id, e);
    }
    for (const e of old.values()) clearPending(e);
    app.acd.contacts = next;
    saveDrafts();
    onHelloChats(msg);
    onHelloEmails(msg);
    renderWorkItems();
    // After a reload: bring the chat or email (from the address, else the first) or the
    // customer of the work in hand back on screen.
    const m = /^#(chat|email)\/(\d+)$/.exec(location.hash);
    const inHand = (id) => next.has(id) && next.get(id).state !== 'offered';
    if (m && m[1] === 'chat' && app.chats.has(+m[2]) && inHand(+m[2])) {
      showChat(+m[2], false);
    } else if (m && m[1] === 'email' && app.emails.has(+m[2]) && inHand(+m[2])) {
      showEmail(+m[2], false);
    } else if (app.view === 'chat' && app.activeChat != null && app.chats.has(app.activeChat)) {
      showChat(app.activeChat, false);
    } else if (app.view === 'email' && app.activeEmail != null && app.emails.has(app.activeEmail)) {
      showEmail(app.activeEmail, false);
    } else if (app.view !== 'customer') {
      const pane = sortedAcd().find((e) => e.state !== 'offered' && ((isChatEntry(e) && app.chats.has(e.id)) || (isEmailEntry(e) && app.emails.has(e.id))));
      const first = sortedAcd().find((e) => entryCustomer(e) || e.contact.customer_id != null);
      if (pane && app.chats.has(pane.id)) showChat(pane.id, false);
      else if (pane) showEmail(pane.id, false);
      else if (first) showContactCustomer(first, false);
    }
  }

  function onOffer(msg) {
    const c = msg.contact;
    if (!c || c.id === undefined || c.id === null) return;
    const prev = app.acd.contacts.get(c.id);
    if (prev) clearPending(prev);
    const e = newEntry(c, 'offered', { expires_at: msg.expires_at || null, screen_pop: msg.screen_pop || null });
    if (prev) e.seq = prev.seq;
    const left = msUntil(e.expires_at);
    e.windowMs = left && left > 0 ? left : null;
    app.acd.contacts.set(c.id, e);
    if (c.channel === 'chat' && msg.chat) {
      const chat = upsertChat(c.id, msg.chat, c);
      // Offered while the customer waits with the chat open: they are there (chat_presence
      // tells when that changes).
      if (chat && chat.online === null && chat.open) chat.online = true;
    }
    if (c.channel === 'email') upsertEmail(c.id, msg.email, c);
    renderWorkItems();
    // An agent writing in a chat or an email keeps their pane: the offer rings in the list
    // (its card carries the screen-pop) instead of taking the screen away mid-sentence.
    if (!workingInPane()) showContactCustomer(e, true);
  }

  function workingInPane() {
    const active = (id) => {
      const w = id != null && app.acd.contacts.get(id);
      return !!w && w.state !== 'offered';
    };
    return (app.view === 'chat' && app.chats.has(app.activeChat) && active(app.activeChat))
      || (app.view === 'email' && app.emails.has(app.activeEmail) && active(app.activeEmail));
  }

  function onOfferCancelled(msg) {
    removeEntry(msg.contact_id);
    dropChat(msg.contact_id);
    dropEmail(msg.contact_id);
    const reason = String(msg.reason || '');
    const key = I18N.has('offer.cancelled.' + reason) ? 'offer.cancelled.' + reason : 'offer.cancelled.other';
    toast(t(key), reason === 'rejected' ? 'info' : 'error');
  }

  /** Keep the contact's own line in the screen-pop's recent contacts in step with its state. */
  function patchRecentContact(e, state) {
    const list = e.screen_pop && Array.isArray(e.screen_pop.recent_contacts) ? e.screen_pop.recent_contacts : null;
    const item = list && list.find((c) => c && c.id === e.id);
    if (!item || item.state === state) return;
    item.state = state;
    if (app.view === 'customer' && app.customer.data === e.screen_pop) renderCustomer();
  }

  function onContactState(msg) {
    const id = msg.contact_id;
    const e = app.acd.contacts.get(id);
    if (e && typeof msg.state === 'string') patchRecentContact(e, msg.state);
    switch (msg.state) {
      case 'connected':
      case 'wrap_up':
        if (!e) {
          adoptContact(id, msg);
          return;
        }
        clearPending(e);
        e.error = null;
        if (msg.state === 'connected') {
          e.contact = Object.assign({}, e.contact, {
            state: 'connected',
            connected_at: e.contact.connected_at || new Date(serverNow()).toISOString(),
          });
        } else {
          e.contact = Object.assign({}, e.contact, { state: 'wrap_up' });
          if (msg.wrap_up_until) e.wrap_up_until = msg.wrap_up_until;
          const left = msUntil(e.wrap_up_until);
          if (e.state !== 'wrap_up') e.windowMs = left && left > 0 ? left : null;
          else if (left && left > (e.windowMs || 0)) e.windowMs = left; // extended
        }
        const before = e.state;
        e.state = msg.state;
        renderWorkItems();
        if (isChatEntry(e)) {
          const chat = chatOf(id) || upsertChat(id, { conversation_id: e.contact.conversation_id }, e.contact);
          if (msg.state === 'connected' && before !== 'connected') {
            // Messages written while the offer rang reach this agent only from here on: read it whole.
            socketSend({ type: 'chat_history', contact_id: id });
            showChat(id, true);
          }
          if (chat) chatChanged(chat, {});
        }
        if (isEmailEntry(e)) {
          const em = emailOf(id) || upsertEmail(id, null, e.contact);
          if (msg.state === 'connected' && before !== 'connected') {
            // Mail that arrived (or was acknowledged) while the offer rang: read it whole.
            loadEmail(em);
            showEmail(id, true);
          }
          emailChanged(em, {});
        }
        break;
      case 'closed':
      case 'abandoned': {
        const wasPending = e && e.pending;
        dropChat(id);
        dropEmail(id);
        const was = removeEntry(id);
        if (!was) return;
        if (msg.state === 'abandoned') toast(t('work.customer_left', { name: entryName(was) }), 'error');
        else if (wasPending === 'wrap_up') toast(t('wrapup.saved'));
        else if (was.state === 'wrap_up') toast(t('wrapup.closed_auto'));
        break;
      }
      default:
        break;
    }
  }

  /** A contact_state for a contact this page does not know (e.g. accepted in another tab). */
  async function adoptContact(id, msg) {
    if (adopting.has(id)) return;
    adopting.add(id);
    try {
      const data = await api('GET', '/api/v1/contacts/' + encodeURIComponent(id));
      if (!data || !data.contact || app.acd.contacts.has(id)) return;
      const e = newEntry(data.contact, msg.state, { wrap_up_until: msg.wrap_up_until || null });
      app.acd.contacts.set(id, e);
      if (isChatEntry(e)) socketSend({ type: 'chat_history', contact_id: id });
      if (isEmailEntry(e)) loadEmail(upsertEmail(id, null, e.contact));
      renderWorkItems();
    } catch (err) {
      /* not ours to show */
    } finally {
      adopting.delete(id);
    }
  }

  function clearAllPending() {
    for (const e of app.acd.contacts.values()) clearPending(e);
    refreshAcd();
  }

  // ---- actions

  function acdAction(id, action) {
    const e = app.acd.contacts.get(id);
    if (!e || e.pending) return;
    // A call offered to the browser is answered by the softphone (its media up = accepted).
    if (action === 'accept' && e.contact.channel === 'voice' && window.Softphone && window.Softphone.answer(id)) return;
    let msg;
    switch (action) {
      case 'accept': msg = { type: 'accept', contact_id: id }; break;
      case 'reject': msg = { type: 'reject', contact_id: id }; break;
      case 'complete': msg = { type: 'complete', contact_id: id }; break;
      case 'extend': msg = { type: 'wrap_up_extend', contact_id: id, secs: WRAP_UP_EXTEND_SECS }; break;
      case 'wrap_up':
        if (!e.disposition) {
          e.error = 'wrapup.need_disposition';
          refreshAcdNode(e);
          const rec = acdNodes.get(id);
          const sel = rec && rec.node.querySelector('[data-role="disposition"]');
          if (sel) sel.focus();
          return;
        }
        msg = { type: 'wrap_up', contact_id: id, disposition: e.disposition, notes: e.notes || '' };
        break;
      default:
        return;
    }
    if (!socketSend(msg)) {
      toast(t('work.error.not_connected'), 'error');
      return;
    }
    e.pending = action;
    e.error = null;
    e.pendingTimer = setTimeout(() => {
      if (e.pending !== action) return;
      e.pending = null;
      toast(t('work.error.timeout'), 'error');
      refreshAcdNode(e);
    }, ACTION_TIMEOUT_MS);
    refreshAcdNode(e);
  }

  /** Show the contact's customer in the main area, from the screen-pop payload when there is one. */
  function showContactCustomer(e, push) {
    if (isChatEntry(e) && e.state !== 'offered' && app.chats.has(e.id)) {
      showChat(e.id, push);
      return;
    }
    if (isEmailEntry(e) && e.state !== 'offered' && app.emails.has(e.id)) {
      showEmail(e.id, push);
      return;
    }
    const sp = e.screen_pop;
    const cust = sp && sp.customer;
    if (cust && cust.id !== undefined && cust.id !== null) {
      const hash = '#customer/' + cust.id;
      if (location.hash !== hash) {
        if (push) history.pushState(null, '', hash);
        else history.replaceState(null, '', hash);
      }
      const same = app.customer.id === cust.id && app.customer.data;
      app.customer = Object.assign(app.customer, {
        id: cust.id, status: 'done', data: sp, error: null, seq: app.customer.seq + 1,
        tab: same && app.customer.tab ? app.customer.tab : defaultTab(sp), highlight: null,
      });
      setView('customer');
      renderCustomer();
      $('main').scrollTop = 0;
    } else if (e.contact.customer_id !== undefined && e.contact.customer_id !== null) {
      openCustomer(e.contact.customer_id, push !== false);
    }
  }

  // ---- rendering

  function sortedAcd() {
    return [...app.acd.contacts.values()].sort((a, b) => (ACD_ORDER[a.state] - ACD_ORDER[b.state]) || (a.seq - b.seq));
  }

  function customerLine(e, cls) {
    const cust = entryCustomer(e);
    return h('span', { class: cls },
      h('span', { class: 'acd-name', text: entryName(e) }),
      cust ? tierBadge(cust.tier) : null);
  }

  function channelLine(c) {
    return h('span', { class: 'acd-channel' },
      h('span', { class: 'channel-badge channel-badge-sm ch-' + (c.channel || 'chat') }, channelIcon(c.channel, 'icon-xs')),
      h('span', { text: tOr('channel.', c.channel) }),
      c.queue ? h('span', { class: 'acd-queue', title: t('contact.queue', { queue: c.queue }), text: queueLabel(c.queue) }) : null);
  }

  function buildOfferCard(e) {
    const c = e.contact;
    const em = c.channel === 'email' ? app.emails.get(c.id) : null;
    const own = (c.channel === 'chat' && app.chats.has(c.id)) || !!em; // the channel's own summary
    return h('li', {
      class: 'acd-card offer-card', role: 'group', 'aria-label': t('offer.title'),
      dataset: { contactId: c.id, state: 'offered', channel: c.channel || '' },
    },
    h('div', { class: 'offer-head' },
      h('span', { class: 'offer-signal', 'aria-hidden': 'true' }, icon(c.channel === 'chat' || c.channel === 'email' ? c.channel : 'phone-incoming', 'icon-xs')),
      h('span', { class: 'offer-title', text: t('offer.title') }),
      h('span', { class: 'offer-countdown', title: t('offer.time_left'), dataset: { role: 'countdown' } })),
    h('button', { type: 'button', class: 'acd-main offer-main', title: t('work.show_customer'), onclick: () => showContactCustomer(e, true) },
      customerLine(e, 'offer-customer'),
      channelLine(c),
      own ? null
        : h('span', { class: 'offer-subject' + (c.subject ? '' : ' muted'), text: c.subject || t('contact.no_subject') })),
    c.channel === 'chat' && app.chats.has(c.id) ? buildOfferChat(app.chats.get(c.id)) : null,
    em ? buildOfferEmail(em, c) : null,
    h('div', { class: 'acd-progress', 'aria-hidden': 'true' }, h('span', { class: 'acd-progress-bar', dataset: { role: 'bar' } })),
    h('div', { class: 'offer-actions' },
      h('button', { type: 'button', class: 'btn btn-accept', dataset: { action: 'accept' }, onclick: () => acdAction(e.id, 'accept') },
        icon(c.channel === 'voice' ? 'phone' : 'check'), h('span', { text: t(c.channel === 'voice' ? 'phone.answer' : 'offer.accept') })),
      h('button', { type: 'button', class: 'btn btn-reject', dataset: { action: 'reject' }, onclick: () => acdAction(e.id, 'reject') },
        icon('x'), h('span', { text: t('offer.reject') }))));
  }

  /** A chat offer: who the visitor is (pre-chat form) and what they wrote so far. */
  function buildOfferChat(chat) {
    const v = chat.visitor || {};
    const contact = v.email || (v.phone ? formatPhone(v.phone) : '');
    let page = '';
    if (v.page) {
      try {
        const u = new URL(v.page);
        page = u.host + (u.pathname !== '/' ? u.pathname : '');
      } catch (err) {
        page = String(v.page);
      }
    }
    const msgs = chat.messages.filter((m) => m.from === 'customer').slice(0, 3);
    return h('div', { class: 'offer-chat', dataset: { role: 'offer-chat' } },
      h('div', { class: 'offer-visitor' },
        v.name ? h('span', { class: 'offer-visitor-name', title: t('chat.visitor.name') }, icon('user', 'icon-xs'), h('span', { text: v.name })) : null,
        contact ? h('span', { class: 'offer-visitor-contact', title: v.email ? t('chat.visitor.email') : t('chat.visitor.phone') },
          icon(v.email ? 'email' : 'phone', 'icon-xs'), h('span', { text: contact })) : null,
        v.topic ? h('span', { class: 'offer-visitor-topic', title: t('chat.visitor.topic') }, icon('tag', 'icon-xs'), h('span', { text: tOr('chat.topic.', v.topic) })) : null,
        page ? h('span', { class: 'offer-visitor-page', title: v.page }, icon('globe', 'icon-xs'), h('span', { text: page })) : null),
      msgs.length
        ? h('ul', { class: 'offer-messages' }, msgs.map((m) => h('li', { class: 'offer-msg', text: m.text || (m.attachment && m.attachment.name) || '' })))
        : null);
  }

  /** A chat in hand: the customer, the last message, unread messages, who waits on whom. */
  function buildChatCard(e) {
    const c = e.contact;
    const cust = entryCustomer(e);
    return h('li', { class: 'acd-card work-card chat-card', dataset: { contactId: c.id, state: e.state, channel: 'chat' } },
      h('button', { type: 'button', class: 'acd-main', title: t('chat.open'), onclick: () => showChat(e.id, true) },
        h('span', { class: 'acd-customer' },
          h('span', { class: 'acd-name', text: entryName(e) }),
          cust ? tierBadge(cust.tier) : null,
          h('span', { class: 'unread-badge', dataset: { role: 'unread' }, hidden: true })),
        channelLine(c),
        h('span', { class: 'chat-preview', dataset: { role: 'preview' } })),
      h('div', { class: 'acd-row' },
        h('span', { class: 'wait-chip', dataset: { role: 'waiting' } }),
        h('span', { class: 'acd-timer', title: t('work.handling_time') }, icon('clock', 'icon-xs'), h('span', { class: 'mono', dataset: { role: 'elapsed' } }))));
  }

  function refreshChatCard(e, node) {
    const chat = app.chats.get(e.id);
    node.classList.toggle('is-active', app.view === 'chat' && app.activeChat === e.id);
    if (!chat) return;
    const part = (role) => node.querySelector('[data-role="' + role + '"]');
    const unread = part('unread');
    if (unread) {
      unread.hidden = !chat.unread;
      unread.textContent = chat.unread > 99 ? '99+' : String(chat.unread);
      unread.title = tn('chat.unread', chat.unread, { count: chat.unread });
    }
    const preview = part('preview');
    if (preview) {
      const last = lastPreview(chat);
      const text = last ? previewText(last) : t('chat.no_messages');
      if (preview.textContent !== text) preview.textContent = text;
      preview.classList.toggle('is-unread', chat.unread > 0);
    }
    const wait = part('waiting');
    if (wait) {
      const last = lastExchange(chat);
      let cls = '';
      let text = '';
      if (chat.transferredTo || chat.ended || e.state !== 'connected') {
        text = '';
      } else if (last && last.from === 'customer') {
        const at = parseDate(last.at);
        const ms = at ? serverNow() - at.getTime() : 0;
        cls = ms > 60000 ? 'is-late' : 'is-customer';
        text = t('chat.wait.customer', { time: formatDuration(ms) });
      } else if (last) {
        cls = 'is-agent';
        text = t('chat.wait.agent');
      }
      wait.className = 'wait-chip ' + cls;
      wait.hidden = !text;
      if (wait.textContent !== text) wait.textContent = text;
    }
  }

  function buildWorkHead(e) {
    const c = e.contact;
    const chat = isChatEntry(e);
    const email = isEmailEntry(e);
    return h('button', { type: 'button', class: 'acd-main', title: t(chat ? 'chat.open' : email ? 'email.open' : 'work.show_customer'), onclick: () => showContactCustomer(e, true) },
      customerLine(e, 'acd-customer'),
      channelLine(c),
      h('span', { class: 'acd-subject' + (c.subject ? '' : ' muted'), text: c.subject || t('contact.no_subject') }));
  }

  function buildConnectedCard(e) {
    const c = e.contact;
    return h('li', { class: 'acd-card work-card', dataset: { contactId: c.id, state: 'connected', channel: c.channel || '' } },
      buildWorkHead(e),
      h('div', { class: 'acd-row' },
        h('span', { class: 'chip chip-state cs-connected', text: tOr('cstate.', 'connected') }),
        h('span', { class: 'acd-timer', title: t('work.handling_time') }, icon('clock', 'icon-xs'), h('span', { class: 'mono', dataset: { role: 'elapsed' } })),
        // A call in the browser ends with its hang-up (softphone), not with Complete.
        c.channel === 'voice' && window.Softphone && window.Softphone.handlesAnswer() ? null : h('button', {
          type: 'button', class: 'btn btn-sm btn-complete', title: t('work.complete_title'),
          dataset: { action: 'complete' }, onclick: () => acdAction(e.id, 'complete'),
        }, icon('check-circle', 'icon-xs'), h('span', { text: t('work.complete') }))));
  }

  function buildWrapUpCard(e) {
    const c = e.contact;
    const selId = 'wrapup-disposition-' + e.id;
    const notesId = 'wrapup-notes-' + e.id;
    const codes = app.acd.dispositions.slice();
    if (e.disposition && !codes.includes(e.disposition)) e.disposition = '';
    const sel = h('select', {
      id: selId, class: 'wrapup-select', dataset: { role: 'disposition' },
      onchange: (ev) => { e.disposition = ev.target.value; e.error = null; saveDrafts(); refreshAcdNode(e); },
    },
    h('option', { value: '', text: t('wrapup.choose') }),
    codes.map((d) => h('option', { value: d, text: tOr('disposition.', d) })));
    sel.value = e.disposition || '';
    const notes = h('textarea', {
      id: notesId, class: 'wrapup-notes', rows: 3, maxlength: NOTES_MAX, placeholder: t('wrapup.notes_placeholder'),
      dataset: { role: 'notes' }, oninput: (ev) => { e.notes = ev.target.value; saveDrafts(); },
    });
    notes.value = e.notes || '';
    return h('li', { class: 'acd-card wrapup-card', dataset: { contactId: c.id, state: 'wrap_up', channel: c.channel || '' } },
      buildWorkHead(e),
      h('div', { class: 'acd-row' },
        h('span', { class: 'chip chip-state cs-wrap_up', text: t('wrapup.title') }),
        h('span', { class: 'acd-timer', title: t('wrapup.time_left') }, icon('clock', 'icon-xs'), h('span', { class: 'mono', dataset: { role: 'wrap-left' } }))),
      h('div', { class: 'acd-progress', 'aria-hidden': 'true' }, h('span', { class: 'acd-progress-bar', dataset: { role: 'bar' } })),
      h('form', {
        class: 'wrapup-form', novalidate: true,
        onsubmit: (ev) => { ev.preventDefault(); acdAction(e.id, 'wrap_up'); },
      },
      h('label', { for: selId, class: 'wrapup-label', text: t('wrapup.disposition') }), sel,
      h('label', { for: notesId, class: 'wrapup-label', text: t('wrapup.notes') }), notes,
      h('p', { class: 'wrapup-error', role: 'alert', dataset: { role: 'error' }, hidden: true }),
      h('div', { class: 'wrapup-actions' },
        h('button', { type: 'submit', class: 'btn btn-primary btn-sm btn-done', dataset: { action: 'wrap_up' } },
          icon('check', 'icon-xs'), h('span', { text: t('wrapup.done') })),
        h('button', {
          type: 'button', class: 'btn btn-sm btn-extend', title: t('wrapup.extend_title'),
          dataset: { action: 'extend' }, onclick: () => acdAction(e.id, 'extend'),
        }, icon('plus', 'icon-xs'), h('span', { text: t('wrapup.extend') })))));
  }

  function acdNode(e) {
    const em = e.state === 'offered' ? app.emails.get(e.id) : null;
    const key = [e.state, I18N.getLang(), app.acd.dispositions.join(','), queueLabel(e.contact.queue || ''), em ? em.messages.length : ''].join('|');
    let rec = acdNodes.get(e.id);
    if (!rec || rec.key !== key) {
      const build = e.state === 'offered' ? buildOfferCard
        : e.state === 'connected' ? (isChatEntry(e) ? buildChatCard : isEmailEntry(e) ? buildEmailCard : buildConnectedCard) : buildWrapUpCard;
      rec = { key, node: build(e) };
      acdNodes.set(e.id, rec);
    }
    return rec.node;
  }

  /** Update the parts of a card that change while it stays in one state. */
  function refreshAcdNode(e) {
    const rec = acdNodes.get(e.id);
    if (!rec) return;
    const node = rec.node;
    const part = (role) => node.querySelector('[data-role="' + role + '"]');
    for (const btn of node.querySelectorAll('button[data-action]')) {
      btn.disabled = !!e.pending || !sock.ready;
      btn.classList.toggle('is-busy', e.pending === btn.dataset.action);
    }
    node.classList.toggle('is-pending', !!e.pending);
    const setBar = (left) => {
      const bar = part('bar');
      if (!bar) return;
      const frac = left === null || !e.windowMs ? 1 : Math.max(0, Math.min(1, left / e.windowMs));
      bar.style.width = (frac * 100).toFixed(1) + '%';
    };
    if (e.state === 'offered') {
      const left = msUntil(e.expires_at);
      const secs = left === null ? null : Math.max(0, Math.ceil(left / 1000));
      part('countdown').textContent = secs === null ? '' : t('offer.secs', { secs });
      node.classList.toggle('is-urgent', secs !== null && secs <= OFFER_URGENT_SECS);
      setBar(left);
    } else if (e.state === 'connected') {
      const since = parseDate(e.contact.connected_at);
      part('elapsed').textContent = since ? formatDuration(serverNow() - since.getTime()) : '';
      if (isChatEntry(e)) refreshChatCard(e, node);
      else if (isEmailEntry(e)) refreshEmailCard(e, node);
    } else if (e.state === 'wrap_up') {
      if (isChatEntry(e)) node.classList.toggle('is-active', app.view === 'chat' && app.activeChat === e.id);
      if (isEmailEntry(e)) node.classList.toggle('is-active', app.view === 'email' && app.activeEmail === e.id);
      const left = msUntil(e.wrap_up_until);
      part('wrap-left').textContent = left === null ? '' : formatDuration(Math.max(0, left) + 999);
      node.classList.toggle('is-urgent', left !== null && left <= 10000);
      setBar(left);
      const err = part('error');
      err.textContent = e.error ? t(e.error) : '';
      err.hidden = !e.error;
      part('disposition').classList.toggle('is-invalid', !!e.error);
    }
  }

  function refreshAcd() {
    for (const e of app.acd.contacts.values()) refreshAcdNode(e);
  }

  /** Make parent's children exactly `nodes`, leaving nodes already in place untouched. */
  function reconcile(parent, nodes) {
    nodes.forEach((node, i) => {
      if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
    });
    while (parent.children.length > nodes.length) parent.lastElementChild.remove();
  }

  /** el.replaceChildren(...) leaving out optional parts that are null / false (it would write "null"). */
  function fill(el, ...kids) {
    el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
  }

  function buildWorkItem(item) {
    const title = item.customer_name || item.from || t('contact.unknown_customer');
    return h('li', { class: 'workitem', dataset: { id: item.id, channel: item.channel || '', state: item.state || '' } },
      h('span', { class: 'channel-badge ch-' + (item.channel || 'chat'), title: tOr('channel.', item.channel) }, channelIcon(item.channel)),
      h('span', { class: 'workitem-body' },
        h('span', { class: 'workitem-title', text: title }),
        h('span', { class: 'workitem-sub', text: item.subject || tOr('channel.', item.channel) })),
      h('span', { class: 'workitem-meta' },
        item.state ? h('span', { class: 'chip chip-state cs-' + item.state, text: tOr('cstate.', item.state) }) : null,
        item.created_at ? h('span', { class: 'muted small', title: formatDateTime(item.created_at), text: formatWhen(item.created_at) }) : null));
  }

  function renderWorkItems() {
    const list = $('workitem-list');
    for (const id of [...acdNodes.keys()]) if (!app.acd.contacts.has(id)) acdNodes.delete(id);
    const acd = sortedAcd();
    const nodes = acd.map(acdNode).concat(app.workItems.map(buildWorkItem));
    reconcile(list, nodes);
    for (const e of acd) refreshAcdNode(e);
    $('workitem-count').textContent = String(nodes.length);
    $('workitem-empty').hidden = nodes.length > 0;
    // A console in a background tab still shows an offer and unread chat messages in its title.
    updateTitleBadge();
  }

  async function loadQueueNames() {
    try {
      const data = await api('GET', '/api/v1/queues');
      const map = new Map();
      for (const q of (data && Array.isArray(data.queues)) ? data.queues : []) {
        if (q && q.name) map.set(q.name, q.display_name || q.name);
      }
      app.acd.queueNames = map;
      renderWorkItems();
    } catch (err) {
      /* queue names are a nicety: the raw name is shown */
    }
  }

  // ------------------------------------------------------------------ main area views

  function setView(view) {
    app.view = view;
    $('welcome-panel').hidden = view !== 'welcome';
    $('results-panel').hidden = view !== 'results';
    $('customer-panel').hidden = view !== 'customer';
    $('chat-panel').hidden = view !== 'chat';
    $('email-panel').hidden = view !== 'email';
    // Chat and email panes fill the main area (their lists scroll inside).
    $('main').classList.toggle('is-chat', view === 'chat' || view === 'email');
    if (view !== 'chat') for (const p of chatPanes.values()) stopTyping(chatOf(p.id) || {}, true);
    $('back-btn').hidden = view !== 'customer';
    const label = $('back-btn').querySelector('[data-i18n]');
    label.dataset.i18n = app.search.status === 'idle' ? 'customer.back_search' : 'customer.back';
    label.textContent = t(label.dataset.i18n);
  }

  // ------------------------------------------------------------------ customer search

  let searchDebounce = null;

  function onSearchInput() {
    clearTimeout(searchDebounce);
    const q = $('search-input').value.trim();
    if (!q) {
      if (app.search.abort) app.search.abort.abort();
      app.search = Object.assign(app.search, { q: '', status: 'idle', results: [], error: null });
      if (app.view === 'results') setView('welcome');
      return;
    }
    // Two ASCII characters, or one CJK character, before searching as you type.
    if (q.length < 2 && !/[^\x00-\x7f]/.test(q)) return;
    searchDebounce = setTimeout(() => runSearch(q), 300);
  }

  function onSearchSubmit(ev) {
    ev.preventDefault();
    clearTimeout(searchDebounce);
    const q = $('search-input').value.trim();
    if (q) runSearch(q);
  }

  async function runSearch(q) {
    if (app.search.abort) app.search.abort.abort();
    const ctrl = new AbortController();
    const seq = ++app.search.seq;
    app.search = Object.assign(app.search, { q, status: 'loading', error: null, abort: ctrl });
    if (app.view !== 'results') setView('results');
    if (location.hash.startsWith('#customer/')) history.replaceState(null, '', location.pathname + location.search);
    renderSearch();
    try {
      const data = await api('GET', '/api/v1/customers?q=' + encodeURIComponent(q) + '&limit=20', undefined, ctrl.signal);
      if (seq !== app.search.seq) return;
      app.search.results = (data && Array.isArray(data.customers)) ? data.customers : [];
      app.search.status = 'done';
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (seq !== app.search.seq) return;
      if (err.status === 401) return sessionExpired();
      app.search.status = 'error';
      app.search.error = err;
    }
    renderSearch();
  }

  function primaryIdentity(c, kind) {
    const ids = Array.isArray(c.identities) ? c.identities : [];
    const id = ids.find((i) => i && i.kind === kind);
    return id ? id.value : null;
  }

  /** Name with the matching part wrapped in <mark> (text nodes only). */
  function highlighted(name, q) {
    const s = String(name || '');
    const i = q ? s.toLowerCase().indexOf(q.toLowerCase()) : -1;
    if (i < 0) return [s];
    return [s.slice(0, i), h('mark', { text: s.slice(i, i + q.length) }), s.slice(i + q.length)];
  }

  function tierBadge(tier) {
    if (!tier) return null;
    const known = ['vip', 'important', 'ordinary'].includes(tier);
    return h('span', { class: 'tier-badge tier-' + (known ? tier : 'other'), dataset: { tier } },
      tier === 'vip' ? icon('star', 'icon-xs') : null,
      h('span', { text: tOr('tier.', tier) }));
  }

  function avatarFor(c, size) {
    const cls = 'avatar ' + (size || '');
    if (c.kind === 'company') return h('span', { class: cls + ' avatar-company', 'aria-hidden': 'true' }, icon('company'));
    return h('span', { class: cls, dataset: { hue: avatarHue(c.id + ':' + c.name) }, 'aria-hidden': 'true', text: initials(c.name) });
  }

  function renderSearch() {
    if (!app.user) return;
    const s = app.search;
    const status = $('search-status');
    const list = $('search-results');
    status.className = 'search-status';
    if (s.status === 'loading') {
      status.replaceChildren(h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }), h('span', { text: t('search.searching') }));
      list.classList.add('is-stale');
      return;
    }
    list.classList.remove('is-stale');
    if (s.status === 'error') {
      status.classList.add('is-error');
      status.replaceChildren(icon('alert-octagon'), h('span', { text: describeError(s.error) }));
      list.replaceChildren();
      return;
    }
    if (s.status !== 'done') {
      status.replaceChildren();
      list.replaceChildren();
      return;
    }
    if (!s.results.length) {
      status.replaceChildren();
      list.replaceChildren(h('li', { class: 'empty-state' },
        h('span', { class: 'empty-icon' }, icon('search')),
        h('p', { text: t('search.none', { q: s.q }) }),
        h('p', { class: 'muted small', text: t('search.none_hint') })));
      return;
    }
    status.replaceChildren(h('span', { text: tn('search.count', s.results.length, { count: s.results.length, q: s.q }) }));
    list.replaceChildren(...s.results.map((c) => {
      const phone = primaryIdentity(c, 'phone');
      const email = primaryIdentity(c, 'email');
      const tags = Array.isArray(c.tags) ? c.tags.slice(0, 3) : [];
      return h('li', null,
        h('button', { type: 'button', class: 'result', dataset: { customerId: c.id }, onclick: () => openCustomer(c.id, true) },
          avatarFor(c),
          h('span', { class: 'result-main' },
            h('span', { class: 'result-title' },
              h('span', { class: 'result-name' }, highlighted(c.name, s.q)),
              tierBadge(c.tier),
              h('span', { class: 'chip chip-kind', text: tOr('kind.', c.kind) }),
              c.do_not_call ? h('span', { class: 'chip chip-warn', title: t('consent.do_not_call') }, icon('ban', 'icon-xs'), h('span', { text: t('consent.do_not_call') })) : null),
            h('span', { class: 'result-ids' },
              phone ? h('span', { class: 'result-id' }, icon('phone', 'icon-xs'), h('span', { class: 'mono', text: formatPhone(phone) })) : null,
              email ? h('span', { class: 'result-id' }, icon('email', 'icon-xs'), h('span', { text: email })) : null,
              !phone && !email ? h('span', { class: 'muted', text: t('customer.no_identities') }) : null),
            tags.length ? h('span', { class: 'result-tags' }, tags.map((tg) => h('span', { class: 'tag', text: tg }))) : null),
          h('span', { class: 'result-side' },
            c.external_ref ? h('span', { class: 'mono muted small', text: c.external_ref }) : null,
            icon('chevron-right', 'result-chevron'))));
    }));
  }

  // ------------------------------------------------------------------ customer card (screen-pop)

  const CATEGORIES = [
    { key: 'orders', icon: 'order' },
    { key: 'payments', icon: 'payment' },
    { key: 'transactions', icon: 'transaction' },
    { key: 'returns', icon: 'return' },
    { key: 'documents', icon: 'document' },
  ];

  function routeFromHash() {
    const email = /^#email\/(\d+)$/.exec(location.hash);
    if (email) {
      if (app.emails.has(+email[1])) {
        if (app.activeEmail !== +email[1] || app.view !== 'email') showEmail(+email[1], false);
      } else if (app.view === 'email') {
        setView(app.search.status === 'idle' ? 'welcome' : 'results');
      }
      return;
    }
    const chat = /^#chat\/(\d+)$/.exec(location.hash);
    if (chat) {
      if (app.chats.has(+chat[1])) {
        if (app.activeChat !== +chat[1] || app.view !== 'chat') showChat(+chat[1], false);
      } else if (app.view === 'chat') {
        setView(app.search.status === 'idle' ? 'welcome' : 'results');
      }
      return;
    }
    const m = /^#customer\/(\d+)$/.exec(location.hash);
    if (m) {
      if (String(app.customer.id) !== m[1] || app.view !== 'customer') openCustomer(+m[1], false);
    } else if (app.view === 'customer' || app.view === 'chat' || app.view === 'email') {
      setView(app.search.status === 'idle' ? 'welcome' : 'results');
    }
  }

  async function openCustomer(id, push) {
    if (!app.user) return;
    if (push && location.hash !== '#customer/' + id) history.pushState(null, '', '#customer/' + id);
    const seq = ++app.customer.seq;
    const sameCustomer = app.customer.id === id;
    app.customer = Object.assign(app.customer, {
      id, status: 'loading', error: null, data: sameCustomer ? app.customer.data : null,
      tab: sameCustomer ? app.customer.tab : null, highlight: null,
    });
    setView('customer');
    renderCustomer();
    $('main').scrollTop = 0;
    try {
      const data = await api('GET', '/api/v1/customers/' + encodeURIComponent(id) + '/screen-pop');
      if (seq !== app.customer.seq) return;
      app.customer.data = data;
      app.customer.status = 'done';
      if (!app.customer.tab) app.customer.tab = defaultTab(data);
    } catch (err) {
      if (seq !== app.customer.seq) return;
      if (err.status === 401) return sessionExpired();
      app.customer.status = 'error';
      app.customer.error = err;
    }
    renderCustomer();
  }

  function defaultTab(data) {
    const alerts = Array.isArray(data.alerts) ? data.alerts : [];
    if (alerts.some((a) => a && String(a.kind).startsWith('document_'))) return 'documents';
    const recs = data.records || {};
    const first = CATEGORIES.find((c) => Array.isArray(recs[c.key]) && recs[c.key].length);
    return first ? first.key : 'orders';
  }

  function renderCustomer() {
    const box = $('customer-container');
    if (!app.user) return;
    const c = app.customer;
    if (c.status === 'idle') {
      box.replaceChildren();
      return;
    }
    if (c.status === 'loading' && !c.data) {
      box.replaceChildren(h('div', { class: 'card loading-card' },
        h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: t('customer.loading') })));
      return;
    }
    if (c.status === 'error') {
      const nf = c.error && c.error.status === 404;
      box.replaceChildren(h('div', { class: 'card empty-state' },
        h('span', { class: 'empty-icon' }, icon('alert-octagon')),
        h('p', { text: nf ? t('customer.not_found') : describeError(c.error) })));
      return;
    }
    const card = buildCustomerCard(c.data);
    if (c.status === 'loading') card.classList.add('is-stale');
    box.replaceChildren(card);
    if (c.highlight) {
      const row = box.querySelector('[data-record-id="' + CSS.escape(String(c.highlight)) + '"]');
      if (row) {
        row.classList.add('flash');
        row.scrollIntoView({ block: 'center', behavior: 'smooth' });
      }
      c.highlight = null;
    }
  }

  function buildCustomerCard(data) {
    const cust = data.customer || {};
    const alerts = Array.isArray(data.alerts) ? data.alerts : [];
    const records = data.records || {};
    const alertByRecord = new Map();
    for (const a of alerts) if (a && a.record_id != null && !alertByRecord.has(a.record_id)) alertByRecord.set(a.record_id, a);

    return h('article', { class: 'customer-card', id: 'customer-card', dataset: { customerId: cust.id } },
      alerts.length ? buildAlerts(alerts, records) : null,
      buildCustomerHead(cust, data.balance),
      h('div', { class: 'cust-grid' },
        h('div', { class: 'col-main' },
          buildDetails(cust),
          buildArchive(records, alertByRecord)),
        h('div', { class: 'col-side' },
          buildRecentContacts(data.recent_contacts),
          buildOpenCases(data.open_cases),
          buildNotes(cust.notes))));
  }

  function alertDetail(a) {
    const parts = [];
    if (a.expires_on) {
      const key = I18N.has('alert.date.' + a.kind) ? 'alert.date.' + a.kind : 'alert.date.default';
      parts.push(t(key, { date: formatDay(a.expires_on) }));
      const d = daysFromToday(a.expires_on);
      if (d !== null && a.kind !== 'document_expiry_suspicious') {
        if (d < 0) parts.push(tn('alert.days_ago', -d, { days: -d }));
        else if (d === 0) parts.push(t('alert.today'));
        else parts.push(tn('alert.in_days', d, { days: d }));
      }
    }
    return parts.join(' · ');
  }

  function buildAlerts(alerts, records) {
    const sorted = alerts.slice().sort((a, b) => (a.severity === 'critical' ? 0 : 1) - (b.severity === 'critical' ? 0 : 1));
    return h('section', { class: 'alerts', 'aria-label': t('alerts.title') },
      sorted.map((a) => {
        const known = I18N.has('alert.' + a.kind);
        const title = known ? t('alert.' + a.kind) : (a.message || a.kind);
        const sev = a.severity === 'critical' ? 'critical' : 'warning';
        const target = a.record_id != null ? findRecordCategory(records, a.record_id) : null;
        const detail = alertDetail(a);
        const body = [
          h('span', { class: 'alert-icon' }, icon(sev === 'critical' ? 'alert-octagon' : 'alert-triangle')),
          h('span', { class: 'alert-body' },
            h('span', { class: 'alert-title', text: title }),
            h('span', { class: 'alert-detail' },
              a.reference ? h('span', { class: 'ref', text: a.reference }) : null,
              detail ? h('span', { text: detail }) : null,
              !detail && !a.reference && known && a.message ? h('span', { text: a.message }) : null)),
          target ? h('span', { class: 'alert-action', text: t('alert.view') }) : null,
        ];
        const props = {
          class: 'alert alert-' + sev,
          dataset: { kind: a.kind || '', severity: sev },
          title: a.message || '',
        };
        if (target) {
          return h('button', Object.assign(props, {
            type: 'button',
            onclick: () => {
              app.customer.tab = target;
              app.customer.highlight = a.record_id;
              renderCustomer();
            },
          }), body);
        }
        return h('div', Object.assign(props, { role: 'note' }), body);
      }));
  }

  function findRecordCategory(records, id) {
    for (const c of CATEGORIES) {
      if ((records[c.key] || []).some((r) => r && r.id === id)) return c.key;
    }
    return null;
  }

  function buildCustomerHead(cust, balance) {
    const amount = balance && balance.amount_minor;
    let balanceNote = null;
    let balanceCls = '';
    if (balance && amount !== null && amount !== undefined) {
      if (amount > 0) { balanceNote = t('balance.owed'); balanceCls = 'is-owed'; }
      else if (amount < 0) { balanceNote = t('balance.credit'); balanceCls = 'is-credit'; }
      else { balanceNote = t('balance.settled'); }
    }
    const tags = Array.isArray(cust.tags) ? cust.tags : [];
    return h('header', { class: 'card cust-head' + (cust.tier === 'vip' ? ' is-vip' : '') },
      avatarFor(cust, 'avatar-lg'),
      h('div', { class: 'cust-title' },
        h('div', { class: 'cust-name-row' },
          h('h2', { id: 'customer-name', class: 'cust-name', text: cust.name || '' }),
          tierBadge(cust.tier)),
        h('div', { class: 'cust-meta' },
          h('span', { class: 'chip chip-kind' }, icon(cust.kind === 'company' ? 'company' : 'user', 'icon-xs'), h('span', { text: tOr('kind.', cust.kind) })),
          cust.external_ref ? h('span', { class: 'chip', title: t('customer.external_ref') }, icon('hash', 'icon-xs'), h('span', { class: 'mono', text: cust.external_ref })) : null,
          cust.do_not_call ? h('span', { class: 'chip chip-danger', dataset: { consent: 'do_not_call' } }, icon('ban', 'icon-xs'), h('span', { text: t('consent.do_not_call') })) : null,
          cust.do_not_email ? h('span', { class: 'chip chip-danger', dataset: { consent: 'do_not_email' } }, icon('ban', 'icon-xs'), h('span', { text: t('consent.do_not_email') })) : null),
        tags.length ? h('div', { class: 'cust-tags' }, icon('tag', 'icon-xs muted'), tags.map((tg) => h('span', { class: 'tag', text: tg }))) : null),
      h('div', { class: 'balance ' + balanceCls },
        h('span', { class: 'balance-label', text: t('balance.title') }),
        h('span', { id: 'customer-balance', class: 'balance-amount', text: balance ? formatMoney(amount, balance.currency) || '—' : '—' }),
        h('span', { class: 'balance-note' },
          balanceNote ? h('span', { text: balanceNote }) : null,
          balance && balance.currency ? h('span', { class: 'mono', text: balance.currency }) : null)));
  }

  function detailRow(label, value) {
    return [h('dt', { text: label }), h('dd', null, value)];
  }

  function buildDetails(cust) {
    const ids = Array.isArray(cust.identities) ? cust.identities : [];
    const idList = ids.length
      ? h('ul', { class: 'identity-list' }, ids.map((i) => {
        const blocked = (i.kind === 'phone' && cust.do_not_call) || (i.kind === 'email' && cust.do_not_email);
        return h('li', { class: 'identity' + (blocked ? ' is-blocked' : ''), dataset: { kind: i.kind } },
          h('span', { class: 'identity-icon', title: tOr('identity.', i.kind) }, icon(i.kind === 'phone' ? 'phone' : i.kind)),
          h('span', { class: 'identity-kind', text: tOr('identity.', i.kind) }),
          h('span', { class: (i.kind === 'email' ? '' : 'mono ') + 'identity-value', text: formatIdentity(i.kind, i.value) }),
          blocked ? h('span', { class: 'identity-blocked', title: t(i.kind === 'phone' ? 'consent.do_not_call' : 'consent.do_not_email') },
            icon('ban', 'icon-xs')) : null,
          i.kind === 'phone' && window.Softphone ? window.Softphone.dialButton(cust, i.value) : null);
      }))
      : h('span', { class: 'muted', text: t('customer.no_identities') });

    const consent = [];
    if (cust.do_not_call) consent.push(h('span', { class: 'consent consent-warn' }, icon('ban', 'icon-xs'), h('span', { text: t('consent.do_not_call_long') })));
    if (cust.do_not_email) consent.push(h('span', { class: 'consent consent-warn' }, icon('ban', 'icon-xs'), h('span', { text: t('consent.do_not_email_long') })));
    if (!consent.length) consent.push(h('span', { class: 'consent consent-ok' }, icon('shield', 'icon-xs'), h('span', { text: t('consent.none') })));

    const pref = cust.preferred_channel
      ? h('span', { class: 'inline-icon' }, channelIcon(cust.preferred_channel, 'icon-xs'), h('span', { text: tOr('channel.', cust.preferred_channel) }))
      : h('span', { class: 'muted', text: t('customer.no_preference') });

    return h('section', { class: 'card', id: 'customer-details' },
      h('h3', { class: 'card-title', text: t('customer.details') }),
      h('div', { class: 'details-grid' },
        h('div', null, h('div', { class: 'label', text: t('customer.identities') }), idList),
        h('dl', { class: 'kv' },
          detailRow(t('customer.preferred_channel'), pref),
          detailRow(t('customer.language'), cust.language ? h('span', { text: I18N.LANG_NAMES[cust.language] || cust.language }) : h('span', { class: 'muted', text: '—' })),
          detailRow(t('customer.consent'), h('span', { class: 'consent-list' }, consent)),
          detailRow(t('customer.since'), h('span', { title: formatDateTime(cust.created_at), text: formatDate(cust.created_at) || '—' })))));
  }

  function statusChip(status) {
    if (!status) return h('span', { class: 'muted', text: '—' });
    const s = String(status);
    let tone = 'neutral';
    if (/^(paid|closed|completed|complete|delivered|active|valid|settled|approved|signed|resolved|refunded)$/.test(s)) tone = 'ok';
    else if (/^(overdue|expired|failed|rejected|disputed|defaulted)$/.test(s)) tone = 'bad';
    else if (/^(open|pending|processing|in_progress|shipped|partial|partially_paid|due|draft|new)$/.test(s)) tone = 'info';
    else if (/^(cancelled|canceled|void)$/.test(s)) tone = 'muted';
    return h('span', { class: 'chip chip-status tone-' + tone, dataset: { status: s }, text: tOr('status.', s) });
  }

  function expiryCell(rec, alert) {
    if (!rec.expires_on) return h('span', { class: 'muted', text: '—' });
    const d = daysFromToday(rec.expires_on);
    let chip = null;
    if (alert && alert.kind === 'document_expiry_suspicious') {
      chip = h('span', { class: 'chip chip-xs tone-warn', text: t('expiry.suspicious') });
    } else if ((alert && alert.kind === 'document_expired') || (d !== null && d < 0)) {
      chip = h('span', { class: 'chip chip-xs tone-bad', text: t('expiry.expired') });
    } else if ((alert && alert.kind === 'document_expiring') || (d !== null && d <= 30)) {
      chip = h('span', { class: 'chip chip-xs tone-warn', text: d === 0 ? t('alert.today') : tn('alert.in_days', d, { days: d }) });
    }
    return h('span', { class: 'expiry' }, h('span', { text: formatDay(rec.expires_on) }), chip);
  }

  function buildArchive(records, alertByRecord) {
    const cur = app.customer.tab || 'orders';
    const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': t('records.title') },
      CATEGORIES.map((cat) => {
        const list = Array.isArray(records[cat.key]) ? records[cat.key] : [];
        const flagged = list.some((r) => alertByRecord.has(r.id));
        return h('button', {
          type: 'button', role: 'tab', id: 'tab-' + cat.key, class: 'tab' + (cat.key === cur ? ' is-active' : ''),
          'aria-selected': cat.key === cur ? 'true' : 'false', 'aria-controls': 'tabpanel',
          dataset: { tab: cat.key },
          onclick: () => { app.customer.tab = cat.key; renderCustomer(); },
        },
        icon(cat.icon, 'icon-xs'),
        h('span', { text: t('records.' + cat.key) }),
        h('span', { class: 'tab-count' + (flagged ? ' is-flagged' : ''), text: String(list.length) }));
      }));
    tabs.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
      const i = CATEGORIES.findIndex((c) => c.key === cur);
      const next = CATEGORIES[(i + (ev.key === 'ArrowRight' ? 1 : CATEGORIES.length - 1)) % CATEGORIES.length];
      app.customer.tab = next.key;
      renderCustomer();
      const el = $('tab-' + next.key);
      if (el) el.focus();
    });

    const list = Array.isArray(records[cur]) ? records[cur] : [];
    let body;
    if (!list.length) {
      body = h('div', { class: 'empty-state empty-compact' }, h('p', { class: 'muted', text: t('records.empty') }));
    } else {
      body = h('div', { class: 'table-wrap' }, buildRecordTable(cur, list, alertByRecord));
    }
    return h('section', { class: 'card archive', id: 'customer-archive' },
      h('h3', { class: 'card-title', text: t('records.title') }),
      tabs,
      h('div', { id: 'tabpanel', role: 'tabpanel', 'aria-labelledby': 'tab-' + cur, class: 'tabpanel', dataset: { tab: cur } }, body));
  }

  function buildRecordTable(cat, list, alertByRecord) {
    const isDocs = cat === 'documents';
    const isPay = cat === 'payments';
    const cols = [t('col.reference'), t('col.description')];
    if (isPay) cols.push(t('col.type'));
    if (!isDocs) cols.push(t('col.amount'));
    cols.push(t('col.status'), isDocs ? t('col.issued') : t('col.date'));
    if (isDocs) cols.push(t('col.expires'));
    const thead = h('thead', null, h('tr', null, cols.map((c, i) =>
      h('th', { class: !isDocs && cols[i] === t('col.amount') ? 'num' : null, text: c }))));
    const rows = list.map((r) => {
      const alert = alertByRecord.get(r.id);
      const cells = [
        h('td', { class: 'mono ref-cell', text: r.reference || '—' }),
        h('td', { class: 'desc-cell', text: r.description || '' }),
      ];
      if (isPay) {
        const amt = r.amount_minor;
        cells.push(h('td', null, amt === null || amt === undefined ? '—'
          : h('span', { class: 'chip chip-xs ' + (amt > 0 ? 'tone-info' : 'tone-ok'), text: t(amt > 0 ? 'payment.receivable' : 'payment.received') })));
      }
      if (!isDocs) {
        let amt = r.amount_minor;
        if (isPay && amt !== null && amt !== undefined) amt = Math.abs(amt);
        cells.push(h('td', { class: 'num mono' + (r.amount_minor < 0 && !isPay ? ' is-negative' : ''), text: amt === null || amt === undefined ? '—' : formatMoney(amt, r.currency) }));
      }
      cells.push(h('td', null, statusChip(r.status)));
      cells.push(h('td', { class: 'nowrap', text: r.occurred_on ? formatDay(r.occurred_on) : '—' }));
      if (isDocs) cells.push(h('td', { class: 'nowrap' }, expiryCell(r, alert)));
      return h('tr', {
        dataset: { recordId: r.id },
        class: alert ? 'has-alert alert-row-' + (alert.severity === 'critical' ? 'critical' : 'warning') : null,
      }, cells);
    });
    return h('table', { class: 'table', dataset: { category: cat } }, thead, h('tbody', null, rows));
  }

  function buildRecentContacts(contacts) {
    const list = Array.isArray(contacts) ? contacts.slice() : [];
    list.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    return h('section', { class: 'card', id: 'recent-contacts' },
      h('h3', { class: 'card-title' }, h('span', { text: t('contacts.title') }), h('span', { class: 'count-pill', text: String(list.length) })),
      list.length
        ? h('ul', { class: 'timeline' }, list.map((c) =>
          h('li', { class: 'timeline-item', dataset: { channel: c.channel, state: c.state } },
            h('span', { class: 'channel-badge ch-' + c.channel, title: tOr('channel.', c.channel) }, channelIcon(c.channel)),
            h('div', { class: 'timeline-body' },
              h('div', { class: 'timeline-top' },
                h('span', { class: 'timeline-channel', text: tOr('channel.', c.channel) }),
                h('span', { class: 'direction dir-' + c.direction, title: tOr('direction.', c.direction) },
                  icon(c.direction === 'outbound' ? 'outbound-arrow' : 'inbound', 'icon-xs'),
                  h('span', { text: tOr('direction.', c.direction) })),
                h('span', { class: 'chip chip-xs chip-state cs-' + c.state, text: tOr('cstate.', c.state) })),
              h('div', { class: 'timeline-subject' + (c.subject ? '' : ' muted'), text: c.subject || t('contact.no_subject') }),
              h('div', { class: 'timeline-meta' },
                h('span', { title: formatDateTime(c.created_at), text: formatWhen(c.created_at) }),
                c.queue ? h('span', { text: t('contact.queue', { queue: c.queue }) }) : null)))))
        : h('p', { class: 'muted empty-line', text: t('contacts.empty') }));
  }

  function buildOpenCases(cases) {
    const list = Array.isArray(cases) ? cases : [];
    return h('section', { class: 'card', id: 'open-cases' },
      h('h3', { class: 'card-title' }, h('span', { text: t('cases.title') }), h('span', { class: 'count-pill', text: String(list.length) })),
      list.length
        ? h('ul', { class: 'case-list' }, list.map((c) =>
          h('li', { class: 'case-item' },
            h('span', { class: 'case-icon' }, icon('folder', 'icon-xs')),
            h('div', { class: 'case-body' },
              h('div', { class: 'case-subject', text: c.subject || t('contact.no_subject') }),
              h('div', { class: 'case-meta' },
                h('span', { class: 'mono', text: '#' + c.id }),
                h('span', { title: formatDateTime(c.created_at), text: formatWhen(c.created_at) }))),
            statusChip(c.status))))
        : h('p', { class: 'muted empty-line', text: t('cases.empty') }));
  }

  function buildNotes(notes) {
    return h('section', { class: 'card', id: 'customer-notes' },
      h('h3', { class: 'card-title', text: t('notes.title') }),
      notes ? h('p', { class: 'notes', text: notes }) : h('p', { class: 'muted empty-line', text: t('notes.empty') }));
  }

  // ------------------------------------------------------------------ chat (docs/protocol.md, "Chat (agent socket)")

  /*
   * Chats in hand, by contact id (app.chats): the visitor, the transcript (by seq), the agent's
   * messages still waiting for their chat_ack (by client_id, resent with the same client_id after
   * a reconnect or a reload), typing, presence, read state, the draft. Each chat has its own pane
   * (chatPanes), built once and kept while the chat is in hand, so that switching between chats
   * keeps drafts, scroll positions and an IME composition; the transcript is reconciled
   * message by message, never rebuilt.
   */

  const CHAT_STORE_KEY = 'contact-hub.chat-drafts';
  const CHAT_MAX_CHARS = 4000;
  const TYPING_REFRESH_MS = 3000; // chat_typing active at most this often while typing
  const TYPING_IDLE_MS = 4000; // no key for this long: chat_typing inactive
  const PREVIEW_CHARS = 90;
  const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

  const chatPanes = new Map(); // contact id -> pane record (see buildChatPane)

  function newClientId() {
    const a = new Uint8Array(9);
    crypto.getRandomValues(a);
    return 'a-' + Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function loadChatStore() {
    try {
      const v = JSON.parse(window.sessionStorage.getItem(CHAT_STORE_KEY) || '{}');
      return v && typeof v === 'object' ? v : {};
    } catch (e) {
      return {};
    }
  }

  /** Drafts and unacknowledged sends survive a reload of the page (this tab only). */
  function saveChatStore() {
    const out = {};
    for (const c of app.chats.values()) {
      const pending = c.pending.filter((p) => p.status !== 'failed' || p.retryable)
        .map((p) => ({ client_id: p.client_id, text: p.text, note: p.note, at: p.at }));
      if (c.draft || c.noteMode || pending.length) out[c.id] = { draft: c.draft, noteMode: c.noteMode, pending };
    }
    try {
      window.sessionStorage.setItem(CHAT_STORE_KEY, JSON.stringify(out));
    } catch (err) { /* storage full or disabled */ }
  }

  /** A chat of the chat channel (a conversation); a chat contact made over REST has none. */
  function isChatEntry(e) {
    return !!e && !!e.contact && e.contact.channel === 'chat' && (app.chats.has(e.id) || e.contact.conversation_id != null);
  }

  function chatOf(id) {
    return app.chats.get(id) || null;
  }

  /** Create or refresh a chat from an offer's / hello's `chat` or a chat_history frame. */
  function upsertChat(contactId, data, contact) {
    if (!data || typeof data !== 'object') return null;
    let c = app.chats.get(contactId);
    if (!c) {
      const stored = loadChatStore()[contactId] || {};
      c = {
        id: contactId, conversationId: null, language: null, open: true, visitor: {},
        messages: [], bySeq: new Map(), pending: [],
        unread: 0, typing: false, typingTimer: null, online: null, readSeq: 0, sentReadSeq: 0,
        draft: String(stored.draft || ''), noteMode: !!stored.noteMode,
        ended: null, transferredTo: null, typingActive: false, typingSentAt: 0, typingStopTimer: null,
        lastCustomerAt: null,
      };
      for (const p of Array.isArray(stored.pending) ? stored.pending : []) {
        if (p && p.client_id && p.text) c.pending.push({ client_id: String(p.client_id), text: String(p.text), note: !!p.note, at: p.at || null, status: 'sending' });
      }
      app.chats.set(contactId, c);
    }
    if (data.conversation_id != null) c.conversationId = data.conversation_id;
    else if (contact && contact.conversation_id != null) c.conversationId = contact.conversation_id;
    if (data.language) c.language = String(data.language);
    if (typeof data.open === 'boolean') c.open = data.open;
    if (data.visitor && typeof data.visitor === 'object') c.visitor = data.visitor;
    if (Array.isArray(data.messages)) for (const m of data.messages) addChatMessage(c, m, { quiet: true });
    return c;
  }

  /** Store one message of the transcript (dedup by seq); an agent's own send is now sent. */
  function addChatMessage(c, m, opts) {
    if (!m || typeof m !== 'object' || !Number.isFinite(+m.seq)) return false;
    const seq = +m.seq;
    if ((m.from === 'agent' || m.from === 'note') && m.client_id) {
      const i = c.pending.findIndex((p) => p.client_id === m.client_id);
      if (i >= 0) c.pending.splice(i, 1);
    }
    if (c.bySeq.has(seq)) return false;
    const msg = Object.assign({}, m, { seq });
    c.bySeq.set(seq, msg);
    // Usually appended; a late or resumed message goes into its place.
    let i = c.messages.length;
    while (i > 0 && c.messages[i - 1].seq > seq) i -= 1;
    c.messages.splice(i, 0, msg);
    if (m.from === 'customer') {
      c.typing = false;
      if (!(opts && opts.quiet) && !chatVisible(c)) c.unread += 1;
    }
    return true;
  }

  function chatVisible(c) {
    return app.view === 'chat' && app.activeChat === c.id && document.visibilityState === 'visible';
  }

  function chatEntry(c) {
    return app.acd.contacts.get(c.id) || null;
  }

  function chatName(c) {
    const e = chatEntry(c);
    const cust = e && entryCustomer(e);
    return (cust && cust.name) || (c.visitor && c.visitor.name) || t('chat.visitor');
  }

  function chatConnected(c) {
    const e = chatEntry(c);
    return !!e && e.state === 'connected' && c.open && !c.ended && !c.transferredTo;
  }

  /** The last message that counts for "who waits on whom": the customer's or an agent's. */
  function lastExchange(c) {
    for (let i = c.messages.length - 1; i >= 0; i -= 1) {
      const m = c.messages[i];
      if (m.from === 'customer' || m.from === 'agent') return m;
    }
    return null;
  }

  function lastPreview(c) {
    for (let i = c.messages.length - 1; i >= 0; i -= 1) {
      const m = c.messages[i];
      if (m.from === 'system') continue;
      return m;
    }
    return null;
  }

  function previewText(m) {
    if (!m) return '';
    let text = m.text || '';
    if (!text && m.attachment) text = m.attachment.name || t('chat.attachment');
    text = text.replace(/\s+/g, ' ').trim();
    const cut = Array.from(text);
    text = cut.length > PREVIEW_CHARS ? cut.slice(0, PREVIEW_CHARS).join('') + '…' : text;
    if (m.from === 'agent' && m.agent_id && app.user && m.agent_id !== app.user.id) return t('chat.preview.agent', { name: m.name || '', text });
    if (m.from === 'agent') return t('chat.preview.you', { text });
    if (m.from === 'note') return t('chat.preview.note', { text });
    return text;
  }

  function fillCanned(body, c) {
    const name = c.kind === 'email' ? emailName(c) : chatName(c);
    const agent = (app.user && (app.user.display_name || app.user.username)) || '';
    const vars = { 'customer.name': name, 'agent.name': agent, 'contact.id': String(c.id) };
    return String(body || '').replace(/\{(customer\.name|agent\.name|contact\.id)\}/g, (m0, k) => vars[k]);
  }

  function formatSize(n) {
    const b = Number(n) || 0;
    if (b < 1024) return t('chat.size.bytes', { n: b });
    if (b < 1024 * 1024) return t('chat.size.kb', { n: (b / 1024).toFixed(b < 10240 ? 1 : 0) });
    return t('chat.size.mb', { n: (b / 1048576).toFixed(1) });
  }

  // ---- socket frames

  function chatFrame(msg) {
    const id = msg.contact_id;
    switch (msg.type) {
      case 'chat_message': {
        const c = chatOf(id);
        if (!c) {
          // A chat in hand this page has not seen yet (another tab accepted it): read it whole.
          if (app.acd.contacts.has(id)) socketSend({ type: 'chat_history', contact_id: id });
          return;
        }
        const added = addChatMessage(c, msg.message);
        if (added) chatChanged(c, { newMessage: msg.message });
        break;
      }
      case 'chat_ack': {
        const c = chatOf(id);
        if (!c) return;
        addChatMessage(c, msg.message);
        const i = c.pending.findIndex((p) => p.client_id === msg.client_id);
        if (i >= 0) c.pending.splice(i, 1);
        saveChatStore();
        chatChanged(c, { own: true });
        break;
      }
      case 'chat_history': {
        const e = app.acd.contacts.get(id);
        const c = upsertChat(id, msg, e && e.contact);
        if (!c) return;
        resendPending(c);
        chatChanged(c, {});
        break;
      }
      case 'chat_typing': {
        const c = chatOf(id);
        if (!c) return;
        c.typing = !!msg.active;
        clearTimeout(c.typingTimer);
        // A lost "stopped typing" must not leave the indicator on for ever.
        if (c.typing) c.typingTimer = setTimeout(() => { c.typing = false; chatChanged(c, {}); }, 15000);
        chatChanged(c, {});
        break;
      }
      case 'chat_read': {
        const c = chatOf(id);
        if (!c) return;
        if (+msg.seq > c.readSeq) c.readSeq = +msg.seq;
        chatChanged(c, {});
        break;
      }
      case 'chat_presence': {
        const c = chatOf(id);
        if (!c) return;
        c.online = !!msg.online;
        if (!c.online) c.typing = false;
        chatChanged(c, {});
        break;
      }
      case 'chat_ended': {
        const c = chatOf(id);
        if (!c) return;
        c.ended = String(msg.reason || 'agent');
        c.open = false;
        c.typing = false;
        stopTyping(c, false);
        chatChanged(c, {});
        break;
      }
      case 'transferred': {
        const c = chatOf(id);
        const agentName = msg.agent_id != null ? ((app.liveAgents && app.liveAgents.get(msg.agent_id)) || ('#' + msg.agent_id)) : null;
        if (c) {
          c.transferredTo = { queue: msg.queue || null, agent_id: msg.agent_id || null, agent: agentName };
          c.open = false;
          chatChanged(c, {});
        }
        closeModal();
        toast(agentName ? t('chat.transfer.done_agent', { agent: agentName }) : t('chat.transfer.done', { queue: queueLabel(msg.queue || '') }));
        break;
      }
      default:
        break;
    }
  }

  /** An error frame about one of this agent's messages (it carries the client_id). */
  function chatSendFailed(msg) {
    for (const c of app.chats.values()) {
      const p = c.pending.find((x) => x.client_id === msg.client_id);
      if (!p) continue;
      p.status = 'failed';
      p.error = msg.code || 'error';
      // Refused for what it is (too long, chat over): sending it again would fail again.
      p.retryable = !['too_long', 'ended', 'not_allowed', 'not_chat', 'invalid_message'].includes(msg.code);
      saveChatStore();
      chatChanged(c, {});
      return true;
    }
    return false;
  }

  /** After a reconnect or a reload: every unacknowledged send again, with its own client_id. */
  function resendPending(c) {
    if (!sock.ready) return;
    for (const p of c.pending) {
      if (p.status === 'failed' && !p.retryable) continue;
      if ([...c.bySeq.values()].some((m) => m.client_id === p.client_id && (m.from === 'agent' || m.from === 'note'))) continue;
      p.status = 'sending';
      socketSend({ type: p.note ? 'chat_note' : 'chat_send', contact_id: c.id, client_id: p.client_id, text: p.text });
    }
  }

  /** hello: the chats in hand with their whole transcripts; drop the rest. */
  function onHelloChats(msg) {
    const keep = new Set();
    for (const item of Array.isArray(msg.contacts) ? msg.contacts : []) {
      const c0 = item && item.contact;
      if (!c0 || c0.channel !== 'chat' || (!item.chat && c0.conversation_id == null)) continue;
      keep.add(c0.id);
      const c = upsertChat(c0.id, item.chat || { conversation_id: c0.conversation_id }, c0);
      if (c && !item.chat && item.state !== 'offered') socketSend({ type: 'chat_history', contact_id: c0.id });
    }
    for (const id of [...app.chats.keys()]) if (!keep.has(id)) dropChat(id);
    for (const c of app.chats.values()) {
      resendPending(c);
      chatChanged(c, {});
    }
    saveChatStore();
  }

  function dropChat(id) {
    const c = app.chats.get(id);
    if (!c) return;
    clearTimeout(c.typingTimer);
    clearTimeout(c.typingStopTimer);
    app.chats.delete(id);
    const pane = chatPanes.get(id);
    if (pane) pane.root.remove();
    chatPanes.delete(id);
    saveChatStore();
    if (app.activeChat === id) {
      app.activeChat = null;
      if (app.view === 'chat') {
        const next = sortedAcd().find((e) => isChatEntry(e) && e.state !== 'offered' && app.chats.has(e.id));
        if (next) showChat(next.id, false);
        else {
          if (location.hash.startsWith('#chat/')) history.replaceState(null, '', location.pathname + location.search);
          setView(app.search.status === 'idle' ? 'welcome' : 'results');
        }
      }
    }
  }

  /** Something about a chat changed: its pane, its card, read receipts. */
  function chatChanged(c, what) {
    const pane = chatPanes.get(c.id);
    if (pane) updateChatPane(c, pane, what);
    const e = chatEntry(c);
    if (e) refreshAcdNode(e);
    sendReadReceipt(c);
    updateTitleBadge();
  }

  function sendReadReceipt(c) {
    if (!chatVisible(c)) return;
    c.unread = 0;
    const last = c.messages.length ? c.messages[c.messages.length - 1].seq : 0;
    if (last > c.sentReadSeq && chatConnected(c) && sock.ready) {
      if (socketSend({ type: 'chat_read', contact_id: c.id, seq: last })) c.sentReadSeq = last;
    }
  }

  function updateTitleBadge() {
    if (!app.user) return;
    let unread = 0;
    for (const c of app.chats.values()) unread += c.unread;
    for (const em of app.emails.values()) unread += em.unread;
    const offering = [...app.acd.contacts.values()].some((e) => e.state === 'offered');
    document.title = (offering ? t('offer.title') + ' · ' : '') + (unread ? '(' + unread + ') ' : '') + t('app.title_console');
  }

  // ---- actions

  function chatSend(c, text, note) {
    const body = String(text || '').trim();
    if (!body) return false;
    if (Array.from(body).length > CHAT_MAX_CHARS) {
      toast(t('error.code.too_long'), 'error');
      return false;
    }
    if (!note && !chatConnected(c)) return false;
    const p = { client_id: newClientId(), text: body, note: !!note, at: new Date(serverNow()).toISOString(), status: 'sending' };
    c.pending.push(p);
    saveChatStore();
    // Not connected: it stays "sending" and goes out with the same client_id after the next hello.
    socketSend({ type: note ? 'chat_note' : 'chat_send', contact_id: c.id, client_id: p.client_id, text: body });
    if (!note) stopTyping(c, true);
    chatChanged(c, { own: true });
    return true;
  }

  function retrySend(c, clientId) {
    const p = c.pending.find((x) => x.client_id === clientId);
    if (!p) return;
    p.status = 'sending';
    p.error = null;
    socketSend({ type: p.note ? 'chat_note' : 'chat_send', contact_id: c.id, client_id: p.client_id, text: p.text });
    chatChanged(c, { own: true });
  }

  function discardSend(c, clientId) {
    c.pending = c.pending.filter((x) => x.client_id !== clientId);
    saveChatStore();
    chatChanged(c, {});
  }

  /** The agent types a message (not a note): typing indicator for the customer, throttled. */
  function onComposerTyping(c) {
    if (c.noteMode || !chatConnected(c)) return;
    const now = Date.now();
    if (!c.typingActive || now - c.typingSentAt > TYPING_REFRESH_MS) {
      if (socketSend({ type: 'chat_typing', contact_id: c.id, active: true })) {
        c.typingActive = true;
        c.typingSentAt = now;
      }
    }
    clearTimeout(c.typingStopTimer);
    c.typingStopTimer = setTimeout(() => stopTyping(c, true), TYPING_IDLE_MS);
  }

  function stopTyping(c, send) {
    clearTimeout(c.typingStopTimer);
    if (c.typingActive && send && chatConnected(c)) socketSend({ type: 'chat_typing', contact_id: c.id, active: false });
    c.typingActive = false;
  }

  // ---- showing a chat

  function showChat(id, push) {
    const c = chatOf(id);
    if (!c) return;
    const hash = '#chat/' + id;
    if (location.hash !== hash) {
      if (push) history.pushState(null, '', hash);
      else history.replaceState(null, '', hash);
    }
    const prev = app.activeChat;
    app.activeChat = id;
    setView('chat');
    const panel = $('chat-panel');
    let pane = chatPanes.get(id);
    if (!pane) {
      pane = buildChatPane(c);
      chatPanes.set(id, pane);
      panel.append(pane.root);
    }
    for (const [pid, p] of chatPanes) p.root.hidden = pid !== id;
    updateChatPane(c, pane, { shown: true });
    if (prev !== id || pane.stickBottom) scrollToBottom(pane);
    c.unread = 0;
    sendReadReceipt(c);
    refreshAcd();
    updateTitleBadge();
    if (chatConnected(c) && !isTypingElsewhere()) pane.input.focus({ preventScroll: true });
  }

  function isTypingElsewhere() {
    const a = document.activeElement;
    return !!a && a !== document.body && (a.tagName === 'INPUT' || a.tagName === 'TEXTAREA' || a.tagName === 'SELECT') && !a.closest('.chat-pane');
  }

  function rebuildChatPanes() {
    for (const [id, pane] of [...chatPanes]) { // a copy: the loop puts new panes in the map
      const c = chatOf(id);
      pane.root.remove();
      chatPanes.delete(id);
      if (!c) continue;
      const fresh = buildChatPane(c);
      chatPanes.set(id, fresh);
      $('chat-panel').append(fresh.root);
      fresh.root.hidden = !(app.view === 'chat' && app.activeChat === id);
      updateChatPane(c, fresh, { shown: true });
      scrollToBottom(fresh);
    }
  }

  function scrollToBottom(pane) {
    const el = pane.transcript;
    el.scrollTop = el.scrollHeight;
    pane.stickBottom = true;
  }

  // ---- the pane

  function buildChatPane(c) {
    const pane = { id: c.id, nodes: new Map(), composing: false, compositionEndAt: 0, stickBottom: true, canned: null, sideKey: null };
    const e = chatEntry(c);

    pane.avatar = h('span', { class: 'avatar avatar-chat', 'aria-hidden': 'true' });
    pane.name = h('h2', { class: 'chat-name' });
    pane.tier = h('span', { class: 'chat-tier' });
    pane.presence = h('span', { class: 'presence', dataset: { role: 'presence' } });
    pane.topic = h('span', { class: 'chip chip-xs chat-topic' });
    pane.lang = h('span', { class: 'chip chip-xs chip-kind' });
    pane.timer = h('span', { class: 'chat-timer mono', title: t('chat.timer_title') });
    pane.transferBtn = h('button', {
      type: 'button', class: 'btn btn-sm', dataset: { action: 'transfer' }, onclick: () => openTransfer(c),
    }, icon('transfer', 'icon-xs'), h('span', { text: t('chat.transfer.button') }));
    pane.endBtn = h('button', {
      type: 'button', class: 'btn btn-sm btn-end', dataset: { action: 'end-chat' }, onclick: () => confirmEnd(c),
    }, icon('x-circle', 'icon-xs'), h('span', { text: t('chat.end.button') }));

    const head = h('header', { class: 'chat-head' },
      pane.avatar,
      h('div', { class: 'chat-head-main' },
        h('div', { class: 'chat-head-row' }, pane.name, pane.tier),
        h('div', { class: 'chat-head-meta' }, pane.presence, pane.topic, pane.lang,
          h('span', { class: 'chat-timer-wrap' }, icon('clock', 'icon-xs'), pane.timer))),
      h('div', { class: 'chat-head-actions' }, pane.transferBtn, pane.endBtn));

    pane.transcript = h('div', { class: 'transcript', role: 'log', 'aria-live': 'polite', 'aria-label': t('chat.transcript') });
    // The transcript shrinks when the typing line, the composer or the closed banner grow:
    // a reader at the latest message stays there.
    if (window.ResizeObserver) {
      new ResizeObserver(() => { if (pane.stickBottom) pane.transcript.scrollTop = pane.transcript.scrollHeight; }).observe(pane.transcript);
    }
    pane.transcript.addEventListener('scroll', () => {
      const el = pane.transcript;
      pane.stickBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
      if (pane.stickBottom) pane.jump.hidden = true;
    });
    pane.jump = h('button', { type: 'button', class: 'jump-latest', hidden: true, onclick: () => { scrollToBottom(pane); pane.jump.hidden = true; } },
      h('span', { text: t('chat.jump_latest') }));
    pane.typing = h('div', { class: 'typing-line', hidden: true, 'aria-live': 'polite' },
      h('span', { class: 'typing-dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
      h('span', { dataset: { role: 'typing-text' } }));

    pane.composer = buildComposer(c, pane);
    pane.closed = h('div', { class: 'chat-closed', hidden: true, role: 'status' });

    const conv = h('section', { class: 'chat-conv', 'aria-label': t('chat.conversation') },
      head,
      h('div', { class: 'transcript-wrap' }, pane.transcript, pane.jump),
      pane.typing,
      pane.composer.root,
      pane.closed);

    pane.side = h('aside', { class: 'chat-side', 'aria-label': t('chat.side.title') });
    pane.root = h('div', { class: 'chat-pane', dataset: { contactId: c.id, conversationId: c.conversationId == null ? '' : c.conversationId } },
      conv, pane.side);
    if (e) pane.root.dataset.state = e.state;
    return pane;
  }

  function buildComposer(c, pane) {
    const comp = {};
    comp.input = h('textarea', {
      class: 'composer-input', rows: 2, maxlength: CHAT_MAX_CHARS, 'aria-label': t('chat.composer.label'),
      dataset: { role: 'composer' },
    });
    pane.input = comp.input;
    comp.input.value = c.draft || '';
    const grow = () => {
      comp.input.style.height = 'auto';
      comp.input.style.height = Math.min(comp.input.scrollHeight + 2, 180) + 'px';
    };
    comp.input.addEventListener('input', () => {
      c.draft = comp.input.value;
      saveChatStore();
      grow();
      updateComposer(c, pane);
      if (c.draft) onComposerTyping(c);
      else stopTyping(c, true);
    });
    trackComposition(comp.input, pane);
    comp.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && pane.canned) { closeCanned(pane); ev.preventDefault(); return; }
      if (ev.key !== 'Enter' || ev.shiftKey || ev.altKey || ev.ctrlKey || ev.metaKey) return;
      if (imeEnter(ev, pane)) return;
      ev.preventDefault();
      submitComposer(c, pane);
    });
    comp.input.addEventListener('blur', () => stopTyping(c, true));

    const modeBtn = (mode, key, ic) => modeTab(mode, t(key), ic, () => {
      c.noteMode = mode === 'note';
      if (c.noteMode) stopTyping(c, true);
      saveChatStore();
      updateComposer(c, pane);
      comp.input.focus();
    });
    comp.replyTab = modeBtn('reply', 'chat.mode.reply', 'chat');
    comp.noteTab = modeBtn('note', 'chat.mode.note', 'lock');
    comp.cannedBtn = cannedButton(c, pane);
    comp.hint = h('span', { class: 'composer-hint' });
    comp.count = h('span', { class: 'composer-count mono' });
    comp.sendBtn = h('button', { type: 'submit', class: 'btn btn-primary btn-send', dataset: { action: 'send' } },
      icon('send', 'icon-xs'), h('span', { dataset: { role: 'send-label' } }));
    comp.cannedBox = h('div', { class: 'canned-anchor' });
    comp.root = h('form', {
      class: 'composer', novalidate: true,
      onsubmit: (ev) => { ev.preventDefault(); submitComposer(c, pane); },
    },
    comp.cannedBox,
    h('div', { class: 'composer-tabs', role: 'tablist', 'aria-label': t('chat.mode.label') }, comp.replyTab, comp.noteTab,
      h('span', { class: 'composer-note-label', text: t('chat.mode.note_hint') })),
    comp.input,
    h('div', { class: 'composer-bar' }, comp.cannedBtn, comp.hint, comp.count, comp.sendBtn));
    pane.comp = comp;
    requestAnimationFrame(grow);
    return comp;
  }

  // ---- composer pieces the chat and email panes share

  /** Chinese (and other) input methods: Enter confirms the composition, it never sends. */
  function trackComposition(input, pane) {
    input.addEventListener('compositionstart', () => { pane.composing = true; });
    input.addEventListener('compositionend', () => { pane.composing = false; pane.compositionEndAt = Date.now(); });
  }

  /** This Enter belongs to an input method's composition (or the keyup of one just ended). */
  function imeEnter(ev, pane) {
    return ev.isComposing || ev.keyCode === 229 || pane.composing || Date.now() - pane.compositionEndAt < 30;
  }

  function modeTab(mode, label, ic, onclick) {
    return h('button', { type: 'button', role: 'tab', class: 'mode-tab', dataset: { mode }, onclick }, icon(ic, 'icon-xs'), h('span', { text: label }));
  }

  /** The canned-response picker's button; the pane has comp.cannedBox, comp.cannedBtn, input. */
  function cannedButton(c, pane) {
    return h('button', {
      type: 'button', class: 'btn btn-sm btn-ghost', dataset: { action: 'canned' }, 'aria-haspopup': 'listbox',
      onclick: () => (pane.canned ? closeCanned(pane) : openCanned(c, pane)),
    }, icon('zap', 'icon-xs'), h('span', { text: t('chat.canned.button') }));
  }

  function submitComposer(c, pane) {
    const text = pane.input.value;
    if (!text.trim()) return;
    if (chatSend(c, text, c.noteMode)) {
      pane.input.value = '';
      c.draft = '';
      saveChatStore();
      pane.input.style.height = 'auto';
      scrollToBottom(pane);
      updateComposer(c, pane);
    }
  }

  function updateComposer(c, pane) {
    const comp = pane.comp;
    const live = chatConnected(c);
    const note = c.noteMode || !live;
    comp.root.classList.toggle('is-note', note);
    comp.replyTab.classList.toggle('is-active', !note);
    comp.replyTab.setAttribute('aria-selected', note ? 'false' : 'true');
    comp.replyTab.disabled = !live;
    comp.noteTab.classList.toggle('is-active', note);
    comp.noteTab.setAttribute('aria-selected', note ? 'true' : 'false');
    comp.input.placeholder = t(note ? 'chat.composer.note_placeholder' : 'chat.composer.placeholder', { name: chatName(c) });
    comp.sendBtn.querySelector('[data-role="send-label"]').textContent = t(note ? 'chat.composer.add_note' : 'chat.composer.send');
    comp.sendBtn.disabled = !pane.input.value.trim() || (!live && !note);
    comp.hint.textContent = t('chat.composer.hint');
    const n = Array.from(pane.input.value).length;
    comp.count.textContent = n > CHAT_MAX_CHARS - 500 ? n + ' / ' + CHAT_MAX_CHARS : '';
  }

  function updateChatPane(c, pane, what) {
    const e = chatEntry(c);
    const sp = e && e.screen_pop;
    const cust = sp && sp.customer;
    const name = chatName(c);
    pane.root.dataset.state = e ? e.state : '';
    pane.root.dataset.conversationId = c.conversationId == null ? '' : c.conversationId;
    pane.avatar.textContent = initials(name);
    pane.avatar.dataset.hue = avatarHue((cust && cust.id) + ':' + name);
    pane.name.textContent = name;
    pane.tier.replaceChildren(cust ? tierBadge(cust.tier) || '' : h('span', { class: 'chip chip-xs chip-kind', text: t('chat.unknown_visitor') }));
    const presence = c.ended || c.transferredTo ? null : c.online;
    pane.presence.dataset.online = presence === null ? 'unknown' : String(presence);
    pane.presence.replaceChildren(h('span', { class: 'presence-dot', 'aria-hidden': 'true' }),
      h('span', { text: presence === null ? t('chat.presence.unknown') : t(presence ? 'chat.presence.online' : 'chat.presence.offline') }));
    pane.presence.hidden = presence === null;
    const topic = c.visitor && c.visitor.topic;
    pane.topic.textContent = topic ? tOr('chat.topic.', topic) : '';
    pane.topic.hidden = !topic;
    pane.lang.textContent = c.language ? (I18N.LANG_NAMES[c.language] || c.language) : '';
    pane.lang.hidden = !c.language;
    tickChatPane(c, pane);

    renderTranscript(c, pane, what || {});

    pane.typing.hidden = !c.typing;
    pane.typing.querySelector('[data-role="typing-text"]').textContent = t('chat.typing', { name });

    const live = chatConnected(c);
    pane.transferBtn.disabled = !live || !sock.ready;
    pane.endBtn.disabled = !live || !sock.ready;
    // Replies while connected; notes only once the chat is over but still in hand (wrap-up).
    pane.comp.root.hidden = !(e && (e.state === 'connected' || e.state === 'wrap_up'));
    updateComposer(c, pane);
    renderChatClosed(c, pane);
    renderChatSide(c, pane);
  }

  function tickChatPane(c, pane) {
    const e = chatEntry(c);
    const since = e && parseDate(e.contact.connected_at);
    pane.timer.textContent = since ? formatDuration((e.state === 'wrap_up' && c.endedAt ? c.endedAt : serverNow()) - since.getTime()) : '—';
  }

  function renderChatClosed(c, pane) {
    const e = chatEntry(c);
    let key = null;
    // After a reload the reason is in the transcript: the last system notice says how it ended.
    const endEvent = [...c.messages].reverse().find((m) => m.from === 'system' && /^(ended_|transferred$)/.test(m.event || ''));
    const endedBy = c.ended || (endEvent && endEvent.event.startsWith('ended_') ? endEvent.event.slice(6) : null);
    if (c.transferredTo) key = c.transferredTo.agent ? 'chat.closed.transferred_agent' : 'chat.closed.transferred';
    else if (endedBy) key = 'chat.closed.' + (I18N.has('chat.closed.' + endedBy) ? endedBy : 'over');
    else if (e && e.state === 'wrap_up') key = 'chat.closed.over';
    if (key && !c.endedAt) c.endedAt = serverNow();
    pane.closed.hidden = !key;
    if (!key) return;
    const inWrap = e && e.state === 'wrap_up';
    fill(pane.closed, 
      h('span', { class: 'chat-closed-icon' }, icon('check-circle')),
      h('span', { class: 'chat-closed-text' },
        h('strong', { text: t(key, { queue: c.transferredTo ? queueLabel(c.transferredTo.queue || '') : '', agent: c.transferredTo ? c.transferredTo.agent : '' }) }),
        h('span', { text: inWrap ? t('chat.closed.wrap_hint') : '' })),
      inWrap ? goWrapUpButton(c.id) : null);
  }

  /** "Wrap up": to the contact's wrap-up card, its disposition picker focused. */
  function goWrapUpButton(id) {
    return h('button', {
      type: 'button', class: 'btn btn-sm btn-primary', dataset: { action: 'go-wrapup' },
      onclick: () => {
        const rec = acdNodes.get(id);
        const sel = rec && rec.node.querySelector('[data-role="disposition"]');
        if (sel) { rec.node.scrollIntoView({ block: 'nearest' }); sel.focus(); }
      },
    }, h('span', { text: t('chat.closed.go_wrapup') }));
  }

  function dayKey(d) {
    return d ? d.getFullYear() + '-' + d.getMonth() + '-' + d.getDate() : '';
  }

  function dayLabel(d) {
    const now = new Date();
    if (dayKey(d) === dayKey(now)) return t('chat.today');
    const y = new Date(now.getTime() - 86400000);
    if (dayKey(d) === dayKey(y)) return t('chat.yesterday');
    return formatDate(d.toISOString());
  }

  /** The transcript: one node per message (kept), pending sends after the stored ones. */
  function renderTranscript(c, pane, what) {
    const el = pane.transcript;
    const wasBottom = pane.stickBottom || el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    const nodes = [];
    let lastDay = '';
    const items = c.messages.map((m) => ({ key: 's' + m.seq, m, pending: null }))
      .concat(c.pending.map((p) => ({ key: 'p' + p.client_id, m: { from: p.note ? 'note' : 'agent', text: p.text, at: p.at, client_id: p.client_id, agent_id: app.user && app.user.id }, pending: p })));
    const meId = app.user && app.user.id;
    items.forEach((it, i) => {
      const d = parseDate(it.m.at);
      const dk = dayKey(d);
      if (d && dk !== lastDay) {
        const k = 'd' + dk;
        let sep = pane.nodes.get(k);
        if (!sep) {
          sep = h('div', { class: 'day-sep', role: 'separator' }, h('span', { text: dayLabel(d) }));
          pane.nodes.set(k, sep);
        }
        nodes.push(sep);
        lastDay = dk;
      }
      const prev = items[i - 1];
      const grouped = prev && prev.m.from === it.m.from && it.m.from !== 'system'
        && (prev.m.agent_id || null) === (it.m.agent_id || null)
        && parseDate(prev.m.at) && d && d - parseDate(prev.m.at) < 120000;
      let rec = pane.nodes.get(it.key);
      if (!rec) {
        rec = buildMessageNode(c, it.m, it.pending);
        pane.nodes.set(it.key, rec);
      }
      rec.node.classList.toggle('is-grouped', !!grouped);
      updateMessageNode(c, rec, it.m, it.pending, meId);
      nodes.push(rec.node);
    });
    if (!items.length) {
      let empty = pane.nodes.get('empty');
      if (!empty) {
        empty = h('div', { class: 'transcript-empty', text: t('chat.empty') });
        pane.nodes.set('empty', empty);
      }
      nodes.push(empty);
    }
    // Nodes of pending sends that are now stored go away.
    const live = new Set(items.map((it) => it.key));
    for (const k of [...pane.nodes.keys()]) {
      if ((k[0] === 'p' || k[0] === 's') && !live.has(k)) pane.nodes.delete(k);
    }
    reconcile(el, nodes);
    if (what.own || what.shown || wasBottom) {
      el.scrollTop = el.scrollHeight;
      pane.stickBottom = true;
    } else if (what.newMessage) {
      pane.jump.hidden = false;
    }
  }

  function attachmentNode(a) {
    const url = '/api/v1/attachments/' + encodeURIComponent(a.id);
    const name = String(a.name || t('chat.attachment'));
    if (IMAGE_TYPES.includes(String(a.content_type || '').toLowerCase())) {
      return h('a', { class: 'att-image', href: url, download: name, title: t('chat.download', { name }), dataset: { attachmentId: a.id } },
        h('img', { src: url, alt: name, loading: 'lazy' }),
        h('span', { class: 'att-image-name', text: name + ' · ' + formatSize(a.size) }));
    }
    return h('a', { class: 'att-file', href: url, download: name, title: t('chat.download', { name }), dataset: { attachmentId: a.id } },
      h('span', { class: 'att-file-icon' }, icon('document', 'icon-xs')),
      h('span', { class: 'att-file-body' },
        h('span', { class: 'att-file-name', text: name }),
        h('span', { class: 'att-file-size', text: formatSize(a.size) })),
      icon('download', 'icon-xs att-file-dl'));
  }

  function systemText(m) {
    const key = 'chat.event.' + (m.event || '');
    if (m.event && I18N.has(key)) return t(key, { name: m.name || '' });
    return m.text || '';
  }

  function buildMessageNode(c, m, pending) {
    const rec = {};
    if (m.from === 'system') {
      rec.node = h('div', { class: 'msg msg-system', dataset: { from: 'system', seq: m.seq, event: m.event || '' } },
        h('span', { class: 'msg-system-text', text: systemText(m) }),
        h('span', { class: 'msg-time', title: formatDateTime(m.at), text: formatTime(m.at) }));
      return rec;
    }
    const from = m.from === 'note' ? 'note' : m.from === 'agent' ? 'agent' : 'customer';
    rec.bubble = h('div', { class: 'bubble' });
    if (from === 'note') {
      rec.bubble.append(h('span', { class: 'note-label' }, icon('lock', 'icon-xs'), h('span', { text: t('chat.note_label') })));
    }
    // An upload's message text is its file name: the chip says it already.
    const caption = m.attachment && m.text === m.attachment.name ? '' : m.text;
    if (caption) rec.bubble.append(h('div', { class: 'msg-text', text: caption }));
    if (m.attachment && !caption) rec.bubble.classList.add('is-attachment');
    if (m.attachment) rec.bubble.append(attachmentNode(m.attachment));
    rec.status = h('span', { class: 'msg-status' });
    rec.meta = h('div', { class: 'msg-meta' },
      h('span', { class: 'msg-who', dataset: { role: 'who' } }),
      h('span', { class: 'msg-time', title: formatDateTime(m.at), text: formatTime(m.at) }),
      from !== 'customer' ? rec.status : null);
    rec.node = h('div', { class: 'msg msg-' + from, dataset: { from, seq: m.seq === undefined ? '' : m.seq, clientId: m.client_id || '' } },
      from === 'customer' ? h('span', { class: 'msg-avatar avatar', 'aria-hidden': 'true', dataset: { hue: avatarHue(c.id + ':' + chatName(c)) }, text: initials(chatName(c)) }) : null,
      h('div', { class: 'msg-body' }, rec.bubble, rec.meta));
    return rec;
  }

  function formatTime(value) {
    const d = parseDate(value);
    if (!d) return '';
    return new Intl.DateTimeFormat(I18N.getLang(), { timeStyle: 'short' }).format(d);
  }

  function updateMessageNode(c, rec, m, pending, meId) {
    if (!rec.meta) return;
    // Another agent's messages and notes (before a transfer) carry their name.
    const who = rec.meta.querySelector('[data-role="who"]');
    who.textContent = m.from !== 'customer' && m.agent_id && meId && m.agent_id !== meId ? (m.name || '') : '';
    if (m.from === 'customer') return;
    let state;
    if (pending) state = pending.status === 'failed' ? 'failed' : 'sending';
    else if (m.from === 'note') state = 'note';
    else state = c.readSeq >= m.seq ? 'read' : 'sent';
    if (rec.state === state && state !== 'failed') return;
    rec.state = state;
    rec.node.dataset.status = state;
    const st = rec.status;
    if (state === 'sending') st.replaceChildren(icon('clock', 'icon-xs'), h('span', { text: t('chat.status.sending') }));
    else if (state === 'sent') st.replaceChildren(icon('check', 'icon-xs'), h('span', { text: t('chat.status.sent') }));
    else if (state === 'read') st.replaceChildren(icon('check-double', 'icon-xs'), h('span', { text: t('chat.status.read') }));
    else if (state === 'note') st.replaceChildren(h('span', { text: t('chat.status.note') }));
    else {
      const code = pending.error;
      const reason = code && I18N.has('error.code.' + code) ? t('error.code.' + code) : t('chat.status.failed');
      fill(st, icon('alert-triangle', 'icon-xs'), h('span', { text: reason }),
        pending.retryable !== false ? h('button', { type: 'button', class: 'link-btn', onclick: () => retrySend(c, pending.client_id), text: t('chat.status.retry') }) : null,
        h('button', { type: 'button', class: 'link-btn', onclick: () => discardSend(c, pending.client_id), text: t('chat.status.discard') }));
    }
  }

  // ---- side: the screen-pop an agent reads in two seconds

  function renderChatSide(c, pane) {
    renderSide(pane, chatEntry(c), JSON.stringify(c.visitor || {}) + '|' + (pane.createState || ''),
      () => buildVisitorCard(c, true), () => [buildVisitorCard(c, false), buildCreateCustomer(c, pane)]);
  }

  /**
   * The screen-pop beside a chat or an email: the customer (tier, balance, alerts, history,
   * cases, notes) with `contactCard()` (what the contact itself says: pre-chat form, sender);
   * `unknownCards()` for a contact without a customer record. Rebuilt only when it changes.
   */
  function renderSide(pane, e, extraKey, contactCard, unknownCards) {
    const sp = e && e.screen_pop;
    const key = [I18N.getLang(), e ? e.state : '', sp ? 'k' + (sp.customer && sp.customer.id) : 'u', sp ? sp.__rev || 0 : 0, extraKey].join('|');
    if (pane.sideKey === key) return;
    pane.sideKey = key;
    const parts = [];
    if (sp && sp.customer) {
      parts.push(buildSideHead(sp));
      const alerts = Array.isArray(sp.alerts) ? sp.alerts : [];
      if (alerts.length) {
        const box = stripIds(buildAlerts(alerts, sp.records || {}));
        box.classList.add('side-alerts');
        // An alert opens the full record at the flagged row (not the customer panel's state).
        box.addEventListener('click', (ev) => {
          const btn = ev.target.closest('button.alert');
          if (!btn) return;
          ev.stopPropagation();
          const i = [...box.children].indexOf(btn);
          const sorted = alerts.slice().sort((a, b) => (a.severity === 'critical' ? 0 : 1) - (b.severity === 'critical' ? 0 : 1));
          const a = sorted[i];
          openFullCard(e, a ? findRecordCategory(sp.records || {}, a.record_id) : null, a ? a.record_id : null);
        }, true);
        parts.push(box);
      }
      parts.push(contactCard());
      parts.push(stripIds(buildRecentContacts(sp.recent_contacts)));
      if (Array.isArray(sp.open_cases) && sp.open_cases.length) parts.push(stripIds(buildOpenCases(sp.open_cases)));
      if (sp.customer.notes) parts.push(stripIds(buildNotes(sp.customer.notes)));
    } else {
      parts.push(...unknownCards());
    }
    pane.side.replaceChildren(...parts);
  }

  function stripIds(node) {
    node.removeAttribute('id');
    for (const el of node.querySelectorAll('[id]')) el.removeAttribute('id');
    return node;
  }

  function buildSideHead(sp) {
    const cust = sp.customer;
    const balance = sp.balance;
    const amount = balance && balance.amount_minor;
    let note = '';
    let cls = '';
    if (balance && amount !== null && amount !== undefined) {
      if (amount > 0) { note = t('balance.owed'); cls = 'is-owed'; }
      else if (amount < 0) { note = t('balance.credit'); cls = 'is-credit'; }
      else note = t('balance.settled');
    }
    const e = [...app.acd.contacts.values()].find((x) => x.screen_pop === sp);
    return h('section', { class: 'card side-head' + (cust.tier === 'vip' ? ' is-vip' : ''), dataset: { role: 'side-customer', customerId: cust.id } },
      h('div', { class: 'side-head-top' },
        avatarFor(cust),
        h('div', { class: 'side-head-title' },
          h('div', { class: 'side-name-row' }, h('span', { class: 'side-name', text: cust.name || '' }), tierBadge(cust.tier)),
          h('div', { class: 'side-sub' },
            cust.external_ref ? h('span', { class: 'mono', text: cust.external_ref }) : null,
            h('span', { text: tOr('kind.', cust.kind) })))),
      h('div', { class: 'side-balance ' + cls },
        h('span', { class: 'balance-label', text: t('balance.title') }),
        h('span', { class: 'side-balance-amount', dataset: { role: 'balance' }, text: balance ? formatMoney(amount, balance.currency) || '—' : '—' }),
        note ? h('span', { class: 'side-balance-note', text: note }) : null),
      e ? h('button', { type: 'button', class: 'btn btn-sm btn-block-sm', onclick: () => openFullCard(e, null, null) },
        icon('user', 'icon-xs'), h('span', { text: t('chat.side.open_record') })) : null);
  }

  function openFullCard(e, tab, highlight) {
    const sp = e && e.screen_pop;
    const cust = sp && sp.customer;
    if (!cust) return;
    history.pushState(null, '', '#customer/' + cust.id);
    app.customer = Object.assign(app.customer, {
      id: cust.id, status: 'done', data: sp, error: null, seq: app.customer.seq + 1,
      tab: tab || defaultTab(sp), highlight: highlight || null,
    });
    setView('customer');
    renderCustomer();
    $('main').scrollTop = 0;
  }

  function visitorRow(ic, label, value, mono) {
    if (!value) return null;
    return h('li', { class: 'visitor-row' },
      h('span', { class: 'visitor-icon', title: label }, icon(ic, 'icon-xs')),
      h('span', { class: 'visitor-label', text: label }),
      h('span', { class: 'visitor-value' + (mono ? ' mono' : ''), text: value }));
  }

  function buildVisitorCard(c, compact) {
    const v = c.visitor || {};
    const rows = [
      compact ? null : visitorRow('user', t('chat.visitor.name'), v.name),
      visitorRow('email', t('chat.visitor.email'), v.email),
      visitorRow('phone', t('chat.visitor.phone'), v.phone ? formatPhone(v.phone) : '', true),
      visitorRow('tag', t('chat.visitor.topic'), v.topic ? tOr('chat.topic.', v.topic) : ''),
      visitorRow('globe', t('chat.visitor.page'), v.page),
    ].filter(Boolean);
    return h('section', { class: 'card side-card', dataset: { role: 'visitor' } },
      h('h3', { class: 'card-title', text: t('chat.visitor.title') }),
      rows.length ? h('ul', { class: 'visitor-list' }, rows) : h('p', { class: 'muted empty-line', text: t('chat.visitor.none') }));
  }

  function buildCreateCustomer(c, pane) {
    const v = c.visitor || {};
    const field = (name, label, value, type) => {
      const id = 'create-' + name + '-' + c.id;
      return h('div', { class: 'field field-sm' },
        h('label', { for: id, text: label }),
        h('input', { id, name, type: type || 'text', value: value || '', maxlength: 200, autocomplete: 'off' }));
    };
    const err = h('p', { class: 'wrapup-error', role: 'alert', hidden: true });
    const btn = h('button', { type: 'submit', class: 'btn btn-primary btn-sm', dataset: { action: 'create-customer' } },
      icon('plus', 'icon-xs'), h('span', { text: t('chat.create.submit') }));
    const form = h('form', {
      class: 'create-form', novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        const fd = new FormData(form);
        const name = String(fd.get('name') || '').trim();
        const email = String(fd.get('email') || '').trim();
        const phone = String(fd.get('phone') || '').trim();
        if (!name) {
          err.textContent = t('chat.create.need_name');
          err.hidden = false;
          return;
        }
        btn.disabled = true;
        err.hidden = true;
        try {
          await createCustomerForChat(c, { name, email, phone });
        } catch (e2) {
          if (e2.status === 401) return sessionExpired();
          err.textContent = e2.status === 409 ? t('chat.create.conflict') : describeError(e2);
          err.hidden = false;
          btn.disabled = false;
        }
      },
    },
    field('name', t('chat.visitor.name'), v.name),
    field('email', t('chat.visitor.email'), v.email, 'email'),
    field('phone', t('chat.visitor.phone'), v.phone, 'tel'),
    err, btn);
    return h('section', { class: 'card side-card create-card', dataset: { role: 'create-customer' } },
      h('h3', { class: 'card-title', text: t('chat.create.title') }),
      h('p', { class: 'muted small create-text', text: t('chat.create.text') }),
      form);
  }

  /** An unknown visitor becomes a customer record; the conversation is linked to it. */
  async function createCustomerForChat(c, f) {
    const body = { name: f.name, kind: 'person', preferred_channel: 'chat' };
    if (f.email) body.emails = [f.email];
    if (f.phone) body.phones = [f.phone];
    if (c.language) body.language = c.language;
    const created = await api('POST', '/api/v1/customers', body);
    const cust = created && (created.customer || created);
    if (!cust || cust.id == null) throw new ApiError(500, 'bad_response', 'no customer id');
    if (c.conversationId != null) {
      await api('PUT', '/api/v1/conversations/' + encodeURIComponent(c.conversationId) + '/customer', { customer_id: cust.id });
    }
    const sp = await api('GET', '/api/v1/customers/' + encodeURIComponent(cust.id) + '/screen-pop');
    const e = chatEntry(c);
    if (e) {
      e.screen_pop = sp;
      e.contact = Object.assign({}, e.contact, { customer_id: cust.id });
      acdNodes.delete(e.id); // its card shows the customer's name now
      renderWorkItems();
    }
    toast(t('chat.create.done', { name: cust.name || f.name }));
    chatChanged(c, {});
  }

  // ---- canned responses

  async function loadCanned() {
    if (app.canned.status === 'done' || app.canned.status === 'loading') return app.canned.promise;
    app.canned.status = 'loading';
    app.canned.promise = (async () => {
      try {
        const data = await api('GET', '/api/v1/canned-responses');
        const list = Array.isArray(data) ? data : (data && Array.isArray(data.canned_responses) ? data.canned_responses : []);
        app.canned.items = list.filter((x) => x && x.body);
        app.canned.status = 'done';
      } catch (err) {
        app.canned.status = 'error';
        app.canned.error = err;
      }
    })();
    return app.canned.promise;
  }

  function openCanned(c, pane) {
    closeCanned(pane);
    const search = h('input', { type: 'search', class: 'canned-search', placeholder: t('chat.canned.search'), 'aria-label': t('chat.canned.search'), dataset: { role: 'canned-search' } });
    const list = h('ul', { class: 'canned-list', role: 'listbox' });
    const box = h('div', { class: 'canned-pop', role: 'dialog', 'aria-label': t('chat.canned.title') },
      h('div', { class: 'canned-head' }, icon('search', 'icon-xs'), search,
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': t('toast.dismiss'), onclick: () => closeCanned(pane) }, icon('x', 'icon-xs'))),
      list);
    pane.canned = { box, list, search, index: 0, shown: [] };
    pane.comp.cannedBox.append(box);
    pane.comp.cannedBtn.classList.add('is-active');
    const render = () => {
      const st = pane.canned;
      if (!st) return;
      if (app.canned.status !== 'done') {
        list.replaceChildren(h('li', { class: 'canned-empty', text: app.canned.status === 'error' ? describeError(app.canned.error) : t('chat.canned.loading') }));
        return;
      }
      const q = search.value.trim().toLowerCase();
      const lang = c.language;
      let items = app.canned.items.slice();
      // The conversation's language first, then language-neutral, then the others.
      items.sort((a, b) => rankLang(a, lang) - rankLang(b, lang));
      if (q) items = items.filter((x) => (String(x.title || '') + ' ' + String(x.body)).toLowerCase().includes(q));
      st.shown = items;
      st.index = Math.min(st.index, Math.max(0, items.length - 1));
      if (!items.length) {
        list.replaceChildren(h('li', { class: 'canned-empty', text: app.canned.items.length ? t('chat.canned.none_match') : t('chat.canned.none') }));
        return;
      }
      list.replaceChildren(...items.map((x, i) => h('li', {
        role: 'option', class: 'canned-item' + (i === st.index ? ' is-active' : ''), 'aria-selected': i === st.index ? 'true' : 'false',
        dataset: { cannedId: x.id },
        onmousedown: (ev) => ev.preventDefault(),
        onclick: () => pickCanned(c, pane, x),
      },
      h('span', { class: 'canned-title' }, h('span', { text: x.title || '' }), x.language ? h('span', { class: 'chip chip-xs chip-kind', text: I18N.LANG_NAMES[x.language] || x.language }) : null),
      h('span', { class: 'canned-body', text: fillCanned(x.body, c) }))));
    };
    search.addEventListener('input', () => { pane.canned.index = 0; render(); });
    search.addEventListener('keydown', (ev) => {
      const st = pane.canned;
      if (!st) return;
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault();
        const n = st.shown.length;
        if (n) st.index = (st.index + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
        render();
      } else if (ev.key === 'Enter') {
        if (ev.isComposing || ev.keyCode === 229) return;
        ev.preventDefault();
        if (st.shown[st.index]) pickCanned(c, pane, st.shown[st.index]);
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        closeCanned(pane);
        pane.input.focus();
      }
    });
    render();
    loadCanned().then(render);
    search.focus();
  }

  function rankLang(x, lang) {
    if (x.language && x.language === lang) return 0;
    if (!x.language) return 1;
    return 2;
  }

  function closeCanned(pane) {
    if (!pane.canned) return;
    pane.canned.box.remove();
    pane.canned = null;
    pane.comp.cannedBtn.classList.remove('is-active');
  }

  /** Put a canned response, placeholders filled in, into the composer (the agent may edit it). */
  function pickCanned(c, pane, x) {
    const text = fillCanned(x.body, c);
    const el = pane.input;
    const start = el.selectionStart ?? el.value.length;
    const end = el.selectionEnd ?? el.value.length;
    const before = el.value.slice(0, start);
    const sep = before && !/\s$/.test(before) ? ' ' : '';
    el.value = before + sep + text + el.value.slice(end);
    const pos = (before + sep + text).length;
    closeCanned(pane);
    el.focus();
    el.setSelectionRange(pos, pos);
    el.dispatchEvent(new Event('input'));
  }

  // ---- transfer and end (with a confirmation)

  function closeModal() {
    const root = $('modal-root');
    if (root.firstChild && root.firstChild.open) root.firstChild.close();
    root.replaceChildren();
  }

  function openModal(title, body, actions) {
    closeModal();
    const dlg = h('dialog', { class: 'modal', 'aria-label': title },
      h('form', { method: 'dialog', class: 'modal-inner', onsubmit: (ev) => ev.preventDefault() },
        h('header', { class: 'modal-head' },
          h('h2', { class: 'modal-title', text: title }),
          h('button', { type: 'button', class: 'icon-btn', 'aria-label': t('toast.dismiss'), onclick: closeModal }, icon('x'))),
        h('div', { class: 'modal-body' }, body),
        h('footer', { class: 'modal-actions' }, actions)));
    dlg.addEventListener('close', () => { if (dlg.parentNode) dlg.remove(); });
    $('modal-root').append(dlg);
    dlg.showModal();
    return dlg;
  }

  function confirmEnd(c) {
    const go = h('button', {
      type: 'button', class: 'btn btn-danger', dataset: { action: 'confirm-end' },
      onclick: () => {
        if (!socketSend({ type: 'chat_end', contact_id: c.id })) {
          toast(t('work.error.not_connected'), 'error');
          return;
        }
        stopTyping(c, false);
        closeModal();
      },
    }, h('span', { text: t('chat.end.confirm') }));
    openModal(t('chat.end.title'),
      h('p', { class: 'modal-text', text: t('chat.end.text', { name: chatName(c) }) }),
      [h('button', { type: 'button', class: 'btn', onclick: closeModal, text: t('chat.cancel') }), go]);
    go.focus();
  }

  /*
   * Transfer with a confirmation: to a queue (GET /api/v1/queues, with its waiting figure) or to
   * a colleague who is logged in (GET /api/v1/agents); the hub offers it to them for 60 s, then
   * to their queue.
   */
  async function openTransfer(c) {
    let chosen = null; // { queue } or { agent_id, name }
    let tab = 'queue';
    const queueList = h('div', { class: 'transfer-list', role: 'radiogroup', 'aria-label': t('chat.transfer.queue') },
      h('div', { class: 'muted small', text: t('chat.transfer.loading') }));
    const agentList = h('div', { class: 'transfer-list', role: 'radiogroup', 'aria-label': t('chat.transfer.tab_agent'), hidden: true },
      h('div', { class: 'muted small', text: t('chat.transfer.loading') }));
    const confirmLine = h('p', { class: 'transfer-confirm', hidden: true });
    const go = h('button', { type: 'button', class: 'btn btn-primary', disabled: true, dataset: { action: 'confirm-transfer' } },
      icon('transfer', 'icon-xs'), h('span', { text: t('chat.transfer.confirm') }));
    const tabBtn = (key, label) => h('button', {
      type: 'button', role: 'tab', class: 'seg-btn' + (key === tab ? ' is-active' : ''), dataset: { transferTab: key },
      'aria-selected': key === tab ? 'true' : 'false',
      onclick: (ev) => {
        tab = key;
        for (const b2 of ev.currentTarget.parentNode.children) {
          const on = b2.dataset.transferTab === key;
          b2.classList.toggle('is-active', on);
          b2.setAttribute('aria-selected', on ? 'true' : 'false');
        }
        queueList.hidden = key !== 'queue';
        agentList.hidden = key !== 'agent';
      },
    }, h('span', { text: label }));
    const choose = (target, text) => {
      chosen = target;
      go.disabled = false;
      confirmLine.hidden = false;
      confirmLine.textContent = text;
    };
    go.addEventListener('click', () => {
      if (!chosen) return;
      const frame = Object.assign({ type: 'transfer', contact_id: c.id }, chosen.queue ? { queue: chosen.queue } : { agent_id: chosen.agent_id });
      if (!socketSend(frame)) {
        toast(t('work.error.not_connected'), 'error');
        return;
      }
      c.transferTarget = chosen;
      go.disabled = true;
      go.classList.add('is-busy');
      stopTyping(c, false);
    });
    openModal(t('chat.transfer.title', { name: chatName(c) }),
      [h('p', { class: 'modal-text', text: t('chat.transfer.text') }),
        h('div', { class: 'seg', role: 'tablist' }, tabBtn('queue', t('chat.transfer.tab_queue')), tabBtn('agent', t('chat.transfer.tab_agent'))),
        queueList, agentList, confirmLine],
      [h('button', { type: 'button', class: 'btn', onclick: closeModal, text: t('chat.cancel') }), go]);

    const current = chatEntry(c) && chatEntry(c).contact.queue;
    api('GET', '/api/v1/queues').then((data) => {
      const queues = (data && Array.isArray(data.queues)) ? data.queues : [];
      queueList.replaceChildren(...queues.map((q) => {
        const fig = (Array.isArray(q.figures) ? q.figures : []).find((f) => f && f.channel === 'chat');
        const label = q.display_name || q.name;
        return h('label', { class: 'transfer-option' + (q.name === current ? ' is-current' : '') },
          h('input', {
            type: 'radio', name: 'transfer-target', value: 'q:' + q.name, dataset: { queue: q.name },
            onchange: () => choose({ queue: q.name }, t('chat.transfer.confirm_text', { name: chatName(c), queue: label })),
          }),
          h('span', { class: 'transfer-name' },
            h('strong', { text: label }),
            h('span', { class: 'muted small', text: q.description || '' })),
          h('span', { class: 'transfer-figures' },
            q.name === current ? h('span', { class: 'chip chip-xs', text: t('chat.transfer.current') }) : null,
            h('span', { class: 'chip chip-xs ' + (q.waiting ? 'tone-warn' : 'tone-muted'), text: t('chat.transfer.waiting', { n: q.waiting || 0 }) }),
            fig && fig.asa_ms != null ? h('span', { class: 'chip chip-xs tone-muted', text: t('chat.transfer.asa', { time: formatDuration(fig.asa_ms) }) }) : null));
      }));
    }).catch((err) => queueList.replaceChildren(h('p', { class: 'wrapup-error', text: describeError(err) })));

    api('GET', '/api/v1/agents').then((data) => {
      const me = app.user && app.user.id;
      const agents = ((data && Array.isArray(data.agents)) ? data.agents : [])
        .filter((a) => a && a.id !== me && a.state && a.state.state !== 'logged_out');
      app.liveAgents = new Map(agents.map((a) => [a.id, a.display_name]));
      if (!agents.length) {
        agentList.replaceChildren(h('p', { class: 'muted small transfer-empty', text: t('chat.transfer.no_agents') }));
        return;
      }
      agentList.replaceChildren(...agents.map((a) => {
        const st = a.state.state;
        return h('label', { class: 'transfer-option', dataset: { agentId: a.id } },
          h('input', {
            type: 'radio', name: 'transfer-target', value: 'a:' + a.id, dataset: { agent: a.id },
            onchange: () => choose({ agent_id: a.id, name: a.display_name }, t('chat.transfer.confirm_agent', { name: chatName(c), agent: a.display_name })),
          }),
          h('span', { class: 'transfer-name' },
            h('strong', { text: a.display_name }),
            h('span', { class: 'muted small', text: tOr('role.', a.role) })),
          h('span', { class: 'transfer-figures' },
            h('span', { class: 'chip chip-xs agent-chip st-' + st, text: stateLabel(st === 'not_ready' && a.state.reason ? 'not_ready:' + a.state.reason : st) })));
      }));
    }).catch((err) => agentList.replaceChildren(h('p', { class: 'wrapup-error', text: describeError(err) })));
  }

  function tickChats() {
    for (const [id, pane] of chatPanes) {
      const c = chatOf(id);
      if (c && !pane.root.hidden) tickChatPane(c, pane);
    }
  }

  document.addEventListener('visibilitychange', () => {
    const c = app.activeChat != null ? chatOf(app.activeChat) : null;
    if (c) chatChanged(c, {});
    const em = app.activeEmail != null ? emailOf(app.activeEmail) : null;
    if (em) emailChanged(em, {});
  });

  // ------------------------------------------------------------------ email (docs/protocol.md, "Email (agent socket and REST)")

  /*
   * Emails in hand, by contact id (app.emails): the conversation as GET /api/v1/conversations/{id}
   * answers it (read again whenever email_message says a mail joined it), the send state of each
   * outgoing mail (email_status frames, by outbox id), the agent's sends not stored yet, and what
   * the agent opened (messages, quoted history, images, plain text). Each email has its own pane
   * (emailPanes), built once and kept while the email is in hand like the chat panes, so that
   * switching keeps drafts and scroll positions; the thread is reconciled message by message.
   *
   * The customer's HTML (sanitized by the hub) is only ever shown inside a sandboxed iframe:
   * `srcdoc`, sandbox without allow-scripts (allow-same-origin so that the console can size it,
   * style it and reveal its images, and inline images load with the session). Remote images stay
   * `data-remote-src` until the agent asks; every other string is text.
   */

  const EMAIL_STORE_KEY = 'contact-hub.email-drafts';
  const EMAIL_MAX_CHARS = 100000; // POST .../reply
  const EMAIL_NOTE_MAX = 4000; // POST .../notes
  const THREAD_WINDOW_DAYS = 14; // the hub's default email.thread_window_days (not sent to consoles)
  const EMAIL_RE = /^[^\s@<>()[\],;:"]+@[^\s@<>()[\],;:"]+\.[^\s@<>()[\],;:".]+$/;
  // Where the quoted history of a plain-text mail starts.
  const QUOTE_START = /^(>|On .+wrote:$|在.+(写道|寫道)[：:]?$|.+于.+写道[：:]?$|-{2,}\s*(Original Message|Forwarded message|原始邮件|原始郵件|转发邮件|轉寄郵件)\s*-{2,}|_{10,}$)/i;
  const FRAME_SANDBOX = 'allow-same-origin allow-popups allow-popups-to-escape-sandbox';
  // The iframe's own styles (adopted, not inline: the console's CSP allows no inline styles).
  const FRAME_CSS = [
    'html { font: 14px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; color: #0f172a; background: transparent; }',
    'html:lang(zh-TW) { font-family: system-ui, -apple-system, "PingFang TC", "Microsoft JhengHei", "Noto Sans CJK TC", sans-serif; }',
    'body { margin: 0; padding: 0; overflow-wrap: anywhere; }',
    'body > :first-child { margin-top: 0; }',
    'img { max-width: 100%; height: auto; }',
    'img[data-remote-src]:not([src]) { display: inline-block; min-width: 20px; min-height: 14px; background: #f1f5f9; outline: 1px dashed #cbd5e1; }',
    'a { color: #2563eb; }',
    'pre { white-space: pre-wrap; }',
    'blockquote { margin: .6em 0 .6em .2em; padding-left: .9em; border-left: 3px solid #cbd5e1; color: #475569; }',
    'html.hide-quotes .x-quote { display: none; }',
  ].join('\n');

  const emailPanes = new Map(); // contact id -> pane record (see buildEmailPane)
  let pendingSeq = 0;

  function isEmailEntry(e) {
    return !!e && !!e.contact && e.contact.channel === 'email' && (app.emails.has(e.id) || e.contact.conversation_id != null);
  }

  function emailOf(id) {
    return app.emails.get(id) || null;
  }

  function emailEntry(em) {
    return app.acd.contacts.get(em.id) || null;
  }

  function loadEmailStore() {
    try {
      const v = JSON.parse(window.sessionStorage.getItem(EMAIL_STORE_KEY) || '{}');
      return v && typeof v === 'object' ? v : {};
    } catch (e) {
      return {};
    }
  }

  /** Drafts (text, mode, added recipients, uploaded files) survive a reload of the page. */
  function saveEmailStore() {
    const out = {};
    for (const em of app.emails.values()) {
      const d = em.draft;
      if (d.text || d.noteText || d.note || d.mode !== 'reply' || d.seq != null || d.to.length || d.cc.length || d.files.length) out[em.id] = d;
    }
    try {
      window.sessionStorage.setItem(EMAIL_STORE_KEY, JSON.stringify(out));
    } catch (err) { /* storage full or disabled */ }
  }

  function normalizeDraft(d) {
    const v = d && typeof d === 'object' ? d : {};
    const list = (x) => (Array.isArray(x) ? x.map((a) => String(a).trim()).filter(Boolean).slice(0, 50) : []);
    return {
      mode: ['reply', 'reply_all', 'forward'].includes(v.mode) ? v.mode : 'reply',
      note: !!v.note,
      seq: v.seq !== null && v.seq !== undefined && Number.isFinite(+v.seq) ? +v.seq : null,
      to: list(v.to),
      cc: list(v.cc),
      showCc: !!v.showCc,
      text: String(v.text || ''),
      noteText: String(v.noteText || ''),
      files: (Array.isArray(v.files) ? v.files : []).filter((f) => f && f.id !== undefined && f.id !== null)
        .map((f) => ({ id: f.id, name: String(f.name || ''), size: +f.size || 0, content_type: String(f.content_type || '') })),
    };
  }

  /** Create or refresh an email from an offer's / hello's `email` or a conversation read. */
  function upsertEmail(contactId, data, contact) {
    let em = app.emails.get(contactId);
    if (!em) {
      em = {
        kind: 'email', id: contactId, conversationId: null, conversation: null, language: null,
        messages: [], loaded: false, loadSeq: 0, error: null, status: new Map(), pending: [], uploads: [],
        unread: 0, open: new Map(), quotes: new Set(), images: new Set(), plain: new Set(), fresh: new Set(),
        draft: normalizeDraft(loadEmailStore()[contactId]), busy: null,
      };
      app.emails.set(contactId, em);
    }
    if (contact && contact.conversation_id !== undefined && contact.conversation_id !== null && em.conversationId === null) {
      em.conversationId = contact.conversation_id;
    }
    if (data && typeof data === 'object' && Array.isArray(data.messages)) {
      if (data.conversation) {
        em.conversation = data.conversation;
        if (data.conversation.id !== undefined) em.conversationId = data.conversation.id;
        if (data.conversation.language) em.language = String(data.conversation.language);
      }
      em.messages = data.messages.filter((m) => m && Number.isFinite(+m.seq))
        .map((m) => Object.assign({}, m, { seq: +m.seq })).sort((a, b) => a.seq - b.seq);
      em.loaded = true;
      // The agent's own sends are stored now: their place in the thread is the server's.
      em.pending = em.pending.filter((p) => !(p.message_id && em.messages.some((m) => m.email && m.email.message_id === p.message_id))
        && !(p.note && p.seq !== undefined && em.messages.some((m) => m.from === 'note' && m.seq === p.seq)));
      // A mail that email_message announced: opened and marked new.
      for (const seq of [...em.fresh]) {
        const m = em.messages.find((x) => x.seq === seq);
        if (m) {
          em.open.set(msgKey(m), true);
          em.fresh.delete(seq);
          em.flash = msgKey(m);
        }
      }
      if (em.draft.seq !== null && !em.messages.some((m) => m.seq === em.draft.seq && m.email)) em.draft.seq = null;
    }
    return em;
  }

  /** Read the whole conversation again (a mail joined, a send was stored, split, merge). */
  async function loadEmail(em) {
    if (!em || em.conversationId === null) return;
    const seq = ++em.loadSeq;
    try {
      const data = await api('GET', '/api/v1/conversations/' + encodeURIComponent(em.conversationId));
      if (seq !== em.loadSeq || app.emails.get(em.id) !== em) return;
      upsertEmail(em.id, data);
      em.error = null;
    } catch (err) {
      if (err.status === 401) return sessionExpired();
      if (seq !== em.loadSeq) return;
      em.error = err;
    }
    emailChanged(em, {});
  }

  function msgKey(m) {
    return m.email && m.email.message_id ? 'm:' + m.email.message_id : 's:' + m.seq;
  }

  function emails(em) {
    return em.messages.filter((m) => m.email);
  }

  function latestCustomerEmail(em) {
    for (let i = em.messages.length - 1; i >= 0; i -= 1) {
      const m = em.messages[i];
      if (m.email && m.email.direction === 'inbound') return m;
    }
    return null;
  }

  function emailName(em) {
    const e = emailEntry(em);
    const cust = e && entryCustomer(e);
    const m = latestCustomerEmail(em);
    return (cust && cust.name) || (m && (m.email.from_name || m.email.from_addr)) || t('contact.unknown_customer');
  }

  function emailVisible(em) {
    return app.view === 'email' && app.activeEmail === em.id && document.visibilityState === 'visible';
  }

  function emailConnected(em) {
    const e = emailEntry(em);
    return !!e && e.state === 'connected';
  }

  /** The attachments shown as chips: all but the inline images the HTML view shows in place. */
  function attachmentsShown(m, inlineUsed) {
    const list = Array.isArray(m.attachments) ? m.attachments : [];
    return list.filter((a) => !(inlineUsed && inlineUsed.has(a.id)));
  }

  function snippetOf(m) {
    const [main] = splitQuoted(m.text || '');
    const text = (main || m.text || '').replace(/\s+/g, ' ').trim();
    const cut = Array.from(text);
    return cut.length > PREVIEW_CHARS ? cut.slice(0, PREVIEW_CHARS).join('') + '…' : text;
  }

  /** [what the writer wrote, the quoted history after it] of a plain-text body. */
  function splitQuoted(text) {
    const lines = String(text || '').replace(/\r\n?/g, '\n').split('\n');
    const i = lines.findIndex((l) => QUOTE_START.test(l.trim()));
    if (i < 0) return [lines.join('\n').trim(), ''];
    return [lines.slice(0, i).join('\n').trim(), lines.slice(i).join('\n').trim()];
  }

  /** Why a mail joined its conversation, in words (flags.thread_reason). */
  function reasonText(em, m) {
    const mail = m.email || {};
    const f = mail.flags || {};
    switch (f.thread_reason) {
      case 'in_reply_to':
      case 'references': {
        const ids = f.thread_reason === 'in_reply_to' ? [mail.in_reply_to] : (mail.references || []).slice().reverse();
        const earlier = em.messages.find((x) => x.email && ids.includes(x.email.message_id) && x.seq < m.seq);
        const what = earlier ? (earlier.email.subject || t('contact.no_subject')) + ' · ' + formatWhen(earlier.at) : '<' + (ids[0] || '…') + '>';
        return t(f.thread_reason === 'in_reply_to' ? 'email.reason.in_reply_to' : 'email.reason.references', { what });
      }
      case 'ticket_ref':
        return t('email.reason.ticket_ref', { ticket: '[#' + (f.ticket || (em.conversationId === null ? '?' : em.conversationId)) + ']' });
      case 'subject_window':
        return t('email.reason.subject_window', { days: f.window_days || THREAD_WINDOW_DAYS });
      case 'new':
        return t('email.reason.new');
      default:
        return '';
    }
  }

  /** The outgoing mail's send state, from the conversation read and the email_status frames. */
  function sendState(em, outbox) {
    if (!outbox) return null;
    const stored = {
      status: String(outbox.status || 'pending'), attempts: +outbox.attempts || 0, error: outbox.last_error || null,
      next_attempt_at: outbox.next_attempt_at ? new Date(outbox.next_attempt_at).toISOString() : null,
    };
    const live = em.status.get(outbox.id);
    // The later of the two: more attempts wins; on a tie the live one (it came after the read).
    return live && live.attempts >= stored.attempts ? live : stored;
  }

  function outboxOf(m) {
    const list = Array.isArray(m.outbox) ? m.outbox : [];
    return list.length ? list.reduce((a, b) => (b.id > a.id ? b : a)) : null;
  }

  function sendErrorText(error) {
    if (!error) return '';
    if (/no relay is configured/i.test(error)) return t('email.error.no_relay');
    return String(error);
  }

  // ---- socket frames

  function emailFrame(msg) {
    const id = msg.contact_id;
    let em = emailOf(id);
    if (msg.type === 'email_status') {
      if (!em) return;
      const next = {
        status: String(msg.status || ''), attempts: +msg.attempts || 0, error: msg.error || null,
        next_attempt_at: msg.next_attempt_at || null,
      };
      const prev = em.status.get(+msg.outbox_id);
      if (!prev || next.attempts >= prev.attempts) em.status.set(+msg.outbox_id, next);
      emailChanged(em, {});
      return;
    }
    // email_message: a new mail joined a conversation in this agent's hands.
    if (!em) {
      const e = app.acd.contacts.get(id);
      if (!e) return;
      em = upsertEmail(id, null, e.contact);
    }
    if (msg.conversation_id !== undefined && msg.conversation_id !== null) em.conversationId = msg.conversation_id;
    if (Number.isFinite(+msg.seq)) em.fresh.add(+msg.seq);
    if (!emailVisible(em)) em.unread += 1;
    loadEmail(em);
  }

  /** hello: the emails in hand with their whole conversations; drop the rest. */
  function onHelloEmails(msg) {
    const keep = new Set();
    for (const item of Array.isArray(msg.contacts) ? msg.contacts : []) {
      const c0 = item && item.contact;
      if (!c0 || c0.channel !== 'email' || (!item.email && c0.conversation_id == null)) continue;
      keep.add(c0.id);
      const em = upsertEmail(c0.id, item.email, c0);
      if (!item.email) loadEmail(em);
    }
    for (const id of [...app.emails.keys()]) if (!keep.has(id)) dropEmail(id);
    for (const em of app.emails.values()) emailChanged(em, {});
    saveEmailStore();
  }

  function dropEmail(id) {
    const em = app.emails.get(id);
    if (!em) return;
    clearTimeout(em.retryTimer);
    app.emails.delete(id);
    const pane = emailPanes.get(id);
    if (pane) pane.root.remove();
    emailPanes.delete(id);
    saveEmailStore();
    if (app.activeEmail === id) {
      app.activeEmail = null;
      if (app.view === 'email') {
        const next = sortedAcd().find((e) => isEmailEntry(e) && e.state !== 'offered' && app.emails.has(e.id));
        if (next) showEmail(next.id, false);
        else {
          if (location.hash.startsWith('#email/')) history.replaceState(null, '', location.pathname + location.search);
          setView(app.search.status === 'idle' ? 'welcome' : 'results');
        }
      }
    }
  }

  /**
   * A mail waiting for its next attempt: read the conversation again after it (the hub sends
   * no email_status for mail it sent without a contact, e.g. the acknowledgement).
   */
  function watchRetries(em) {
    let next = null;
    for (const m of em.messages) {
      const ob = outboxOf(m);
      const st = ob && sendState(em, ob);
      const at = st && st.status === 'pending' && st.attempts > 0 && parseDate(st.next_attempt_at);
      if (at && (next === null || at < next)) next = at;
    }
    clearTimeout(em.retryTimer);
    em.retryTimer = null;
    if (next === null) return;
    // Shortly after the attempt is due; long overdue (the hub busy or stopped): every 30 s.
    const delta = next.getTime() - serverNow();
    const wait = delta > -10000 ? Math.min(Math.max(delta + 3000, 2000), 3600000) : 30000;
    em.retryTimer = setTimeout(() => { if (app.emails.get(em.id) === em) loadEmail(em); }, wait);
  }

  /** Something about an email changed: its pane, its card, the title. */
  function emailChanged(em, what) {
    watchRetries(em);
    const pane = emailPanes.get(em.id);
    if (pane) updateEmailPane(em, pane, what);
    if (emailVisible(em)) em.unread = 0;
    const e = emailEntry(em);
    // An offer card shows the mail itself (its key counts the messages: built again when read).
    if (e && e.state === 'offered') renderWorkItems();
    else if (e) refreshAcdNode(e);
    updateTitleBadge();
  }

  // ---- showing an email

  function showEmail(id, push) {
    const em = emailOf(id);
    if (!em) return;
    const hash = '#email/' + id;
    if (location.hash !== hash) {
      if (push) history.pushState(null, '', hash);
      else history.replaceState(null, '', hash);
    }
    app.activeEmail = id;
    setView('email');
    let pane = emailPanes.get(id);
    if (!pane) {
      pane = buildEmailPane(em);
      emailPanes.set(id, pane);
      $('email-panel').append(pane.root);
      updateEmailPane(em, pane, { shown: true });
      scrollToLatest(em, pane);
    } else {
      updateEmailPane(em, pane, { shown: true });
    }
    for (const [pid, p] of emailPanes) p.root.hidden = pid !== id;
    em.unread = 0;
    refreshAcd();
    updateTitleBadge();
    if (!em.loaded) loadEmail(em);
  }

  function rebuildEmailPanes() {
    for (const [id, pane] of [...emailPanes]) {
      const em = emailOf(id);
      pane.root.remove();
      emailPanes.delete(id);
      if (!em) continue;
      const fresh = buildEmailPane(em);
      emailPanes.set(id, fresh);
      $('email-panel').append(fresh.root);
      fresh.root.hidden = !(app.view === 'email' && app.activeEmail === id);
      updateEmailPane(em, fresh, { shown: true });
      fresh.thread.scrollTop = pane.thread.scrollTop;
    }
  }

  /** The newest open message at the top of the view (long mails are read from their start). */
  function scrollToLatest(em, pane) {
    requestAnimationFrame(() => {
      const open = pane.thread.querySelectorAll('.email-msg.is-open');
      const last = open.length ? open[open.length - 1] : pane.thread.lastElementChild;
      if (!last) return;
      const top = last.offsetTop - pane.thread.offsetTop - 8;
      pane.thread.scrollTop = Math.max(0, Math.min(top, pane.thread.scrollHeight));
    });
  }

  // ---- the pane

  function buildEmailPane(em) {
    const pane = { id: em.id, kind: 'email', nodes: new Map(), composing: false, compositionEndAt: 0, canned: null, sideKey: null };
    pane.avatar = h('span', { class: 'avatar avatar-chat', 'aria-hidden': 'true' });
    pane.subject = h('h2', { class: 'chat-name email-subject', dataset: { role: 'subject' } });
    pane.ticket = h('span', { class: 'chip chip-xs email-ticket mono', title: t('email.ticket_title'), dataset: { role: 'ticket' } });
    pane.who = h('span', { class: 'email-head-who', dataset: { role: 'who' } });
    pane.count = h('span', { class: 'chip chip-xs chip-kind', dataset: { role: 'count' } });
    pane.timer = h('span', { class: 'chat-timer mono', title: t('email.timer_title') });
    pane.mergeBtn = h('button', { type: 'button', class: 'btn btn-sm', dataset: { action: 'merge' }, onclick: () => openMerge(em) },
      icon('merge', 'icon-xs'), h('span', { text: t('email.merge.button') }));
    pane.completeBtn = h('button', { type: 'button', class: 'btn btn-sm btn-finish', dataset: { action: 'complete-email' }, onclick: () => confirmComplete(em) },
      icon('check-circle', 'icon-xs'), h('span', { text: t('email.complete.button') }));
    const head = h('header', { class: 'chat-head email-head' },
      pane.avatar,
      h('div', { class: 'chat-head-main' },
        h('div', { class: 'chat-head-row' }, pane.subject, pane.ticket),
        h('div', { class: 'chat-head-meta' }, pane.who, pane.count,
          h('span', { class: 'chat-timer-wrap' }, icon('clock', 'icon-xs'), pane.timer))),
      h('div', { class: 'chat-head-actions' }, pane.mergeBtn, pane.completeBtn));
    pane.thread = h('div', { class: 'transcript email-thread', role: 'feed', 'aria-label': t('email.thread'), 'aria-busy': 'false' });
    pane.comp = buildEmailComposer(em, pane);
    pane.closed = h('div', { class: 'chat-closed', hidden: true, role: 'status' });
    const conv = h('section', { class: 'chat-conv email-conv', 'aria-label': t('email.conversation') },
      head, h('div', { class: 'transcript-wrap' }, pane.thread), pane.comp.root, pane.closed);
    pane.side = h('aside', { class: 'chat-side', 'aria-label': t('chat.side.title') });
    pane.root = h('div', { class: 'chat-pane email-pane', dataset: { contactId: em.id, conversationId: em.conversationId === null ? '' : em.conversationId } },
      conv, pane.side);
    return pane;
  }

  function updateEmailPane(em, pane, what) {
    const e = emailEntry(em);
    const sp = e && e.screen_pop;
    const cust = sp && sp.customer;
    const name = emailName(em);
    const subject = (em.conversation && em.conversation.subject) || (e && e.contact.subject) || '';
    pane.root.dataset.state = e ? e.state : '';
    pane.root.dataset.conversationId = em.conversationId === null ? '' : em.conversationId;
    pane.avatar.textContent = initials(name);
    pane.avatar.dataset.hue = avatarHue((cust && cust.id) + ':' + name);
    pane.subject.textContent = subject || t('contact.no_subject');
    pane.subject.title = subject;
    pane.ticket.textContent = em.conversationId === null ? '' : '[#' + em.conversationId + ']';
    pane.ticket.hidden = em.conversationId === null;
    const last = latestCustomerEmail(em);
    fill(pane.who, icon('user', 'icon-xs'), h('span', { text: name }),
      last && last.email.from_addr && last.email.from_addr !== name ? h('span', { class: 'muted', text: last.email.from_addr }) : null);
    const n = emails(em).length;
    pane.count.textContent = tn('email.count', n, { count: n });
    pane.count.hidden = !n;
    tickEmailPane(em, pane);
    const live = emailConnected(em) && sock.ready;
    pane.completeBtn.disabled = !live || !!(e && e.pending);
    pane.completeBtn.classList.toggle('is-busy', !!(e && e.pending === 'complete'));
    pane.mergeBtn.disabled = !(e && (e.state === 'connected' || e.state === 'wrap_up')) || !em.loaded;
    renderEmailThread(em, pane, what || {});
    pane.comp.root.hidden = !(e && (e.state === 'connected' || e.state === 'wrap_up'));
    updateEmailComposer(em, pane);
    renderEmailClosed(em, pane);
    renderSide(pane, e, JSON.stringify(last ? [last.email.from_name, last.email.from_addr, last.email.flags && last.email.flags.mailbox] : []) + '|' + em.language + '|' + n,
      () => buildSenderCard(em), () => [buildSenderCard(em)]);
  }

  function tickEmailPane(em, pane) {
    const e = emailEntry(em);
    const since = e && parseDate(e.contact.connected_at);
    pane.timer.textContent = since ? formatDuration((e.state === 'wrap_up' && em.endedAt ? em.endedAt : serverNow()) - since.getTime()) : '—';
  }

  function renderEmailClosed(em, pane) {
    const e = emailEntry(em);
    const inWrap = !!e && e.state === 'wrap_up';
    if (inWrap && !em.endedAt) em.endedAt = serverNow();
    pane.closed.hidden = !inWrap;
    if (!inWrap) return;
    pane.closed.replaceChildren(
      h('span', { class: 'chat-closed-icon' }, icon('check-circle')),
      h('span', { class: 'chat-closed-text' },
        h('strong', { text: t('email.closed.done') }),
        h('span', { text: t('email.closed.wrap_hint') })),
      goWrapUpButton(em.id));
  }

  /** The messages a reader sees open without asking: the latest mail of the customer and what came after it. */
  function defaultOpen(em) {
    const keys = new Set();
    const list = em.messages;
    if (!list.length) return keys;
    let from = -1;
    list.forEach((m, i) => { if (m.email && m.email.direction === 'inbound') from = i; });
    if (from < 0) from = list.length - 1;
    list.forEach((m, i) => {
      // Automatic acknowledgements stay one line: the agent knows what they say.
      if (i >= from && !(m.from === 'system' && list.length > 1)) keys.add(msgKey(m));
    });
    return keys;
  }

  function renderEmailThread(em, pane, what) {
    const el = pane.thread;
    const nodes = [];
    if (!em.loaded && !em.messages.length) {
      let wait = pane.nodes.get('loading');
      if (!wait) {
        wait = h('div', { class: 'transcript-empty' }, h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }), ' ', h('span', { text: t('email.loading') }));
        pane.nodes.set('loading', wait);
      }
      nodes.push(wait);
    }
    if (em.error) {
      nodes.push(h('div', { class: 'email-error', role: 'alert' }, icon('alert-octagon', 'icon-xs'), h('span', { text: describeError(em.error) }),
        h('button', { type: 'button', class: 'link-btn', onclick: () => loadEmail(em), text: t('chat.status.retry') })));
    }
    const defaults = defaultOpen(em);
    const lang = I18N.getLang();
    const live = new Set();
    let lastDay = '';
    for (const m of em.messages) {
      const d = parseDate(m.at);
      const dk = dayKey(d);
      if (d && dk !== lastDay) {
        const k = 'd' + dk;
        let sep = pane.nodes.get(k);
        if (!sep) {
          sep = h('div', { class: 'day-sep', role: 'separator' }, h('span', { text: dayLabel(d) }));
          pane.nodes.set(k, sep);
        }
        nodes.push(sep);
        live.add(k);
        lastDay = dk;
      }
      const key = msgKey(m);
      const open = em.open.has(key) ? em.open.get(key) : defaults.has(key);
      const plain = em.plain.has(key) || !(m.email && m.email.html);
      const sig = [open, plain, lang, m.seq, (m.attachments || []).length].join('|');
      let rec = pane.nodes.get(key);
      if (!rec || rec.sig !== sig) {
        rec = buildEmailMessage(em, pane, m, open, plain);
        rec.sig = sig;
        pane.nodes.set(key, rec);
      }
      updateEmailMessage(em, rec, m);
      nodes.push(rec.node);
      live.add(key);
    }
    for (const p of em.pending) {
      const key = 'p' + p.key;
      let rec = pane.nodes.get(key);
      if (!rec) {
        rec = buildPendingEmail(em, p);
        pane.nodes.set(key, rec);
      }
      updatePendingEmail(em, rec, p);
      nodes.push(rec.node);
      live.add(key);
    }
    if (em.loaded && !nodes.length) nodes.push(h('div', { class: 'transcript-empty', text: t('email.empty') }));
    for (const k of [...pane.nodes.keys()]) if (!live.has(k) && k !== 'loading') pane.nodes.delete(k);
    reconcile(el, nodes);
    if (em.flash) {
      const rec = pane.nodes.get(em.flash);
      em.flash = null;
      if (rec) {
        rec.node.classList.add('is-new');
        if (emailVisible(em)) rec.node.scrollIntoView({ block: 'nearest' });
      }
    }
    if (what.own) el.scrollTop = el.scrollHeight;
  }

  function toggleOpen(em, m, open) {
    em.open.set(msgKey(m), open);
    emailChanged(em, {});
  }

  /** One mail of the thread: a line when collapsed; open, its headers, body, files, send state. */
  function buildEmailMessage(em, pane, m, open, plain) {
    const rec = { key: msgKey(m) };
    if (!m.email) return buildEmailNote(em, m, rec);
    const mail = m.email;
    const flags = mail.flags || {};
    const inbound = mail.direction === 'inbound';
    const kind = flags.kind || (inbound ? '' : 'reply');
    const name = inbound ? (mail.from_name || m.name || mail.from_addr || '') : (m.name || mail.from_name || mail.from_addr || '');
    const from = m.from === 'system' ? 'system' : inbound ? 'customer' : 'agent';
    const avatar = h('span', { class: 'avatar email-avatar', 'aria-hidden': 'true', dataset: { hue: avatarHue(name) }, text: initials(name) });
    rec.status = h('span', { class: 'email-send', dataset: { role: 'send-state' } });
    const badges = emailBadges(em, m, kind);
    if (!open) {
      const files = attachmentsShown(m).length;
      rec.node = h('article', { class: 'email-msg is-collapsed', dataset: { seq: m.seq, from, key: rec.key } },
        h('button', { type: 'button', class: 'email-line', 'aria-expanded': 'false', title: t('email.expand'), onclick: () => toggleOpen(em, m, true) },
          avatar,
          h('span', { class: 'email-line-from', text: name }),
          kindChip(kind),
          h('span', { class: 'email-line-snippet', text: snippetOf(m) || mail.subject || '' }),
          files ? h('span', { class: 'email-line-files', title: tn('email.attachments', files, { count: files }) }, icon('paperclip', 'icon-xs'), h('span', { text: String(files) })) : null,
          rec.status,
          h('span', { class: 'email-line-date', title: formatDateTime(m.at), text: formatWhen(m.at) })));
      return rec;
    }
    const to = mail.to || [];
    const cc = mail.cc || [];
    const replyTo = inbound ? (flags.reply_to || []).filter((a) => a.toLowerCase() !== String(mail.from_addr || '').toLowerCase()) : [];
    const actions = h('div', { class: 'email-actions' },
      inbound || from === 'agent' ? emailAction('reply', 'email.action.reply', 'reply', () => startAnswer(em, pane, m, 'reply')) : null,
      inbound ? emailAction('reply_all', 'email.action.reply_all', 'reply-all', () => startAnswer(em, pane, m, 'reply_all')) : null,
      emailAction('forward', 'email.action.forward', 'forward', () => startAnswer(em, pane, m, 'forward')),
      inbound && em.messages.length > 1 && m.seq !== em.messages[0].seq
        ? emailAction('split', 'email.action.split', 'scissors', () => confirmSplit(em, m)) : null);
    const head = h('header', { class: 'email-msg-head' },
      avatar,
      h('div', { class: 'email-msg-who' },
        h('div', { class: 'email-from-row' },
          h('button', { type: 'button', class: 'email-from', title: t('email.collapse'), 'aria-expanded': 'true', onclick: () => toggleOpen(em, m, false) },
            h('strong', { class: 'email-from-name', text: name }),
            mail.from_addr && mail.from_addr !== name ? h('span', { class: 'email-addr', text: '<' + mail.from_addr + '>' }) : null),
          kindChip(kind)),
        h('div', { class: 'email-rcpt' },
          replyTo.length ? h('span', { class: 'email-rcpt-label', text: t('email.field.reply_to') }) : null,
          replyTo.length ? h('span', { class: 'email-rcpt-list', dataset: { role: 'reply-to' }, text: replyTo.join(', ') }) : null,
          h('span', { class: 'email-rcpt-label', text: t('email.field.to') }), h('span', { class: 'email-rcpt-list', dataset: { role: 'to' }, text: to.join(', ') || '—' }),
          cc.length ? h('span', { class: 'email-rcpt-label', text: t('email.field.cc') }) : null,
          cc.length ? h('span', { class: 'email-rcpt-list', dataset: { role: 'cc' }, text: cc.join(', ') }) : null),
        mail.subject && mail.subject !== (em.conversation && em.conversation.subject)
          ? h('div', { class: 'email-msg-subject', text: mail.subject }) : null,
        badges.length ? h('div', { class: 'email-badges' }, badges) : null),
      h('div', { class: 'email-msg-side' },
        h('span', { class: 'email-date', title: formatDateTime(m.at), text: formatDateTime(m.at) }),
        actions));
    const body = h('div', { class: 'email-body' });
    rec.body = body;
    let inlineUsed = null;
    const hasHtml = !!mail.html;
    let bar = null;
    if (hasHtml && !plain) {
      const prepared = prepareEmailHtml(m, em.images.has(rec.key));
      inlineUsed = prepared.inlineUsed;
      rec.remote = prepared.remote;
      rec.quotesOpen = em.quotes.has(rec.key);
      const frame = h('iframe', {
        class: 'email-frame', sandbox: FRAME_SANDBOX, referrerpolicy: 'no-referrer', title: t('email.html_title', { name }),
        dataset: { role: 'html' },
      });
      frame.srcdoc = prepared.srcdoc;
      frame.addEventListener('load', () => decorateFrame(frame, rec));
      rec.frame = frame;
      if (prepared.remote && !em.images.has(rec.key)) {
        bar = h('div', { class: 'email-images-bar', dataset: { role: 'images-bar' } },
          icon('image', 'icon-xs'),
          h('span', { text: tn('email.images.blocked', prepared.remote, { count: prepared.remote }) }),
          h('button', { type: 'button', class: 'btn btn-sm', dataset: { action: 'show-images' }, onclick: () => showRemoteImages(em, rec) },
            icon('eye', 'icon-xs'), h('span', { text: t('email.images.show') })));
        rec.imagesBar = bar;
      }
      body.append(frame);
      if (prepared.quotes) body.append(quoteToggle(em, rec));
    } else {
      const [main, quoted] = splitQuoted(m.text || '');
      rec.quotesOpen = em.quotes.has(rec.key) || !main;
      body.append(h('div', { class: 'email-text', dataset: { role: 'text' }, text: main || (quoted ? '' : t('email.no_text')) }));
      if (quoted) {
        rec.quoteText = h('div', { class: 'email-text email-quoted', dataset: { role: 'quoted' }, text: quoted, hidden: !rec.quotesOpen });
        body.append(quoteToggle(em, rec), rec.quoteText);
      }
    }
    const view = hasHtml ? h('div', { class: 'seg seg-sm email-view', role: 'group', 'aria-label': t('email.view.label') },
      h('button', { type: 'button', class: 'seg-btn' + (!plain ? ' is-active' : ''), 'aria-pressed': String(!plain), dataset: { view: 'html' },
        onclick: () => { em.plain.delete(rec.key); emailChanged(em, {}); } }, h('span', { text: t('email.view.html') })),
      h('button', { type: 'button', class: 'seg-btn' + (plain ? ' is-active' : ''), 'aria-pressed': String(plain), dataset: { view: 'text' },
        onclick: () => { em.plain.add(rec.key); emailChanged(em, {}); } }, h('span', { text: t('email.view.text') }))) : null;
    const files = attachmentsShown(m, inlineUsed);
    const omitted = Array.isArray(flags.omitted_attachments) ? flags.omitted_attachments : [];
    rec.node = h('article', { class: 'email-msg is-open', dataset: { seq: m.seq, from, key: rec.key } },
      head,
      bar || view ? h('div', { class: 'email-toolbar' }, bar, h('span', { class: 'email-toolbar-gap' }), view) : null,
      body,
      files.length ? h('div', { class: 'email-atts', dataset: { role: 'attachments' } }, files.map(attachmentNode)) : null,
      omitted.length ? h('p', { class: 'email-omitted' }, icon('alert-triangle', 'icon-xs'),
        h('span', { text: t('email.omitted', { files: omitted.map((o) => (o.name || '?') + ' (' + formatSize(o.size) + ')').join(', ') }) })) : null,
      h('footer', { class: 'email-msg-foot' }, rec.status));
    return rec;
  }

  function kindChip(kind) {
    if (kind === 'ack') return h('span', { class: 'chip chip-xs email-kind kind-ack', text: t('email.kind.ack') });
    if (kind === 'forward') return h('span', { class: 'chip chip-xs email-kind', text: t('email.kind.forward') });
    return null;
  }

  function emailAction(action, key, ic, onclick) {
    return h('button', { type: 'button', class: 'btn btn-sm btn-ghost email-action', dataset: { action }, title: t(key), onclick },
      icon(ic, 'icon-xs'), h('span', { class: 'email-action-label', text: t(key) }));
  }

  /** Why it joined, auto-reply / bounce / list, parser warnings (quietly). */
  function emailBadges(em, m, kind) {
    const mail = m.email || {};
    const f = mail.flags || {};
    const out = [];
    if (mail.direction === 'inbound') {
      const reason = reasonText(em, m);
      if (reason) out.push(h('span', { class: 'chip chip-xs email-reason reason-' + (f.thread_reason || 'other'), dataset: { reason: f.thread_reason || '' }, title: t('email.reason.title') },
        icon(f.thread_reason === 'new' ? 'inbox' : 'link', 'icon-xs'), h('span', { text: reason })));
    }
    if (f.auto_submitted) out.push(h('span', { class: 'chip chip-xs tone-warn', dataset: { badge: 'auto' }, title: t('email.badge.auto_title'), text: t('email.badge.auto') }));
    if (f.bounce) out.push(h('span', { class: 'chip chip-xs tone-bad', dataset: { badge: 'bounce' }, title: t('email.badge.bounce_title'), text: t('email.badge.bounce') }));
    if (f.list) out.push(h('span', { class: 'chip chip-xs tone-muted', dataset: { badge: 'list' }, title: t('email.badge.list_title'), text: t('email.badge.list') }));
    const warnings = Array.isArray(f.warnings) ? f.warnings.map(String) : [];
    if (warnings.length) {
      out.push(h('details', { class: 'email-warnings', dataset: { badge: 'warnings' } },
        h('summary', { title: t('email.warnings.title') }, icon('info', 'icon-xs'), h('span', { text: tn('email.warnings.count', warnings.length, { count: warnings.length }) })),
        h('ul', null, warnings.map((w) => h('li', { text: w })))));
    }
    return out;
  }

  function quoteToggle(em, rec) {
    const btn = h('button', {
      type: 'button', class: 'quote-toggle', dataset: { action: 'quotes' }, 'aria-expanded': String(!!rec.quotesOpen),
      title: t(rec.quotesOpen ? 'email.quotes.hide' : 'email.quotes.show'),
      onclick: () => {
        rec.quotesOpen = !rec.quotesOpen;
        if (rec.quotesOpen) em.quotes.add(rec.key); else em.quotes.delete(rec.key);
        btn.setAttribute('aria-expanded', String(rec.quotesOpen));
        btn.title = t(rec.quotesOpen ? 'email.quotes.hide' : 'email.quotes.show');
        btn.lastChild.textContent = t(rec.quotesOpen ? 'email.quotes.hide' : 'email.quotes.show');
        if (rec.quoteText) rec.quoteText.hidden = !rec.quotesOpen;
        if (rec.frame) decorateFrame(rec.frame, rec);
      },
    }, h('span', { class: 'quote-dots', 'aria-hidden': 'true', text: '•••' }), h('span', { class: 'quote-label', text: t(rec.quotesOpen ? 'email.quotes.hide' : 'email.quotes.show') }));
    return btn;
  }

  /**
   * The sanitized HTML made ready for the sandbox, in an inert document (DOMParser loads
   * nothing): inline images pointed at their stored files, remote ones left without a source
   * unless the agent asked for them, links opening outside, style attributes kept aside (the
   * console applies them through CSSOM: its CSP refuses inline styles), quoted history marked.
   */
  function prepareEmailHtml(m, showImages) {
    // Style attributes renamed before parsing: even an inert document refuses (and reports)
    // them under the console's CSP. Only inside tags (text never holds a raw "<letter").
    const html = String(m.email.html || '').replace(/<[a-zA-Z][^>]*>/g, (tag) => tag.replace(/\sstyle="/gi, ' data-x-style="'));
    const doc = new DOMParser().parseFromString(html, 'text/html');
    const atts = Array.isArray(m.attachments) ? m.attachments : [];
    const flags = m.email.flags || {};
    const indices = Array.isArray(flags.attachment_indices) ? flags.attachment_indices.map(Number) : atts.map((a, i) => i);
    const inlineUsed = new Set();
    for (const img of doc.querySelectorAll('img[data-attachment-index]')) {
      const a = atts[indices.indexOf(Number(img.getAttribute('data-attachment-index')))];
      if (a && a.id !== undefined) {
        img.setAttribute('src', '/api/v1/attachments/' + encodeURIComponent(a.id));
        inlineUsed.add(a.id);
      }
    }
    let remote = 0;
    for (const img of doc.querySelectorAll('img[data-remote-src]')) {
      remote += 1;
      const url = img.getAttribute('data-remote-src') || '';
      if (showImages && /^https?:\/\//i.test(url)) img.setAttribute('src', url);
      else img.removeAttribute('src');
    }
    for (const el of doc.querySelectorAll('[style]')) {
      el.setAttribute('data-x-style', el.getAttribute('style'));
      el.removeAttribute('style');
    }
    for (const a of doc.querySelectorAll('a[href]')) {
      a.setAttribute('target', '_blank');
      a.setAttribute('rel', 'noopener noreferrer');
    }
    const quotes = [...doc.querySelectorAll('blockquote')].filter((q) => !q.parentElement.closest('blockquote'));
    for (const q of quotes) q.classList.add('x-quote');
    // Serialized only to become the sandbox's srcdoc; it is never put into the console's DOM.
    const srcdoc = '<!doctype html><html lang="' + I18N.getLang() + '"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"></head><body>'
      + doc.body.innerHTML + '</body></html>';
    return { srcdoc, remote, quotes: quotes.length, inlineUsed };
  }

  /** Style and size the sandboxed document from outside (it runs no script of its own). */
  function decorateFrame(frame, rec) {
    const doc = frame.contentDocument;
    if (!doc || !doc.documentElement) return;
    if (!rec.decorated) {
      rec.decorated = true;
      try {
        const sheet = new doc.defaultView.CSSStyleSheet();
        sheet.replaceSync(FRAME_CSS);
        doc.adoptedStyleSheets = [sheet];
      } catch (err) { /* an old browser: the mail's own look only */ }
      for (const el of doc.querySelectorAll('[data-x-style]')) el.style.cssText = el.getAttribute('data-x-style');
      for (const img of doc.images) {
        img.addEventListener('load', () => fitFrame(frame));
        img.addEventListener('error', () => fitFrame(frame));
      }
      if (window.ResizeObserver && doc.body) new ResizeObserver(() => fitFrame(frame)).observe(doc.body);
    }
    doc.documentElement.classList.toggle('hide-quotes', !rec.quotesOpen);
    fitFrame(frame);
  }

  function fitFrame(frame) {
    const doc = frame.contentDocument;
    if (!doc || !doc.documentElement) return;
    const root = doc.documentElement;
    const wide = root.scrollWidth > root.clientWidth + 1 ? 18 : 0; // room for a horizontal scrollbar
    const height = Math.ceil(root.getBoundingClientRect().height) + wide;
    frame.style.height = Math.max(24, Math.min(height, 20000)) + 'px';
  }

  /** "Show images": the held-back sources swapped in, inside the sandbox (and kept for redraws). */
  function showRemoteImages(em, rec) {
    em.images.add(rec.key);
    const doc = rec.frame && rec.frame.contentDocument;
    if (doc) {
      for (const img of doc.querySelectorAll('img[data-remote-src]')) {
        const url = img.getAttribute('data-remote-src') || '';
        if (/^https?:\/\//i.test(url)) img.setAttribute('src', url);
      }
    }
    if (rec.imagesBar) rec.imagesBar.remove();
  }

  function updateEmailMessage(em, rec, m) {
    const ob = outboxOf(m);
    const st = ob ? sendState(em, ob) : null;
    renderSendState(em, rec, st, ob ? ob.id : null);
  }

  /** sending → sent, or failed with the error and a retry; retried later with back-off. */
  function renderSendState(em, rec, st, outboxId) {
    const el = rec.status;
    if (!el) return;
    let state = '';
    if (st) {
      if (st.status === 'sent') state = 'sent';
      else if (st.status === 'failed') state = 'failed';
      else if (st.status === 'pending' && st.attempts > 0 && !st.retrying) state = 'retrying';
      else state = 'sending';
    }
    const key = [state, st && st.attempts, st && st.error, st && st.next_attempt_at, I18N.getLang()].join('|');
    if (rec.stateKey === key) return;
    rec.stateKey = key;
    rec.node.dataset.status = state;
    el.dataset.state = state;
    el.hidden = !state;
    if (!state) { el.replaceChildren(); return; }
    const collapsed = rec.node.classList.contains('is-collapsed');
    const retry = () => h('button', { type: 'button', class: 'link-btn', dataset: { action: 'retry-send' }, onclick: (ev) => { ev.stopPropagation(); retrySendEmail(em, outboxId); }, text: t('email.send.retry') });
    if (state === 'sending') el.replaceChildren(icon('clock', 'icon-xs'), h('span', { text: t('email.send.sending') }));
    else if (state === 'sent') el.replaceChildren(icon('check', 'icon-xs'), h('span', { text: t('email.send.sent') }));
    else if (collapsed) el.replaceChildren(icon('alert-triangle', 'icon-xs'), h('span', { text: t(state === 'failed' ? 'email.send.failed_short' : 'email.send.retrying_short') }));
    else if (state === 'retrying') {
      const at = st.next_attempt_at ? formatTime(st.next_attempt_at) : '';
      fill(el, icon('clock', 'icon-xs'),
        h('span', { class: 'email-send-text', text: t('email.send.retrying', { time: at, attempts: st.attempts }) }),
        st.error ? h('span', { class: 'email-send-error', dataset: { role: 'send-error' }, title: st.error, text: sendErrorText(st.error) }) : null,
        outboxId !== null ? retry() : null);
    } else {
      fill(el, icon('alert-triangle', 'icon-xs'),
        h('span', { class: 'email-send-text', text: t('email.send.failed') }),
        st.error ? h('span', { class: 'email-send-error', dataset: { role: 'send-error' }, title: st.error, text: sendErrorText(st.error) }) : null,
        outboxId !== null ? retry() : null);
    }
  }

  async function retrySendEmail(em, outboxId) {
    if (outboxId === null || outboxId === undefined) return;
    const prev = em.status.get(outboxId) || {};
    const m = em.messages.find((x) => (x.outbox || []).some((o) => o.id === outboxId));
    const stored = m ? sendState(em, outboxOf(m)) : prev;
    em.status.set(outboxId, { status: 'pending', attempts: (stored && stored.attempts) || 0, error: null, next_attempt_at: null, retrying: true });
    emailChanged(em, {});
    try {
      await api('POST', '/api/v1/outbox/' + encodeURIComponent(outboxId) + '/retry');
    } catch (err) {
      if (err.status === 401) return sessionExpired();
      em.status.set(outboxId, Object.assign({}, stored, { retrying: false }));
      toast(describeError(err), 'error');
      emailChanged(em, {});
    }
  }

  function buildEmailNote(em, m, rec) {
    rec.node = h('article', { class: 'email-note', dataset: { seq: m.seq, from: 'note', key: rec.key } },
      h('div', { class: 'email-note-head' },
        h('span', { class: 'note-label' }, icon('lock', 'icon-xs'), h('span', { text: t('chat.note_label') })),
        h('span', { class: 'email-note-who', text: m.name || '' }),
        h('span', { class: 'email-date', title: formatDateTime(m.at), text: formatWhen(m.at) })),
      h('div', { class: 'msg-text email-note-text', text: m.text || '' }));
    return rec;
  }

  /** The agent's send, on screen at once, before the hub has stored it. */
  function buildPendingEmail(em, p) {
    const rec = {};
    const me = (app.user && (app.user.display_name || app.user.username)) || '';
    rec.status = h('span', { class: 'email-send', dataset: { role: 'send-state' } });
    if (p.note) {
      rec.node = h('article', { class: 'email-note is-pending', dataset: { from: 'note', pending: p.key } },
        h('div', { class: 'email-note-head' },
          h('span', { class: 'note-label' }, icon('lock', 'icon-xs'), h('span', { text: t('chat.note_label') })),
          h('span', { class: 'email-note-who', text: me }), rec.status),
        h('div', { class: 'msg-text email-note-text', text: p.text }));
      return rec;
    }
    rec.node = h('article', { class: 'email-msg is-open is-pending', dataset: { from: 'agent', pending: p.key } },
      h('header', { class: 'email-msg-head' },
        h('span', { class: 'avatar email-avatar', 'aria-hidden': 'true', dataset: { hue: avatarHue(me) }, text: initials(me) }),
        h('div', { class: 'email-msg-who' },
          h('div', { class: 'email-from-row' }, h('strong', { class: 'email-from-name', text: me }),
            p.mode === 'forward' ? kindChip('forward') : null),
          h('div', { class: 'email-rcpt' },
            h('span', { class: 'email-rcpt-label', text: t('email.field.to') }), h('span', { class: 'email-rcpt-list', text: p.to.join(', ') || '—' }),
            p.cc.length ? h('span', { class: 'email-rcpt-label', text: t('email.field.cc') }) : null,
            p.cc.length ? h('span', { class: 'email-rcpt-list', text: p.cc.join(', ') }) : null),
          h('div', { class: 'email-msg-subject', text: p.subject })),
        h('div', { class: 'email-msg-side' }, h('span', { class: 'email-date', text: formatDateTime(p.at) }))),
      h('div', { class: 'email-body' }, h('div', { class: 'email-text', text: p.text })),
      p.files.length ? h('div', { class: 'email-atts' }, p.files.map(attachmentNode)) : null,
      h('footer', { class: 'email-msg-foot' }, rec.status));
    return rec;
  }

  function updatePendingEmail(em, rec, p) {
    if (p.status === 'failed') {
      const key = 'failed|' + p.error;
      if (rec.stateKey === key) return;
      rec.stateKey = key;
      rec.node.dataset.status = 'failed';
      rec.status.dataset.state = 'failed';
      rec.status.replaceChildren(icon('alert-triangle', 'icon-xs'), h('span', { class: 'email-send-text', text: t('email.send.not_queued') }),
        h('span', { class: 'email-send-error', text: p.error || '' }),
        h('button', { type: 'button', class: 'link-btn', dataset: { action: 'retry-post' }, onclick: () => postEmail(em, p), text: t('email.send.retry') }),
        h('button', { type: 'button', class: 'link-btn', dataset: { action: 'edit-post' }, onclick: () => editPending(em, p), text: t('email.send.edit') }));
      return;
    }
    const st = p.outbox_id !== undefined ? em.status.get(p.outbox_id) : null;
    renderSendState(em, rec, st || { status: 'pending', attempts: 0 }, p.outbox_id === undefined ? null : p.outbox_id);
  }

  /** A send the hub refused goes back into the composer, as it was. */
  function editPending(em, p) {
    em.pending = em.pending.filter((x) => x !== p);
    const d = em.draft;
    d.note = !!p.note;
    if (p.note) d.noteText = p.text;
    else {
      Object.assign(d, { mode: p.mode, seq: p.seq0, to: p.extraTo.slice(), cc: p.extraCc.slice(), text: p.text, files: p.files.slice() });
    }
    saveEmailStore();
    const pane = emailPanes.get(em.id);
    if (pane) syncComposerFromDraft(em, pane);
    emailChanged(em, {});
  }

  // ---- the composer: reply, reply-all, forward, internal note

  /** The mail answered or forwarded: the one chosen, else the customer's latest. */
  function answeredMessage(em) {
    const d = em.draft;
    const chosen = d.seq !== null ? em.messages.find((m) => m.seq === d.seq && m.email) : null;
    return chosen || latestCustomerEmail(em) || emails(em).slice(-1)[0] || null;
  }

  function ourAddresses(em) {
    const ours = new Set();
    for (const m of emails(em)) {
      const f = m.email.flags || {};
      if (f.mailbox) ours.add(String(f.mailbox).toLowerCase());
      if (m.email.direction === 'outbound' && m.email.from_addr) ours.add(m.email.from_addr.toLowerCase());
    }
    return ours;
  }

  /** Who the hub addresses by itself in this mode (the sender, and for reply-all the others). */
  function autoRecipients(em, mode) {
    const m = answeredMessage(em);
    if (!m || mode === 'forward') return { to: [], cc: [] };
    const mail = m.email;
    // As the hub sends it: to the Reply-To address when the customer gave one, else From.
    const replyTo = ((mail.flags && mail.flags.reply_to) || [])[0];
    const to = mail.direction === 'outbound' ? (mail.to || []).slice() : replyTo ? [replyTo] : (mail.from_addr ? [mail.from_addr] : []);
    const cc = [];
    if (mode === 'reply_all') {
      const ours = ourAddresses(em);
      for (const a of (mail.to || []).concat(mail.cc || [])) {
        const low = a.toLowerCase();
        if (!ours.has(low) && !to.some((x) => x.toLowerCase() === low) && !cc.some((x) => x.toLowerCase() === low)) cc.push(a);
      }
    }
    return { to, cc };
  }

  /** The subject the hub will give the mail: Re:/Fwd: and the ticket tag (as the composer writes it). */
  function subjectPreview(em, mode) {
    const m = answeredMessage(em);
    const base = String((m && m.email.subject) || (em.conversation && em.conversation.subject) || '').trim();
    const prefix = mode === 'forward' ? 'Fwd' : 'Re';
    let s = new RegExp('^' + prefix + ':', 'i').test(base) ? base : (prefix + ': ' + base).trim();
    if (em.conversationId !== null) {
      const tag = '[#' + em.conversationId + ']';
      if (!s.includes(tag)) s = tag + ' ' + s;
    }
    return s;
  }

  function validAddress(a) {
    return EMAIL_RE.test(String(a || '').trim());
  }

  function buildEmailComposer(em, pane) {
    const comp = {};
    const tab = (mode, key, ic) => modeTab(mode, t(key), ic, () => {
      if (mode === 'note') em.draft.note = true;
      else {
        em.draft.note = false;
        if (em.draft.mode !== mode) {
          em.draft.mode = mode;
          // Recipients typed for another mode stay; the hub's own ones follow the mode.
          const auto = autoRecipients(em, mode);
          em.draft.cc = em.draft.cc.filter((a) => !auto.cc.includes(a));
        }
      }
      saveEmailStore();
      syncComposerFromDraft(em, pane);
      updateEmailComposer(em, pane);
      (mode === 'forward' && !em.draft.note ? comp.to.input : comp.input).focus();
    });
    comp.replyTab = tab('reply', 'email.mode.reply', 'reply');
    comp.replyAllTab = tab('reply_all', 'email.mode.reply_all', 'reply-all');
    comp.forwardTab = tab('forward', 'email.mode.forward', 'forward');
    comp.noteTab = tab('note', 'chat.mode.note', 'lock');
    comp.answer = h('div', { class: 'email-answer', dataset: { role: 'answering' } });
    comp.to = recipientField(em, pane, 'to');
    comp.cc = recipientField(em, pane, 'cc');
    comp.ccToggle = h('button', {
      type: 'button', class: 'link-btn rcpt-add-cc', dataset: { action: 'show-cc' },
      onclick: () => { em.draft.showCc = true; saveEmailStore(); updateEmailComposer(em, pane); comp.cc.input.focus(); },
    }, h('span', { text: t('email.field.add_cc') }));
    comp.subject = h('div', { class: 'email-subject-line', title: t('email.subject_hint') },
      h('span', { class: 'rcpt-label', text: t('email.field.subject') }),
      h('span', { class: 'email-subject-value', dataset: { role: 'subject-preview' } }),
      h('span', { class: 'email-subject-hint', text: t('email.subject_auto') }));
    comp.headers = h('div', { class: 'email-headers' }, h('div', { class: 'rcpt-row' }, comp.to.root, comp.ccToggle), comp.cc.root, comp.subject);
    comp.input = h('textarea', {
      class: 'composer-input email-input', rows: 5, 'aria-label': t('email.composer.label'), dataset: { role: 'composer' },
    });
    pane.input = comp.input;
    const grow = () => {
      comp.input.style.height = 'auto';
      comp.input.style.height = Math.min(comp.input.scrollHeight + 2, 320) + 'px';
    };
    comp.grow = grow;
    comp.input.addEventListener('input', () => {
      if (noteMode(em)) em.draft.noteText = comp.input.value;
      else em.draft.text = comp.input.value;
      saveEmailStore();
      grow();
      updateEmailComposer(em, pane);
    });
    trackComposition(comp.input, pane);
    comp.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && pane.canned) { closeCanned(pane); ev.preventDefault(); return; }
      // A mail has many lines: Enter is a new line, Ctrl+Enter (⌘+Enter) sends.
      if (ev.key !== 'Enter' || !(ev.ctrlKey || ev.metaKey) || imeEnter(ev, pane)) return;
      ev.preventDefault();
      submitEmail(em, pane);
    });
    comp.fileInput = h('input', { type: 'file', multiple: true, hidden: true, dataset: { role: 'file-input' } });
    comp.fileInput.addEventListener('change', () => {
      const files = [...comp.fileInput.files];
      comp.fileInput.value = '';
      addEmailFiles(em, files);
    });
    comp.attachBtn = h('button', { type: 'button', class: 'btn btn-sm btn-ghost', dataset: { action: 'attach' }, onclick: () => comp.fileInput.click() },
      icon('paperclip', 'icon-xs'), h('span', { text: t('email.attach') }));
    comp.files = h('div', { class: 'email-files', dataset: { role: 'files' } });
    comp.cannedBtn = cannedButton(em, pane);
    comp.cannedBox = h('div', { class: 'canned-anchor' });
    comp.hint = h('span', { class: 'composer-hint' });
    comp.error = h('p', { class: 'composer-error', role: 'alert', dataset: { role: 'composer-error' }, hidden: true });
    comp.sendBtn = h('button', { type: 'submit', class: 'btn btn-primary btn-send', dataset: { action: 'send' } },
      icon('send', 'icon-xs'), h('span', { dataset: { role: 'send-label' } }));
    comp.root = h('form', {
      class: 'composer email-composer', novalidate: true,
      onsubmit: (ev) => { ev.preventDefault(); submitEmail(em, pane); },
      // Idle, it is one line: the thread gets the room. It opens when a text field gets the
      // focus (not a button: that would move it between mouse down and up).
      onfocusin: (ev) => {
        if (!/^(TEXTAREA|INPUT)$/.test(ev.target.tagName)) return;
        comp.focused = true;
        updateEmailComposer(em, pane);
      },
      onfocusout: () => setTimeout(() => {
        comp.focused = comp.root.contains(document.activeElement);
        updateEmailComposer(em, pane);
      }, 0),
    },
    comp.cannedBox,
    h('div', { class: 'composer-tabs', role: 'tablist', 'aria-label': t('chat.mode.label') },
      comp.replyTab, comp.replyAllTab, comp.forwardTab, h('span', { class: 'composer-tab-sep', 'aria-hidden': 'true' }), comp.noteTab,
      h('span', { class: 'composer-note-label', text: t('chat.mode.note_hint') })),
    comp.answer, comp.headers, comp.input, comp.files, comp.error,
    h('div', { class: 'composer-bar' }, comp.cannedBtn, comp.attachBtn, comp.fileInput, comp.hint, comp.sendBtn));
    pane.comp = comp;
    syncComposerFromDraft(em, pane);
    requestAnimationFrame(grow);
    return comp;
  }

  /** Notes only, once the email is no longer connected (wrap-up), or when the agent chose so. */
  function noteMode(em) {
    return em.draft.note || !emailConnected(em);
  }

  /** The composer's text shows the draft of the mode on screen (reply or note). */
  function syncComposerFromDraft(em, pane) {
    const comp = pane.comp;
    comp.shownNote = noteMode(em);
    const want = comp.shownNote ? em.draft.noteText : em.draft.text;
    if (comp.input.value !== want) comp.input.value = want;
    comp.grow();
  }

  /** To / Cc: the hub's own recipients (locked) and the agent's, as chips; typing adds one. */
  function recipientField(em, pane, which) {
    const f = {};
    f.chips = h('span', { class: 'rcpt-chips' });
    f.input = h('input', {
      type: 'text', class: 'rcpt-input', autocomplete: 'off', spellcheck: 'false', inputmode: 'email',
      'aria-label': t('email.field.' + which), dataset: { role: which + '-input' },
    });
    f.root = h('div', { class: 'rcpt-field', dataset: { field: which }, onclick: (ev) => { if (ev.target === f.root) f.input.focus(); } },
      h('span', { class: 'rcpt-label', text: t('email.field.' + which) }), f.chips, f.input);
    const imeState = { composing: false, compositionEndAt: 0 };
    trackComposition(f.input, imeState);
    f.input.addEventListener('keydown', (ev) => {
      if ((ev.key === 'Enter' || ev.key === ',' || ev.key === ';' || (ev.key === 'Tab' && f.input.value.trim())) && !imeEnter(ev, imeState)) {
        if (!f.input.value.trim()) { if (ev.key === 'Enter') ev.preventDefault(); return; }
        ev.preventDefault();
        commitRecipients(em, pane, which);
      } else if (ev.key === 'Backspace' && !f.input.value && em.draft[which].length) {
        em.draft[which].pop();
        saveEmailStore();
        updateEmailComposer(em, pane);
      }
    });
    f.input.addEventListener('input', () => {
      if (/[,;，；\s]/.test(f.input.value) && !imeState.composing) commitRecipients(em, pane, which);
      else updateEmailComposer(em, pane);
    });
    f.input.addEventListener('blur', () => { if (f.input.value.trim()) commitRecipients(em, pane, which); });
    return f;
  }

  function commitRecipients(em, pane, which) {
    const f = pane.comp[which];
    const parts = f.input.value.split(/[,;，；\s]+/).map((x) => x.replace(/^<|>$/g, '').trim()).filter(Boolean);
    const list = em.draft[which];
    for (const a of parts) if (!list.some((x) => x.toLowerCase() === a.toLowerCase())) list.push(a);
    f.input.value = '';
    saveEmailStore();
    updateEmailComposer(em, pane);
  }

  function renderRecipientChips(em, pane, which, auto) {
    const f = pane.comp[which];
    const extra = em.draft[which];
    const key = JSON.stringify([auto, extra, I18N.getLang()]);
    if (f.key === key) return;
    f.key = key;
    f.chips.replaceChildren(
      ...auto.map((a) => h('span', { class: 'rcpt-chip is-auto', title: t('email.field.auto_title'), dataset: { address: a, auto: 'true' } },
        icon('lock', 'icon-xs'), h('span', { text: a }))),
      ...extra.map((a, i) => {
        const ok = validAddress(a);
        return h('span', { class: 'rcpt-chip' + (ok ? '' : ' is-invalid'), dataset: { address: a }, title: ok ? a : t('email.error.bad_address', { address: a }) },
          h('span', { text: a }),
          h('button', {
            type: 'button', class: 'rcpt-remove', 'aria-label': t('email.field.remove', { address: a }),
            onclick: () => { em.draft[which].splice(i, 1); saveEmailStore(); updateEmailComposer(em, pane); f.input.focus(); },
          }, icon('x', 'icon-xs')));
      }));
  }

  /** What stops a send, as a message for the agent (null: it may go). */
  function composerProblem(em, pane) {
    const d = em.draft;
    const text = pane.comp.input.value.trim();
    if (noteMode(em)) return Array.from(text).length > EMAIL_NOTE_MAX ? t('error.code.too_long') : null;
    const bad = d.to.concat(d.cc).find((a) => !validAddress(a));
    if (bad) return t('email.error.bad_address', { address: bad });
    const typed = [pane.comp.to.input.value, pane.comp.cc.input.value].map((v) => v.trim()).filter(Boolean);
    if (typed.some((v) => !validAddress(v))) return t('email.error.bad_address', { address: typed.find((v) => !validAddress(v)) });
    if (d.mode === 'forward' && !d.to.length && !pane.comp.to.input.value.trim()) return t('email.error.forward_to');
    if (d.mode !== 'forward' && !autoRecipients(em, d.mode).to.length && !d.to.length) return t('email.error.no_recipient');
    if (Array.from(text).length > EMAIL_MAX_CHARS) return t('error.code.too_long');
    if (em.uploads.some((u) => u.status === 'uploading')) return t('email.error.uploading');
    return null;
  }

  function updateEmailComposer(em, pane) {
    const comp = pane.comp;
    const d = em.draft;
    const e = emailEntry(em);
    const live = emailConnected(em);
    const note = noteMode(em);
    if (comp.shownNote !== note) syncComposerFromDraft(em, pane);
    comp.root.classList.toggle('is-note', note);
    comp.root.dataset.mode = note ? 'note' : d.mode;
    for (const [tabEl, mode] of [[comp.replyTab, 'reply'], [comp.replyAllTab, 'reply_all'], [comp.forwardTab, 'forward']]) {
      const on = !note && d.mode === mode;
      tabEl.classList.toggle('is-active', on);
      tabEl.setAttribute('aria-selected', on ? 'true' : 'false');
      tabEl.disabled = !live || !em.loaded;
    }
    comp.noteTab.classList.toggle('is-active', note);
    comp.noteTab.setAttribute('aria-selected', note ? 'true' : 'false');
    comp.headers.hidden = note;
    comp.answer.hidden = note;
    comp.attachBtn.hidden = note;
    comp.files.hidden = note || (!d.files.length && !em.uploads.length);
    if (!note) {
      const m = answeredMessage(em);
      const auto = autoRecipients(em, d.mode);
      renderRecipientChips(em, pane, 'to', auto.to);
      renderRecipientChips(em, pane, 'cc', auto.cc);
      const showCc = d.showCc || d.cc.length > 0 || auto.cc.length > 0;
      comp.cc.root.hidden = !showCc;
      comp.ccToggle.hidden = showCc;
      comp.to.input.placeholder = d.mode === 'forward' && !d.to.length ? t('email.field.forward_placeholder') : (d.to.length || auto.to.length ? '' : t('email.field.placeholder'));
      comp.cc.input.placeholder = d.cc.length || auto.cc.length ? '' : t('email.field.placeholder');
      comp.subject.querySelector('[data-role="subject-preview"]').textContent = subjectPreview(em, d.mode);
      const akey = [d.mode, m && m.seq, I18N.getLang(), d.seq].join('|');
      if (comp.answerKey !== akey) {
        comp.answerKey = akey;
        const who = m ? (m.email.direction === 'inbound' ? (m.email.from_name || m.email.from_addr) : (m.name || m.email.from_name || '')) : '';
        fill(comp.answer, icon(d.mode === 'forward' ? 'forward' : d.mode === 'reply_all' ? 'reply-all' : 'reply', 'icon-xs'),
          h('span', { text: m ? t(d.mode === 'forward' ? 'email.answering.forward' : 'email.answering.reply', { name: who, when: formatWhen(m.at) }) : '' }),
          d.seq !== null ? h('button', {
            type: 'button', class: 'link-btn', dataset: { action: 'answer-latest' },
            onclick: () => { d.seq = null; saveEmailStore(); updateEmailComposer(em, pane); },
            text: t('email.answering.latest'),
          }) : null);
      }
      renderComposerFiles(em, pane);
    }
    comp.input.placeholder = note ? t('chat.composer.note_placeholder') : t(d.mode === 'forward' ? 'email.composer.forward_placeholder' : 'email.composer.placeholder', { name: emailName(em) });
    comp.input.maxLength = note ? EMAIL_NOTE_MAX : EMAIL_MAX_CHARS;
    comp.sendBtn.querySelector('[data-role="send-label"]').textContent = t(note ? 'chat.composer.add_note' : d.mode === 'forward' ? 'email.composer.forward' : 'email.composer.send');
    const problem = comp.input.value.trim() ? composerProblem(em, pane) : null;
    comp.error.textContent = problem || '';
    comp.error.hidden = !problem;
    comp.sendBtn.disabled = !comp.input.value.trim() || !!problem || !!em.busy || !e || !(live || (note && e.state === 'wrap_up'));
    comp.hint.textContent = t('email.composer.hint');
    const idle = !comp.focused && !comp.input.value.trim() && !d.files.length && !em.uploads.length && !d.to.length && !d.cc.length
      && d.seq === null && d.mode === 'reply' && !pane.canned;
    comp.root.classList.toggle('is-compact', idle);
  }

  function renderComposerFiles(em, pane) {
    const comp = pane.comp;
    const d = em.draft;
    comp.files.replaceChildren(
      ...d.files.map((f) => h('span', { class: 'file-chip', dataset: { attachmentId: f.id } },
        icon('paperclip', 'icon-xs'), h('span', { class: 'file-chip-name', text: f.name }), h('span', { class: 'file-chip-size', text: formatSize(f.size) }),
        h('button', {
          type: 'button', class: 'rcpt-remove', 'aria-label': t('email.attach_remove', { name: f.name }),
          onclick: () => { d.files = d.files.filter((x) => x !== f); saveEmailStore(); updateEmailComposer(em, pane); },
        }, icon('x', 'icon-xs')))),
      ...em.uploads.map((u) => h('span', { class: 'file-chip is-' + u.status, title: u.error || '' },
        u.status === 'uploading' ? h('span', { class: 'spinner spinner-xs', 'aria-hidden': 'true' }) : icon('alert-triangle', 'icon-xs'),
        h('span', { class: 'file-chip-name', text: u.name }),
        h('span', { class: 'file-chip-size', text: u.status === 'uploading' ? t('email.uploading') : (u.error || '') }),
        u.status !== 'uploading' ? h('button', {
          type: 'button', class: 'rcpt-remove', 'aria-label': t('toast.dismiss'),
          onclick: () => { em.uploads = em.uploads.filter((x) => x !== u); updateEmailComposer(em, pane); },
        }, icon('x', 'icon-xs')) : null)));
  }

  /** Files for the reply: uploaded to the conversation now, attached by id when it is sent. */
  async function addEmailFiles(em, files) {
    for (const file of files) {
      const u = { name: file.name, size: file.size, status: 'uploading', error: null };
      em.uploads.push(u);
      emailChanged(em, {});
      try {
        const r = await uploadFile('/api/v1/conversations/' + encodeURIComponent(em.conversationId) + '/files', file);
        em.uploads = em.uploads.filter((x) => x !== u);
        em.draft.files.push({ id: r.id, name: r.name || file.name, size: r.size || file.size, content_type: r.content_type || file.type || '' });
        saveEmailStore();
      } catch (err) {
        if (err.status === 401) return sessionExpired();
        u.status = 'failed';
        u.error = err.status === 413 ? t('email.error.too_big') : describeError(err);
      }
      emailChanged(em, {});
    }
  }

  /** Reply / forward / note from a message's own buttons. */
  function startAnswer(em, pane, m, mode) {
    const d = em.draft;
    d.note = false;
    d.mode = mode;
    d.seq = m.seq;
    saveEmailStore();
    syncComposerFromDraft(em, pane);
    updateEmailComposer(em, pane);
    (mode === 'forward' ? pane.comp.to.input : pane.comp.input).focus();
  }

  function submitEmail(em, pane) {
    const comp = pane.comp;
    if (comp.to.input.value.trim()) commitRecipients(em, pane, 'to');
    if (comp.cc.input.value.trim()) commitRecipients(em, pane, 'cc');
    updateEmailComposer(em, pane);
    if (comp.sendBtn.disabled) {
      if (comp.error.hidden === false) comp.error.scrollIntoView({ block: 'nearest' });
      return;
    }
    const d = em.draft;
    const text = comp.input.value.trim();
    const p = { key: String(++pendingSeq), text, at: new Date(serverNow()).toISOString(), status: 'sending', note: noteMode(em), files: [] };
    if (!p.note) {
      const auto = autoRecipients(em, d.mode);
      const m = answeredMessage(em);
      Object.assign(p, {
        mode: d.mode, seq0: d.seq, seqAnswered: m ? m.seq : null, extraTo: d.to.slice(), extraCc: d.cc.slice(),
        to: auto.to.concat(d.to), cc: auto.cc.concat(d.cc), subject: subjectPreview(em, d.mode), files: d.files.slice(),
      });
      Object.assign(d, { text: '', to: [], cc: [], files: [], seq: null, mode: d.mode === 'forward' ? 'reply' : d.mode, showCc: false });
    } else {
      d.noteText = '';
    }
    em.pending.push(p);
    saveEmailStore();
    comp.input.value = '';
    comp.grow();
    closeCanned(pane);
    emailChanged(em, { own: true });
    postEmail(em, p);
  }

  async function postEmail(em, p) {
    p.status = 'sending';
    p.error = null;
    emailChanged(em, {});
    const base = '/api/v1/conversations/' + encodeURIComponent(em.conversationId);
    try {
      if (p.note) {
        const r = await api('POST', base + '/notes', { contact_id: em.id, text: p.text });
        p.seq = r && r.seq;
      } else {
        const body = { contact_id: em.id, mode: p.mode, text: p.text, to: p.extraTo, cc: p.extraCc, attachment_ids: p.files.map((f) => f.id) };
        if (p.seqAnswered !== null) body.seq = p.seqAnswered;
        const r = await api('POST', base + '/reply', body);
        p.seq = r.seq;
        p.outbox_id = r.outbox_id;
        p.message_id = r.message_id;
      }
      p.status = 'queued';
    } catch (err) {
      if (err.status === 401) return sessionExpired();
      p.status = 'failed';
      p.error = describeError(err);
      emailChanged(em, {});
      return;
    }
    emailChanged(em, {});
    await loadEmail(em);
  }

  function confirmComplete(em) {
    const e = emailEntry(em);
    if (!e) return;
    const unsent = em.pending.some((p) => p.status === 'failed') || em.draft.text.trim() || em.draft.files.length;
    if (!unsent) {
      acdAction(em.id, 'complete');
      return;
    }
    const go = h('button', {
      type: 'button', class: 'btn btn-primary', dataset: { action: 'confirm-complete' },
      onclick: () => { closeModal(); acdAction(em.id, 'complete'); },
    }, h('span', { text: t('email.complete.confirm') }));
    openModal(t('email.complete.title'), h('p', { class: 'modal-text', text: t('email.complete.unsent') }),
      [h('button', { type: 'button', class: 'btn', onclick: closeModal, text: t('chat.cancel') }), go]);
    go.focus();
  }

  // ---- split and merge (with a confirmation)

  function confirmSplit(em, m) {
    const after = em.messages.filter((x) => x.seq > m.seq).length;
    const go = h('button', {
      type: 'button', class: 'btn btn-primary', dataset: { action: 'confirm-split' },
      onclick: async () => {
        go.disabled = true;
        go.classList.add('is-busy');
        try {
          const r = await api('POST', '/api/v1/conversations/' + encodeURIComponent(em.conversationId) + '/split', { seq: m.seq });
          closeModal();
          toast(t('email.split.done', { ticket: '[#' + (r && r.conversation_id) + ']' }));
          await loadEmail(em);
        } catch (err) {
          if (err.status === 401) return sessionExpired();
          go.disabled = false;
          go.classList.remove('is-busy');
          errLine.textContent = describeError(err);
          errLine.hidden = false;
        }
      },
    }, icon('scissors', 'icon-xs'), h('span', { text: t('email.split.confirm') }));
    const errLine = h('p', { class: 'wrapup-error', role: 'alert', hidden: true });
    openModal(t('email.split.title'), [
      h('p', { class: 'modal-text', text: t('email.split.text', { subject: m.email.subject || t('contact.no_subject'), when: formatDateTime(m.at) }) }),
      after ? h('p', { class: 'transfer-confirm', text: tn('email.split.after', after, { count: after }) }) : null,
      errLine,
    ], [h('button', { type: 'button', class: 'btn', onclick: closeModal, text: t('chat.cancel') }), go]);
    go.focus();
  }

  /** Merge into another conversation, found by its ticket number, after showing what it is. */
  function openMerge(em) {
    let target = null;
    let lookup = 0;
    const input = h('input', {
      type: 'text', class: 'merge-input', inputmode: 'numeric', autocomplete: 'off', placeholder: t('email.merge.placeholder'),
      'aria-label': t('email.merge.label'), dataset: { role: 'merge-ticket' },
    });
    const found = h('div', { class: 'merge-found', dataset: { role: 'merge-found' }, hidden: true });
    const go = h('button', { type: 'button', class: 'btn btn-primary', disabled: true, dataset: { action: 'confirm-merge' } },
      icon('merge', 'icon-xs'), h('span', { text: t('email.merge.confirm') }));
    const show = (node, ok) => {
      found.hidden = false;
      found.className = 'merge-found ' + (ok ? 'is-ok' : 'is-bad');
      found.replaceChildren(node);
    };
    let timer = null;
    input.addEventListener('input', () => {
      clearTimeout(timer);
      target = null;
      go.disabled = true;
      const n = (/\d+/.exec(input.value) || [])[0];
      if (!n) { found.hidden = true; return; }
      timer = setTimeout(async () => {
        const id = Number(n);
        const mine = ++lookup;
        if (id === em.conversationId) { show(h('span', { text: t('email.merge.same') }), false); return; }
        try {
          const data = await api('GET', '/api/v1/conversations/' + encodeURIComponent(id));
          if (mine !== lookup) return;
          const conv = data && data.conversation;
          if (!conv || conv.channel !== 'email') { show(h('span', { text: t('email.merge.not_email') }), false); return; }
          const n2 = (data.messages || []).filter((x) => x.email).length;
          target = conv;
          go.disabled = false;
          show(h('div', { class: 'merge-summary' },
            h('strong', { text: '[#' + conv.id + '] ' + (conv.subject || t('contact.no_subject')) }),
            h('span', { class: 'muted small', text: [tn('email.count', n2, { count: n2 }), tOr('email.conv_status.', conv.status), formatWhen(conv.updated_at)].filter(Boolean).join(' · ') }),
            h('span', { class: 'small', text: t('email.merge.confirm_text', { from: '[#' + em.conversationId + ']', into: '[#' + conv.id + ']' }) })), true);
        } catch (err) {
          if (mine !== lookup) return;
          if (err.status === 401) return sessionExpired();
          show(h('span', { text: err.status === 404 ? t('email.merge.not_found', { ticket: '[#' + id + ']' }) : describeError(err) }), false);
        }
      }, 250);
    });
    go.addEventListener('click', async () => {
      if (!target) return;
      go.disabled = true;
      go.classList.add('is-busy');
      try {
        await api('POST', '/api/v1/conversations/' + encodeURIComponent(em.conversationId) + '/merge', { into: target.id });
        const from = em.conversationId;
        // This contact belongs to the conversation it joined now.
        em.conversationId = target.id;
        const e = emailEntry(em);
        if (e) e.contact = Object.assign({}, e.contact, { conversation_id: target.id });
        em.open.clear();
        closeModal();
        toast(t('email.merge.done', { from: '[#' + from + ']', into: '[#' + target.id + ']' }));
        await loadEmail(em);
      } catch (err) {
        if (err.status === 401) return sessionExpired();
        go.disabled = false;
        go.classList.remove('is-busy');
        show(h('span', { text: describeError(err) }), false);
      }
    });
    openModal(t('email.merge.title'), [
      h('p', { class: 'modal-text', text: t('email.merge.text', { ticket: '[#' + em.conversationId + ']' }) }),
      h('label', { class: 'merge-field' }, h('span', { class: 'rcpt-label', text: t('email.merge.label') }), input),
      found,
    ], [h('button', { type: 'button', class: 'btn', onclick: closeModal, text: t('chat.cancel') }), go]);
    input.focus();
  }

  // ---- the side card: who wrote

  function buildSenderCard(em) {
    const m = latestCustomerEmail(em);
    const mail = (m && m.email) || {};
    const f = mail.flags || {};
    const rows = [
      visitorRow('user', t('email.sender.name'), mail.from_name),
      visitorRow('email', t('email.sender.address'), mail.from_addr),
      visitorRow('inbox', t('email.sender.mailbox'), f.mailbox),
      visitorRow('language', t('customer.language'), em.language ? (I18N.LANG_NAMES[em.language] || em.language) : ''),
    ].filter(Boolean);
    return h('section', { class: 'card side-card', dataset: { role: 'sender' } },
      h('h3', { class: 'card-title', text: t('email.sender.title') }),
      rows.length ? h('ul', { class: 'visitor-list' }, rows) : h('p', { class: 'muted empty-line', text: t('email.sender.none') }));
  }

  // ---- work items: the offer and the email in hand

  /** An email offer: subject, sender, first lines, files, and why it joined an existing thread. */
  function buildOfferEmail(em, c) {
    const m = latestCustomerEmail(em);
    const mail = (m && m.email) || {};
    const f = mail.flags || {};
    const files = m ? attachmentsShown(m, inlineImages(m)).length : 0;
    const count = emails(em).filter((x) => x.email.direction === 'inbound').length;
    const reason = m && f.thread_reason && f.thread_reason !== 'new' ? reasonText(em, m) : '';
    const from = mail.from_name && mail.from_addr ? mail.from_name + ' <' + mail.from_addr + '>' : (mail.from_addr || mail.from_name || '');
    const lines = m ? snippetOf(m) : '';
    return h('div', { class: 'offer-chat offer-email', dataset: { role: 'offer-email' } },
      h('span', { class: 'offer-subject offer-email-subject', text: c.subject || mail.subject || t('contact.no_subject') }),
      h('div', { class: 'offer-visitor' },
        from ? h('span', { title: t('email.sender.address'), dataset: { role: 'offer-from' } }, icon('email', 'icon-xs'), h('span', { text: from })) : null,
        files ? h('span', { dataset: { role: 'offer-files' } }, icon('paperclip', 'icon-xs'), h('span', { text: tn('email.attachments', files, { count: files }) })) : null,
        reason ? h('span', { class: 'offer-email-reason', title: reason, dataset: { role: 'offer-reason', reason: f.thread_reason } }, icon('link', 'icon-xs'), h('span', { text: reason })) : null,
        count > 1 ? h('span', null, icon('inbox', 'icon-xs'), h('span', { text: tn('email.in_thread', count, { count }) })) : null),
      lines ? h('ul', { class: 'offer-messages' }, h('li', { class: 'offer-msg' }, h('span', { class: 'offer-msg-text', text: lines }))) : null);
  }

  /** Inline images the HTML shows in place (so not counted as files). */
  function inlineImages(m) {
    const used = new Set();
    const html = m.email && m.email.html;
    if (!html) return used;
    const atts = Array.isArray(m.attachments) ? m.attachments : [];
    const flags = m.email.flags || {};
    const indices = Array.isArray(flags.attachment_indices) ? flags.attachment_indices.map(Number) : atts.map((a, i) => i);
    for (const mt of String(html).matchAll(/data-attachment-index="(\d+)"/g)) {
      const a = atts[indices.indexOf(Number(mt[1]))];
      if (a) used.add(a.id);
    }
    return used;
  }

  function formatAge(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    let rtf;
    try {
      rtf = new Intl.RelativeTimeFormat(I18N.getLang(), { numeric: 'auto', style: 'short' });
    } catch (e) {
      return formatDuration(ms);
    }
    if (s < 60) return rtf.format(0, 'second');
    if (s < 3600) return rtf.format(-Math.floor(s / 60), 'minute');
    if (s < 86400) return rtf.format(-Math.floor(s / 3600), 'hour');
    return rtf.format(-Math.floor(s / 86400), 'day');
  }

  /** An email in hand: the customer, the subject, how long the customer's latest mail has waited. */
  function buildEmailCard(e) {
    const c = e.contact;
    const cust = entryCustomer(e);
    return h('li', { class: 'acd-card work-card chat-card email-card', dataset: { contactId: c.id, state: e.state, channel: 'email' } },
      h('button', { type: 'button', class: 'acd-main', title: t('email.open'), onclick: () => showEmail(e.id, true) },
        h('span', { class: 'acd-customer' },
          h('span', { class: 'acd-name', text: entryName(e) }),
          cust ? tierBadge(cust.tier) : null,
          h('span', { class: 'unread-badge', dataset: { role: 'unread' }, hidden: true })),
        channelLine(c),
        h('span', { class: 'acd-subject', dataset: { role: 'subject' } })),
      h('div', { class: 'acd-row' },
        h('span', { class: 'wait-chip', dataset: { role: 'age' } }),
        h('span', { class: 'acd-timer', title: t('work.handling_time') }, icon('clock', 'icon-xs'), h('span', { class: 'mono', dataset: { role: 'elapsed' } }))));
  }

  function refreshEmailCard(e, node) {
    const em = app.emails.get(e.id);
    node.classList.toggle('is-active', app.view === 'email' && app.activeEmail === e.id);
    if (!em) return;
    const part = (role) => node.querySelector('[data-role="' + role + '"]');
    const unread = part('unread');
    if (unread) {
      unread.hidden = !em.unread;
      unread.textContent = String(em.unread);
      unread.title = tn('email.unread', em.unread, { count: em.unread });
    }
    const subject = part('subject');
    if (subject) {
      const s = (em.conversation && em.conversation.subject) || e.contact.subject || t('contact.no_subject');
      if (subject.textContent !== s) subject.textContent = s;
    }
    const age = part('age');
    if (age) {
      const failed = em.messages.some((m) => { const ob = outboxOf(m); const st = ob && sendState(em, ob); return st && st.status === 'failed' && m.from === 'agent'; });
      const last = latestCustomerEmail(em);
      const answered = last && em.messages.some((m) => m.seq > last.seq && m.from === 'agent');
      let cls = 'wait-chip';
      let text = '';
      if (failed) { cls += ' is-late'; text = t('email.card.failed'); }
      else if (last && !answered) {
        const at = parseDate(last.at);
        const ms = at ? serverNow() - at.getTime() : 0;
        cls += ms > 3600000 ? ' is-late' : ' is-customer';
        text = ms < 60000 ? t('email.card.received_now') : t('email.card.received', { age: formatAge(ms) });
      } else if (answered) { cls += ' is-agent'; text = t('email.card.answered'); }
      age.className = cls;
      age.hidden = !text;
      if (age.textContent !== text) age.textContent = text;
    }
  }

  function tickEmails() {
    for (const [id, pane] of emailPanes) {
      const em = emailOf(id);
      if (em && !pane.root.hidden) tickEmailPane(em, pane);
    }
  }

  // ------------------------------------------------------------------ extension points

  /** For the channel panes that come later: work items and socket message handlers. */
  window.ContactHub = Object.freeze({
    onMessage(type, fn) {
      if (!app.handlers.has(type)) app.handlers.set(type, []);
      app.handlers.get(type).push(fn);
    },
    send: socketSend,
    setWorkItems(items) {
      app.workItems = Array.isArray(items) ? items.slice() : [];
      renderWorkItems();
    },
    upsertWorkItem(item) {
      const i = app.workItems.findIndex((w) => w.id === item.id);
      if (i >= 0) app.workItems[i] = Object.assign({}, app.workItems[i], item);
      else app.workItems.unshift(item);
      renderWorkItems();
    },
    removeWorkItem(id) {
      app.workItems = app.workItems.filter((w) => w.id !== id);
      renderWorkItems();
    },
    openCustomer: (id) => openCustomer(id, true),
    agentState: () => app.agentState && Object.assign({}, app.agentState),
    user: () => app.user,
    // What the softphone (softphone.js) shares with the console.
    ui: Object.freeze({
      api, toast, openModal, closeModal, tierBadge, formatPhone, formatMoney, describeError, queueLabel,
      stateLabel: (s) => stateLabel(stateValue(s) || 'logged_out'),
    }),
  });

  // ------------------------------------------------------------------ boot

  // Notices other pages may ask for (the wallboard sends people here), by allow-list only.
  const URL_NOTICES = { wallboard: 'login.notice.wallboard', wallboard_forbidden: 'notice.wallboard_forbidden' };
  const URL_NEXT = { wallboard: '/wallboard' };

  function takeUrlNotice() {
    const params = new URLSearchParams(location.search);
    if (!params.has('notice') && !params.has('next')) return;
    const notice = params.get('notice');
    const next = params.get('next');
    app.urlNotice = Object.prototype.hasOwnProperty.call(URL_NOTICES, notice) ? URL_NOTICES[notice] : null;
    app.next = Object.prototype.hasOwnProperty.call(URL_NEXT, next) ? URL_NEXT[next] : null;
    params.delete('notice');
    params.delete('next');
    const qs = params.toString();
    history.replaceState(null, '', location.pathname + (qs ? '?' + qs : '') + location.hash);
  }

  async function boot() {
    document.documentElement.lang = I18N.getLang();
    S.decorateStaticIcons(icon);
    language.fill();
    language.apply();
    setView('welcome');

    $('login-form').addEventListener('submit', onLoginSubmit);
    $('logout-btn').addEventListener('click', logout);
    $('state-select').addEventListener('change', (ev) => requestState(ev.target.value));
    $('search-form').addEventListener('submit', onSearchSubmit);
    $('search-input').addEventListener('input', onSearchInput);
    $('back-btn').addEventListener('click', () => {
      if (location.hash.startsWith('#customer/')) history.pushState(null, '', location.pathname + location.search);
      setView(app.search.status === 'idle' ? 'welcome' : 'results');
      $('search-input').focus();
    });
    window.addEventListener('popstate', () => { if (app.user) routeFromHash(); });
    window.addEventListener('hashchange', () => { if (app.user) routeFromHash(); });
    document.addEventListener('keydown', (ev) => {
      if (!app.user || ev.key !== '/' || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const tag = (document.activeElement && document.activeElement.tagName) || '';
      if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') return;
      ev.preventDefault();
      $('search-input').focus();
      $('search-input').select();
    });
    setInterval(() => {
      if (!app.user) return;
      tickStateTimer();
      tickChats();
      tickEmails();
      if (sock.status === 'reconnecting') renderConn();
    }, 1000);
    // Countdowns of offers and wrap-up: often enough that a second never shows twice as long.
    setInterval(() => {
      if (app.user && app.acd.contacts.size) refreshAcd();
    }, 250);

    takeUrlNotice();
    const notice = app.urlNotice ? { kind: 'info', key: app.urlNotice } : undefined;
    try {
      const me = await api('GET', '/api/v1/auth/me');
      if (me && me.user) {
        showConsole(me.user);
        if (app.urlNotice) toast(t(app.urlNotice));
      } else {
        showLogin(notice);
      }
    } catch (err) {
      if (err.status === 401 || err.status === 403) showLogin(notice);
      else showLogin({ kind: 'error', key: '@error', vars: err });
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
