/*
 * Contact Hub — what the agent console (app.js) and the wallboard (wallboard.js) share.
 *
 * Vanilla JS, no build step. Served by the hub at /shared.js; loaded after /i18n.js and before
 * the page script, which reads it as window.HubShared:
 *   DOM      $(id), h(tag, props, ...children), makeIcon(table, fallback), decorateStaticIcons(icon),
 *            ICON_PATHS (the icons both pages draw), PHONE, CIRCLE10 (path pieces)
 *   i18n     tOr(prefix, value), languageControl({ title, rerender }): static texts and pickers
 *   format   parseDate(value), formatDuration(ms), initials(name), avatarHue(seed)
 *   header   renderUserChip(user), renderConnIndicator(sock)
 *   socket   connectSocket({ path, onMessage, onLost, render }): the reconnecting socket
 *
 * Safety rule, as in the pages: every string from the server goes into the page as text
 * (textContent / text nodes). No innerHTML anywhere; h() turns strings into text nodes and icons
 * are SVG built with createElementNS from constant path tables.
 */
'use strict';

(function () {
  const I18N = window.I18N;
  const t = I18N.t;
  const tn = I18N.tn;

  // ------------------------------------------------------------------ DOM helpers

  const $ = (id) => document.getElementById(id);

  /** Build an element. props: class, text, dataset, on<event>, hidden, any attribute. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = String(v);
        else if (k === 'dataset') Object.assign(el.dataset, v);
        else if (k === 'hidden') el.hidden = true;
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // Icon paths adapted from Feather Icons (MIT licence, https://feathericons.com), 24x24 stroke.
  // Each page keeps its own table (these plus its own icons), so a name from the server only
  // ever draws an icon that page knows, or that page's fallback.
  const PHONE =
    'M22 16.92v3a2 2 0 0 1-2.18 2 19.79 19.79 0 0 1-8.63-3.07 19.5 19.5 0 0 1-6-6 19.79 19.79 0 0 1-3.07-8.67A2 2 0 0 1 4.11 2h3a2 2 0 0 1 2 1.72 12.84 12.84 0 0 0 .7 2.81 2 2 0 0 1-.45 2.11L8.09 9.91a16 16 0 0 0 6 6l1.27-1.27a2 2 0 0 1 2.11-.45 12.84 12.84 0 0 0 2.81.7A2 2 0 0 1 22 16.92z';
  const CIRCLE10 = 'M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z';
  const ICON_PATHS = Object.freeze({
    voice: [PHONE],
    callback: [PHONE, 'M19 1l4 4-4 4', 'M15 5h8'],
    outbound: [PHONE, 'M23 7V1h-6', 'M16 8l7-7'],
    email: ['M4 4h16c1.1 0 2 .9 2 2v12c0 1.1-.9 2-2 2H4c-1.1 0-2-.9-2-2V6c0-1.1.9-2 2-2z', 'M22 6l-10 7L2 6'],
    chat: ['M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z'],
    fax: ['M6 9V2h12v7', 'M6 18H4a2 2 0 0 1-2-2v-5a2 2 0 0 1 2-2h16a2 2 0 0 1 2 2v5a2 2 0 0 1-2 2h-2', 'M6 14h12v8H6z'],
    clock: [CIRCLE10, 'M12 6v6l4 2'],
    users: ['M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2', 'M9 3a4 4 0 1 0 0 8a4 4 0 1 0 0-8z', 'M23 21v-2a4 4 0 0 0-3-3.87', 'M16 3.13a4 4 0 0 1 0 7.75'],
    globe: [CIRCLE10, 'M2 12h20', 'M12 2a15.3 15.3 0 0 1 4 10 15.3 15.3 0 0 1-4 10 15.3 15.3 0 0 1-4-10 15.3 15.3 0 0 1 4-10z'],
    headset: ['M3 18v-6a9 9 0 0 1 18 0v6', 'M21 19a2 2 0 0 1-2 2h-1a2 2 0 0 1-2-2v-3a2 2 0 0 1 2-2h3z', 'M3 19a2 2 0 0 0 2 2h1a2 2 0 0 0 2-2v-3a2 2 0 0 0-2-2H3z'],
    inbox: ['M22 12h-6l-2 3h-4l-2-3H2', 'M5.45 5.11L2 12v6a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2v-6l-3.45-6.89A2 2 0 0 0 16.76 4H7.24a2 2 0 0 0-1.79 1.11z'],
  });

  /** icon(name, cls) drawing from `table`, with `table[fallback]` for a name it does not know. */
  function makeIcon(table, fallback) {
    return function icon(name, cls) {
      const NS = 'http://www.w3.org/2000/svg';
      const svg = document.createElementNS(NS, 'svg');
      svg.setAttribute('viewBox', '0 0 24 24');
      svg.setAttribute('fill', 'none');
      svg.setAttribute('stroke', 'currentColor');
      svg.setAttribute('stroke-width', '2');
      svg.setAttribute('stroke-linecap', 'round');
      svg.setAttribute('stroke-linejoin', 'round');
      svg.setAttribute('aria-hidden', 'true');
      svg.setAttribute('focusable', 'false');
      svg.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
      for (const d of table[name] || table[fallback]) {
        const p = document.createElementNS(NS, 'path');
        p.setAttribute('d', d);
        svg.append(p);
      }
      return svg;
    };
  }

  /** Fill the empty `data-icon` placeholders of the static markup. */
  function decorateStaticIcons(icon) {
    for (const el of document.querySelectorAll('[data-icon]')) {
      if (!el.firstChild) el.append(icon(el.dataset.icon));
    }
  }

  // ------------------------------------------------------------------ i18n

  /** Translate `prefix + value` when the catalogue knows it, else show the raw value. */
  function tOr(prefix, value) {
    if (value === null || value === undefined || value === '') return '';
    const key = prefix + value;
    return I18N.has(key) ? t(key) : String(value);
  }

  /** The static markup's texts, placeholders, titles and ARIA labels, in the current language. */
  function applyStaticI18n(root) {
    const scope = root || document;
    for (const el of scope.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of scope.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const el of scope.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
    for (const el of scope.querySelectorAll('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  }

  /*
   * The page's language: its static markup, its title and its language pickers
   * ([data-lang-select]). A choice in a picker sets the language, refills the pickers, applies
   * the static texts again, then calls opts.rerender() for what the page built itself.
   *
   * opts.title()     the document title for the page as it is now
   * opts.rerender()  redraw the page's own content in the new language
   *
   * Returns { fill(), apply(root) }: fill the pickers (once, then only their value); apply the
   * static texts (below root, or the whole document) and the title.
   */
  function languageControl(opts) {
    function apply(root) {
      applyStaticI18n(root);
      document.title = opts.title();
    }

    function fill() {
      for (const sel of document.querySelectorAll('[data-lang-select]')) {
        if (!sel.options.length) {
          for (const code of I18N.LANGS) {
            sel.append(h('option', { value: code, lang: code, text: I18N.LANG_NAMES[code] }));
          }
          sel.addEventListener('change', () => change(sel.value));
        }
        sel.value = I18N.getLang();
      }
    }

    function change(lang) {
      I18N.setLang(lang);
      fill();
      apply();
      opts.rerender();
    }

    return { fill, apply };
  }

  // ------------------------------------------------------------------ formatting

  function parseDate(value) {
    if (!value) return null;
    const d = new Date(value);
    return isNaN(d.getTime()) ? null : d;
  }

  function formatDuration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const hh = Math.floor(s / 3600);
    const mm = Math.floor((s % 3600) / 60);
    const ss = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    return (hh > 0 ? hh + ':' : '') + two(mm) + ':' + two(ss);
  }

  function initials(name) {
    // Letters and digits only, so that names like "<b>x" do not show punctuation.
    const s = Array.from(String(name || '')).filter((ch) => /[\p{L}\p{N}\s]/u.test(ch)).join('').trim();
    if (!s) return '?';
    // CJK names: the family name character; Latin names: first letters of two words.
    if (/[\u3400-\u9fff\uf900-\ufaff]/.test(s[0])) return s[0];
    const parts = s.split(/\s+/).filter(Boolean);
    const first = Array.from(parts[0] || '?')[0];
    const second = parts.length > 1 ? Array.from(parts[parts.length - 1])[0] : '';
    return (first + second).toUpperCase();
  }

  function avatarHue(seed) {
    let x = 0;
    for (const ch of String(seed)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
    return x % 6;
  }

  // ------------------------------------------------------------------ header

  /** The signed-in user in the header: name, role, avatar (#user-name, #user-role, #user-avatar). */
  function renderUserChip(u) {
    const name = u.display_name || u.username || '';
    $('user-name').textContent = name;
    $('user-role').textContent = tOr('role.', u.role);
    const av = $('user-avatar');
    av.textContent = initials(name);
    av.dataset.hue = avatarHue(u.username || name);
    av.title = u.username || '';
  }

  /** The connection indicator (#conn-indicator, #conn-text) for a socket from connectSocket. */
  function renderConnIndicator(sock) {
    const el = $('conn-indicator');
    el.dataset.conn = sock.status;
    const text = t('conn.' + sock.status);
    if (sock.status === 'reconnecting' && sock.retryAt > Date.now() && !sock.ws) {
      const secs = Math.ceil((sock.retryAt - Date.now()) / 1000);
      el.title = text + ' ' + tn('conn.retry_in', secs, { secs });
    } else {
      el.title = text;
    }
    $('conn-text').textContent = text;
  }

  // ------------------------------------------------------------------ reconnecting socket

  /*
   * One WebSocket to the hub (docs/protocol.md), kept up while it is wanted: reconnects with
   * exponential back-off (1 s doubling to 30 s, with jitter), pings after 1.5 heartbeats of
   * silence and gives the socket up after 3, and tries again at once when the browser is back
   * online.
   *
   * opts.path       the socket's path, e.g. '/api/v1/agent/ws'
   * opts.onMessage  (msg) for every frame that is a JSON object with a string `type`
   * opts.onLost     async () after the socket dropped (the status is already 'reconnecting'):
   *                 the page's own clean-up and session check; resolve to false to give up
   * opts.render     () when the status or the retry time changed (the page's renderConn)
   *
   * Returns the socket's state (ws, wanted, ready, status, attempt, retryAt, heartbeatSecs ...)
   * with start(), stop(reason), send(obj), setStatus(status) and greet(helloMsg).
   */
  function connectSocket(opts) {
    const sock = {
      ws: null,
      wanted: false,
      ready: false, // hello received on the current socket
      status: 'connecting', // connecting | connected | reconnecting
      attempt: 0,
      retryTimer: null,
      retryAt: 0,
      heartbeatSecs: 15,
      lastFrame: 0,
      watchdog: null,
    };

    function wsUrl() {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      return proto + '//' + location.host + opts.path;
    }

    function open() {
      clearTimeout(sock.retryTimer);
      if (!sock.wanted) return;
      let ws;
      try {
        ws = new WebSocket(wsUrl());
      } catch (e) {
        lost();
        return;
      }
      sock.ws = ws;
      sock.ready = false;
      ws.addEventListener('open', () => {
        if (sock.ws !== ws) return;
        sock.lastFrame = Date.now();
        armWatchdog();
      });
      ws.addEventListener('message', (ev) => {
        if (sock.ws !== ws) return;
        sock.lastFrame = Date.now();
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch (e) {
          return;
        }
        if (msg && typeof msg.type === 'string') opts.onMessage(msg);
      });
      ws.addEventListener('close', () => {
        if (sock.ws !== ws) return;
        sock.ws = null;
        lost();
      });
      // 'error' is always followed by 'close'.
    }

    function armWatchdog() {
      clearInterval(sock.watchdog);
      sock.watchdog = setInterval(() => {
        const ws = sock.ws;
        if (!ws || ws.readyState !== WebSocket.OPEN) return;
        const quiet = Date.now() - sock.lastFrame;
        const hb = Math.max(1, sock.heartbeatSecs) * 1000;
        if (quiet > hb * 3) {
          ws.close(4000, 'heartbeat timeout'); // no longer sock.ws: the close handler leaves it to lost()
          sock.ws = null;
          lost();
        } else if (quiet > hb * 1.5) {
          send({ type: 'ping' });
        }
      }, 1000);
    }

    async function lost() {
      clearInterval(sock.watchdog);
      sock.ready = false;
      if (!sock.wanted) return;
      setStatus('reconnecting');
      if ((await opts.onLost()) === false) return;
      if (!sock.wanted || sock.ws) return;
      const base = Math.min(30000, 1000 * 2 ** Math.min(sock.attempt, 5));
      const delay = Math.round(base * (0.6 + Math.random() * 0.4));
      sock.attempt += 1;
      sock.retryAt = Date.now() + delay;
      clearTimeout(sock.retryTimer);
      sock.retryTimer = setTimeout(open, delay);
      opts.render();
    }

    function send(obj) {
      const ws = sock.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(JSON.stringify(obj));
      return true;
    }

    function setStatus(status) {
      sock.status = status;
      opts.render();
    }

    function start() {
      sock.wanted = true;
      sock.attempt = 0;
      setStatus('connecting');
      open();
    }

    function stop(reason) {
      sock.wanted = false;
      sock.ready = false;
      clearTimeout(sock.retryTimer);
      clearInterval(sock.watchdog);
      const ws = sock.ws;
      sock.ws = null;
      if (ws) {
        try { ws.close(1000, reason); } catch (e) { /* ignore */ }
      }
    }

    /** The server's greeting (hello / snapshot): the socket is up, the back-off starts over. */
    function greet(msg) {
      sock.ready = true;
      sock.attempt = 0;
      if (+msg.heartbeat_secs > 0) sock.heartbeatSecs = +msg.heartbeat_secs;
    }

    window.addEventListener('online', () => {
      if (sock.wanted && !sock.ws) { sock.attempt = 0; open(); }
    });

    return Object.assign(sock, { start, stop, send, setStatus, greet });
  }

  window.HubShared = Object.freeze({
    $, h, makeIcon, decorateStaticIcons, ICON_PATHS, PHONE, CIRCLE10,
    tOr, languageControl,
    parseDate, formatDuration, initials, avatarHue,
    renderUserChip, renderConnIndicator,
    connectSocket,
  });
})();
