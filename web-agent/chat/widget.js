/*
 * Contact Hub — the chat widget's embed script (served at /chat/widget.js). One tag on any site:
 *
 *   <script src="https://hub.example.com/chat/widget.js" async
 *           data-title="在线客服" data-color="#2563eb" data-lang="zh-CN" data-position="right"></script>
 *
 * It adds a launcher button (with an unread badge) and the chat window, an iframe of
 * /chat/frame on the hub's origin. Everything lives in one shadow root under one element, so
 * the host page's styles never reach it and its own styles never leak out; the page's
 * scripts and storage are never touched. The iframe and this script talk with postMessage
 * only (open / close / unread / ready), each side checking who sent what.
 */
(function () {
  'use strict';

  var HOST_TAG = 'contact-hub-chat';
  var MSG = 'contact-hub-chat';
  // Keys the chat window may keep in this site's localStorage, used only when the browser denies
  // the (third-party) chat window storage of its own.
  var STORE_KEYS = ['contact-hub-chat.v1', 'contact-hub-chat.draft'];
  var MAX_STORED = 512 * 1024;
  if (window.__contactHubChat) return; // the tag twice on one page: one widget
  window.__contactHubChat = true;

  var script = document.currentScript;
  if (!script || !/\/chat\/widget\.js(\?|#|$)/.test(script.src || '')) {
    var all = document.querySelectorAll('script[src*="/chat/widget.js"]');
    script = all[all.length - 1];
  }
  if (!script) return;

  var hubUrl = new URL(script.src, location.href);
  var hubOrigin = hubUrl.origin;
  var data = script.dataset || {};
  var color = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test((data.color || '').trim()) ? data.color.trim() : '#2563eb';
  var position = (data.position || '').trim().toLowerCase() === 'left' ? 'left' : 'right';
  var lang = (data.lang || '').trim();
  var title = (data.title || '').trim();

  var frameUrl = new URL('frame', hubUrl);
  var q = frameUrl.searchParams;
  if (lang) q.set('lang', lang);
  if (title) q.set('title', title);
  q.set('color', color);
  if (data.topics) q.set('topics', data.topics);
  q.set('position', position);

  var LABELS = {
    'zh-CN': { open: '打开在线客服', close: '收起在线客服', frame: '在线客服', unread: '条未读消息', dismiss: '关闭提示' },
    'zh-TW': { open: '開啟線上客服', close: '收合線上客服', frame: '線上客服', unread: '則未讀訊息', dismiss: '關閉提示' },
    en: { open: 'Open chat', close: 'Close chat', frame: 'Chat', unread: 'unread messages', dismiss: 'Dismiss' },
  };
  function pickLang(tag) {
    var s = String(tag || '').toLowerCase();
    if (s.indexOf('zh') === 0) return /(tw|hk|mo|hant)/.test(s) ? 'zh-TW' : 'zh-CN';
    if (s.indexOf('en') === 0) return 'en';
    return null;
  }
  var L = LABELS[pickLang(lang) || pickLang(navigator.language) || 'en'];

  // Colours for the launcher: readable text/icon on light accents too.
  function rgb(hex) {
    var s = hex.replace('#', '');
    if (s.length === 3) s = s.replace(/(.)/g, '$1$1');
    var n = parseInt(s, 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  function lum(c) {
    var v = c.map(function (x) { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  }
  var accentRgb = rgb(color);
  var onAccent = lum(accentRgb) > 0.45 ? '#0f172a' : '#ffffff';

  var CSS = [
    ':host { all: initial; position: fixed; z-index: 2147483000; bottom: 0; ' + position + ': 0; width: 0; height: 0;',
    '  --accent: ' + color + '; --on-accent: ' + onAccent + '; }',
    '*, *::before, *::after { box-sizing: border-box; }',
    '.launcher { position: fixed; bottom: 20px; ' + position + ': 20px; width: 60px; height: 60px; border-radius: 50%;',
    '  border: 0; padding: 0; margin: 0; cursor: pointer; background: var(--accent); color: var(--on-accent);',
    '  box-shadow: 0 6px 18px rgba(15, 23, 42, .22), 0 2px 6px rgba(15, 23, 42, .14);',
    '  display: flex; align-items: center; justify-content: center; transition: transform .18s ease, box-shadow .18s ease;',
    '  -webkit-tap-highlight-color: transparent; }',
    '.launcher:hover { transform: scale(1.05); box-shadow: 0 10px 24px rgba(15, 23, 42, .26), 0 3px 8px rgba(15, 23, 42, .16); }',
    '.launcher:active { transform: scale(.97); }',
    '.launcher:focus-visible { outline: 3px solid var(--accent); outline-offset: 3px; }',
    '.launcher svg { width: 28px; height: 28px; position: absolute; transition: transform .22s ease, opacity .18s ease; }',
    '.launcher .i-close { opacity: 0; transform: rotate(-90deg) scale(.6); }',
    '.is-open .launcher .i-chat { opacity: 0; transform: rotate(90deg) scale(.6); }',
    '.is-open .launcher .i-close { opacity: 1; transform: none; }',
    '.badge { position: absolute; top: -3px; ' + (position === 'left' ? 'left' : 'right') + ': -3px; min-width: 22px; height: 22px; padding: 0 6px;',
    '  border-radius: 11px; background: #dc2626; color: #fff; border: 2px solid #fff; display: flex; align-items: center;',
    '  justify-content: center; font: 700 12px/1 system-ui, -apple-system, "Segoe UI", Roboto, "PingFang SC", "Microsoft YaHei", sans-serif; }',
    '.badge[hidden] { display: none; }',
    '.panel { position: fixed; bottom: 92px; ' + position + ': 20px; width: 384px; height: min(640px, calc(100vh - 112px));',
    '  max-height: 640px; min-height: 360px; border-radius: 16px; overflow: hidden; background: #fff;',
    '  box-shadow: 0 18px 50px rgba(15, 23, 42, .24), 0 4px 14px rgba(15, 23, 42, .12);',
    '  opacity: 0; transform: translateY(12px) scale(.98); transform-origin: bottom ' + position + ';',
    '  visibility: hidden; pointer-events: none; transition: opacity .2s ease, transform .2s ease, visibility 0s linear .2s; }',
    '.is-open .panel { opacity: 1; transform: none; visibility: visible; pointer-events: auto; transition: opacity .2s ease, transform .2s ease; }',
    'iframe { border: 0; width: 100%; height: 100%; display: block; background: #fff; color-scheme: light; }',
    '.preview { position: fixed; bottom: 92px; ' + position + ': 20px; width: 280px; max-width: calc(100vw - 40px);',
    '  padding: 12px 34px 12px 14px; border-radius: 14px; background: #fff; color: #0f172a; text-align: left;',
    '  box-shadow: 0 10px 30px rgba(15, 23, 42, .18), 0 2px 6px rgba(15, 23, 42, .1); cursor: pointer; border: 0; margin: 0;',
    '  font: 400 13.5px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif;',
    '  letter-spacing: normal; animation: chc-pop .22s ease; }',
    '.preview[hidden] { display: none; }',
    '.preview-name { display: block; font-weight: 650; font-size: 12.5px; color: #334155; margin-bottom: 2px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }',
    '.preview-text { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; overflow-wrap: anywhere; }',
    '.preview-close { position: absolute; top: 6px; ' + (position === 'left' ? 'left' : 'right') + ': 6px; width: 24px; height: 24px; border: 0; padding: 0;',
    '  border-radius: 6px; background: transparent; color: #94a3b8; cursor: pointer; display: flex; align-items: center; justify-content: center; }',
    '.preview-close:hover { background: #f1f5f9; color: #334155; }',
    '.preview-close svg { width: 14px; height: 14px; }',
    '.preview:focus-visible, .preview-close:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }',
    '.is-open .preview { display: none; }',
    '@keyframes chc-pop { from { opacity: 0; transform: translateY(8px); } }',
    '@media (max-width: 519px) {',
    '  .preview { bottom: 84px; ' + position + ': 16px; }',
    '  .panel { inset: 0; width: 100%; height: 100%; max-height: none; min-height: 0; border-radius: 0; bottom: 0; ' + position + ': 0; }',
    '  .is-open .launcher { display: none; }',
    '  .launcher { bottom: 16px; ' + position + ': 16px; width: 56px; height: 56px; }',
    '}',
    '@media (max-height: 480px) and (min-width: 520px) { .panel { bottom: 84px; height: calc(100vh - 100px); min-height: 0; } }',
    '@media (prefers-reduced-motion: reduce) { .launcher, .launcher svg, .panel { transition: none !important; } }',
  ].join('\n');

  var SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(cls, paths) {
    var el = document.createElementNS(SVG_NS, 'svg');
    el.setAttribute('viewBox', '0 0 24 24');
    el.setAttribute('fill', 'none');
    el.setAttribute('stroke', 'currentColor');
    el.setAttribute('stroke-width', '2');
    el.setAttribute('stroke-linecap', 'round');
    el.setAttribute('stroke-linejoin', 'round');
    el.setAttribute('aria-hidden', 'true');
    el.setAttribute('focusable', 'false');
    el.setAttribute('class', cls);
    paths.forEach(function (d) {
      var p = document.createElementNS(SVG_NS, 'path');
      p.setAttribute('d', d);
      el.appendChild(p);
    });
    return el;
  }

  function mount() {
    if (document.querySelector(HOST_TAG)) return;
    var host = document.createElement(HOST_TAG);
    var root = host.attachShadow ? host.attachShadow({ mode: 'open' }) : host;

    // Styles through a constructed sheet where possible (unaffected by the host page's CSP
    // style-src); a <style> element otherwise.
    var sheetDone = false;
    try {
      if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === 'function') {
        var sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        root.adoptedStyleSheets = [sheet];
        sheetDone = true;
      }
    } catch (e) { sheetDone = false; }
    if (!sheetDone) {
      var style = document.createElement('style');
      style.textContent = CSS;
      root.appendChild(style);
    }

    var wrap = document.createElement('div');
    wrap.className = 'wrap';

    var panel = document.createElement('div');
    panel.className = 'panel';
    panel.id = 'chc-panel';
    var iframe = document.createElement('iframe');
    iframe.className = 'chc-frame';
    iframe.title = title || L.frame;
    iframe.setAttribute('allow', 'clipboard-write');
    iframe.setAttribute('referrerpolicy', 'strict-origin-when-cross-origin');
    iframe.src = frameUrl.href;
    panel.appendChild(iframe);

    var launcher = document.createElement('button');
    launcher.type = 'button';
    launcher.className = 'launcher';
    launcher.setAttribute('aria-controls', 'chc-panel');
    launcher.setAttribute('aria-expanded', 'false');
    launcher.setAttribute('aria-label', L.open);
    launcher.appendChild(svg('i-chat', ['M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z', 'M8 9h8', 'M8 13h5']));
    launcher.appendChild(svg('i-close', ['M18 6L6 18', 'M6 6l12 12']));
    var badge = document.createElement('span');
    badge.className = 'badge';
    badge.hidden = true;
    badge.setAttribute('aria-hidden', 'true');
    launcher.appendChild(badge);

    // The newest unread message, next to the launcher while the window is closed (text only).
    var preview = document.createElement('div');
    preview.className = 'preview';
    preview.hidden = true;
    preview.setAttribute('role', 'button');
    preview.setAttribute('tabindex', '0');
    var previewName = document.createElement('span');
    previewName.className = 'preview-name';
    var previewText = document.createElement('span');
    previewText.className = 'preview-text';
    var previewClose = document.createElement('button');
    previewClose.type = 'button';
    previewClose.className = 'preview-close';
    previewClose.setAttribute('aria-label', L.dismiss);
    previewClose.appendChild(svg('', ['M18 6L6 18', 'M6 6l12 12']));
    preview.appendChild(previewName);
    preview.appendChild(previewText);
    preview.appendChild(previewClose);

    wrap.appendChild(panel);
    wrap.appendChild(preview);
    wrap.appendChild(launcher);
    root.appendChild(wrap);
    document.body.appendChild(host);

    var open = false;
    var unread = 0;
    var ready = false;

    function tell(msg) {
      if (!iframe.contentWindow) return;
      msg[MSG] = 1;
      iframe.contentWindow.postMessage(msg, hubOrigin);
    }

    // The page moves the focus into the chat window: a cross-origin frame may not take it itself.
    // `again`: the window's document arrived after the iframe element got the focus, so the
    // focus is handed over once more (focusing an already focused iframe would do nothing).
    function focusFrame(again) {
      try {
        if (again && root.activeElement === iframe) iframe.blur();
        iframe.focus();
      } catch (e) { /* not focusable yet */ }
    }

    function label() {
      launcher.setAttribute('aria-label', (open ? L.close : L.open) + (unread && !open ? ' (' + unread + ' ' + L.unread + ')' : ''));
    }

    function setOpen(next, focusLauncher) {
      open = !!next;
      wrap.classList.toggle('is-open', open);
      launcher.setAttribute('aria-expanded', open ? 'true' : 'false');
      if (open) {
        unread = 0;
        badge.hidden = true;
        preview.hidden = true;
        focusFrame();
      }
      label();
      if (ready) tell({ type: open ? 'open' : 'close' });
      if (!open && focusLauncher) launcher.focus();
    }

    launcher.addEventListener('click', function () { setOpen(!open, false); });
    preview.addEventListener('click', function (e) {
      if (previewClose.contains(e.target)) return;
      setOpen(true, false);
    });
    preview.addEventListener('keydown', function (e) {
      if ((e.key === 'Enter' || e.key === ' ') && e.target === preview) {
        e.preventDefault();
        setOpen(true, false);
      }
    });
    previewClose.addEventListener('click', function () {
      preview.hidden = true;
      launcher.focus();
    });

    window.addEventListener('message', function (e) {
      if (e.origin !== hubOrigin || e.source !== iframe.contentWindow) return;
      var d = e.data;
      if (!d || d[MSG] !== 1 || typeof d.type !== 'string') return;
      if (d.type === 'hello') {
        var stored = {};
        STORE_KEYS.forEach(function (k) {
          try {
            var v = window.localStorage.getItem(k);
            if (v !== null) stored[k] = v;
          } catch (err) { /* no storage here either */ }
        });
        tell({ type: 'host', page: String(location.href).slice(0, 500), stored: stored });
      } else if (d.type === 'store') {
        if (STORE_KEYS.indexOf(d.key) < 0) return;
        try {
          if (d.value === null) window.localStorage.removeItem(d.key);
          else if (typeof d.value === 'string' && d.value.length <= MAX_STORED) window.localStorage.setItem(d.key, d.value);
        } catch (err) { /* quota or blocked */ }
      } else if (d.type === 'ready') {
        ready = true;
        tell({ type: 'host', page: String(location.href).slice(0, 500) });
        if (d.open && !open) setOpen(true, false);
        else tell({ type: open ? 'open' : 'close' });
        if (open) focusFrame(true); // opened before the window had loaded
      } else if (d.type === 'close') {
        setOpen(false, true);
      } else if (d.type === 'open') {
        setOpen(true, false);
      } else if (d.type === 'unread') {
        var before = unread;
        unread = Math.max(0, Math.min(99, Number(d.count) || 0));
        badge.textContent = unread > 9 ? '9+' : String(unread);
        badge.hidden = open || unread === 0;
        var p = d.preview;
        if (unread === 0) {
          preview.hidden = true;
        } else if (!open && unread > before && p && typeof p.text === 'string') {
          previewName.textContent = String(p.name || '').slice(0, 60);
          previewText.textContent = p.text.slice(0, 140);
          preview.hidden = false;
        }
        label();
      }
    });
  }

  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();
