/*
 * Contact Hub — live wallboard for supervisors (/wallboard).
 *
 * Vanilla JS, no build step; loaded after /i18n.js and /shared.js (what the console uses too:
 * h(), icons, formatting, language pickers, the reconnecting socket). Reads the supervisor socket
 * (docs/protocol.md): `hello` / `snapshot` (agents, queues, stats), `agent_state`, `stats`
 * (coalesced by the server, at most every 250 ms), `heartbeat`. Figures are the hub's, with the
 * definitions of ARCHITECTURE §7; this page only adds the channels of a queue together and lets
 * the clocks (longest wait, time in state) run between frames.
 *
 * Safety rule, as in app.js: every string from the server goes into the page as text
 * (textContent / text nodes). No innerHTML anywhere.
 */
'use strict';

(function () {
  const I18N = window.I18N;
  const t = I18N.t;
  const tn = I18N.tn;
  const S = window.HubShared; // shared.js
  const { $, h, tOr, parseDate, formatDuration, initials, avatarHue } = S;

  // Service level colours: green at or above SL_GOOD, amber at or above SL_WARN, red below.
  const SL_GOOD = 0.8;
  const SL_WARN = 0.6;
  // Agent states in the order the panel lists them.
  const STATE_ORDER = ['busy', 'reserved', 'wrap_up', 'available', 'not_ready', 'logged_out'];
  const ROLES_ALLOWED = ['supervisor', 'admin'];

  // ------------------------------------------------------------------ icons

  // Icon paths adapted from Feather Icons (MIT licence, https://feathericons.com), 24x24 stroke:
  // the ones the console draws too (shared.js), then the wallboard's own.
  const ICONS = Object.assign({}, S.ICON_PATHS, {
    target: [S.CIRCLE10, 'M12 6a6 6 0 1 0 0 12a6 6 0 1 0 0-12z', 'M12 10a2 2 0 1 0 0 4a2 2 0 1 0 0-4z'],
  });

  const icon = S.makeIcon(ICONS, 'chat');

  // ------------------------------------------------------------------ formatting

  const dash = '—';
  const fmtMs = (ms) => (ms === null || ms === undefined || !isFinite(ms) ? dash : formatDuration(ms));

  function fmtPercent(x, digits) {
    if (x === null || x === undefined || !isFinite(x)) return dash;
    return new Intl.NumberFormat(I18N.getLang(), { style: 'percent', maximumFractionDigits: digits || 0 }).format(x);
  }

  const fmtInt = (n) => new Intl.NumberFormat(I18N.getLang()).format(n || 0);

  function slTone(sl) {
    if (sl === null || sl === undefined || !isFinite(sl)) return 'none';
    if (sl >= SL_GOOD) return 'good';
    if (sl >= SL_WARN) return 'warn';
    return 'bad';
  }

  // ------------------------------------------------------------------ state

  const wb = {
    user: null,
    queues: [], // [{id, name, display_name, description}] from hello
    agents: new Map(), // id -> {agent, state}
    stats: null, // Snapshot
    statsAt: 0, // local Date.now() when `stats` arrived (longest waits run on from there)
    clockOffsetMs: 0, // server time - local time
  };

  const serverNow = () => Date.now() + wb.clockOffsetMs;

  // ------------------------------------------------------------------ HTTP

  async function getMe() {
    let res;
    try {
      res = await fetch('/api/v1/auth/me', { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    } catch (e) {
      return { status: 0, user: null };
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    return { status: res.status, user: body && body.user };
  }

  /** Off to the console's login (or the console itself for an agent), with a notice. */
  function leave(kind) {
    sock.wanted = false;
    location.replace(kind === 'login' ? '/?next=wallboard&notice=wallboard' : '/?notice=wallboard_forbidden');
  }

  // ------------------------------------------------------------------ socket

  const sock = S.connectSocket({
    path: '/api/v1/supervisor/ws',
    onMessage,
    onLost: socketLost,
    render: renderConn,
  });

  /** The socket dropped (shared.js reconnects): resolves false when this page is left. */
  async function socketLost() {
    // Session over, or no longer a supervisor? Then the socket will not come back.
    const me = await getMe();
    if (me.status === 401) {
      leave('login');
      return false;
    }
    if (me.user && !ROLES_ALLOWED.includes(me.user.role)) {
      leave('forbidden');
      return false;
    }
    return true;
  }

  function renderConn() {
    S.renderConnIndicator(sock);
    const paused = sock.status !== 'connected' && wb.stats !== null;
    $('wb-paused').hidden = !paused;
    $('wb-main').classList.toggle('is-stale', paused);
  }

  function learnClock(serverMs) {
    if (isFinite(serverMs) && serverMs > 0) wb.clockOffsetMs = serverMs - Date.now();
  }

  function onMessage(msg) {
    switch (msg.type) {
      case 'hello':
      case 'snapshot':
        sock.greet(msg);
        if (msg.user) {
          wb.user = msg.user;
          renderUser();
        }
        // Tiles in the order the queues were configured (by id), then any queue only the stats name.
        wb.queues = Array.isArray(msg.queues)
          ? msg.queues.filter((q) => q && q.name).sort((a, b) => (+a.id || 0) - (+b.id || 0))
          : wb.queues;
        wb.agents = new Map();
        for (const a of Array.isArray(msg.agents) ? msg.agents : []) {
          if (a && a.agent && a.agent.id !== undefined) wb.agents.set(a.agent.id, { agent: a.agent, state: a.state || null });
        }
        if (msg.stats) setStats(msg.stats);
        sock.setStatus('connected');
        renderAll();
        break;
      case 'agent_state': {
        const id = msg.agent_id;
        const cur = wb.agents.get(id) || { agent: { id, username: '#' + id, display_name: '#' + id, role: 'agent' } };
        wb.agents.set(id, { agent: cur.agent, state: msg.state || null });
        renderAgents();
        break;
      }
      case 'stats':
        if (msg.stats) {
          setStats(msg.stats);
          renderSummary();
          renderTiles();
          renderAgents();
        }
        break;
      case 'heartbeat': {
        const st = parseDate(msg.server_time);
        if (st) learnClock(st.getTime());
        break;
      }
      default:
        break;
    }
  }

  function setStats(s) {
    wb.stats = s;
    wb.statsAt = Date.now();
    if (+s.at > 0) learnClock(+s.at);
  }

  // ------------------------------------------------------------------ figures

  /** The figures of one queue, its channels added together with the §7 definitions. */
  function queueFigures(name) {
    const figs = (wb.stats && Array.isArray(wb.stats.queues) ? wb.stats.queues : []).filter((f) => f && f.queue === name);
    return combine(figs);
  }

  function combine(figs) {
    const sum = (k) => figs.reduce((n, f) => n + (+f[k] || 0), 0);
    const weighted = (avgKey, countKey) => {
      const n = sum(countKey);
      if (!n) return null;
      return figs.reduce((acc, f) => acc + (f[avgKey] === null || f[avgKey] === undefined ? 0 : +f[avgKey] * (+f[countKey] || 0)), 0) / n;
    };
    const offered = sum('offered');
    const answered = sum('answered');
    const abandoned = sum('abandoned');
    const shortAb = sum('short_abandoned');
    const within = sum('answered_within_sl');
    const slDen = answered + abandoned - shortAb;
    const waiting = sum('waiting');
    const longestAtFrame = figs.reduce((m, f) => (+f.waiting > 0 ? Math.max(m, +f.longest_wait_ms || 0) : m), 0);
    const thresholds = [...new Set(figs.map((f) => +f.service_level_threshold_ms).filter((x) => x > 0))];
    return {
      channels: figs.map((f) => ({ channel: f.channel, waiting: +f.waiting || 0, offered: +f.offered || 0 })),
      offered, answered, abandoned, within,
      handled: sum('handled'),
      waiting,
      // Runs on locally from the frame's moment while someone still waits.
      longest: waiting > 0 ? longestAtFrame + Math.max(0, Date.now() - wb.statsAt) : 0,
      serviceLevel: slDen > 0 ? within / slDen : null,
      asa: weighted('asa_ms', 'answered'),
      aht: weighted('aht_ms', 'handled'),
      abandonRate: offered > 0 ? abandoned / offered : null,
      thresholdMs: thresholds.length === 1 ? thresholds[0] : (thresholds.length ? Math.min(...thresholds) : null),
    };
  }

  function allQueueNames() {
    const names = wb.queues.map((q) => q.name);
    for (const f of (wb.stats && Array.isArray(wb.stats.queues)) ? wb.stats.queues : []) {
      if (f && f.queue && !names.includes(f.queue)) names.push(f.queue);
    }
    return names;
  }

  // ------------------------------------------------------------------ rendering

  function renderUser() {
    const u = wb.user;
    if (!u) return;
    S.renderUserChip(u);
  }

  function kpi(label, value, opts) {
    const o = opts || {};
    return h('div', { class: 'wb-kpi' + (o.tone ? ' tone-sl-' + o.tone : ''), dataset: { kpi: o.key || '' }, title: o.title || null },
      h('span', { class: 'wb-kpi-label', text: label }),
      h('span', { class: 'wb-kpi-value', dataset: o.live ? { live: o.live } : undefined, text: value }),
      o.note ? h('span', { class: 'wb-kpi-note', text: o.note }) : null);
  }

  function renderSummary() {
    const box = $('wb-summary');
    if (!wb.stats) {
      box.replaceChildren(h('div', { class: 'wb-loading' }, h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }), h('span', { text: t('wb.loading') })));
      return;
    }
    const all = combine(Array.isArray(wb.stats.queues) ? wb.stats.queues : []);
    const tone = slTone(all.serviceLevel);
    box.replaceChildren(
      h('div', { class: 'wb-summary-title' }, icon('target'), h('span', { text: t('wb.all_queues') })),
      kpi(t('wb.waiting'), fmtInt(all.waiting), { key: 'waiting' }),
      kpi(t('wb.longest_wait'), fmtMs(all.longest), { key: 'longest', live: 'all' }),
      kpi(t('wb.service_level'), fmtPercent(all.serviceLevel), { key: 'sl', tone }),
      kpi(t('wb.asa'), fmtMs(all.asa), { key: 'asa', title: t('wb.asa_title') }),
      kpi(t('wb.abandon_rate'), fmtPercent(all.abandonRate, 1), { key: 'abandon', title: t('wb.abandon_rate_title') }),
      kpi(t('wb.answered'), fmtInt(all.answered), { key: 'answered', note: t('wb.offered') + ' ' + fmtInt(all.offered) }));
  }

  function metric(key, label, value, title) {
    return h('div', { class: 'wb-metric', dataset: { metric: key }, title: title || null },
      h('span', { class: 'wb-metric-label', text: label }),
      h('span', { class: 'wb-metric-value', text: value }));
  }

  function count(key, label, value) {
    return h('div', { class: 'wb-count', dataset: { count: key } },
      h('span', { class: 'wb-count-value', text: fmtInt(value) }),
      h('span', { class: 'wb-count-label', text: label }));
  }

  function renderTiles() {
    const box = $('wb-tiles');
    const names = allQueueNames();
    if (!names.length) {
      box.replaceChildren(h('div', { class: 'wb-empty' }, icon('inbox'), h('p', { text: wb.stats ? t('wb.no_queues') : t('wb.loading') })));
      return;
    }
    // Two columns up to four queues (a 2×2 board on a TV), then three, then four.
    box.style.setProperty('--cols', String(names.length <= 1 ? 1 : names.length <= 4 ? 2 : names.length <= 9 ? 3 : 4));
    box.replaceChildren(...names.map((name) => {
      const q = wb.queues.find((x) => x.name === name) || { name, display_name: name };
      const f = queueFigures(name);
      const tone = slTone(f.serviceLevel);
      const slPct = f.serviceLevel === null ? 0 : Math.round(f.serviceLevel * 100);
      const thresholdSecs = f.thresholdMs ? Math.round(f.thresholdMs / 1000) : null;
      const overdue = f.waiting > 0 && f.thresholdMs && f.longest > f.thresholdMs;
      const bar = h('span', { class: 'wb-sl-bar-fill' });
      bar.style.width = slPct + '%';
      const marker = h('span', { class: 'wb-sl-bar-target', 'aria-hidden': 'true' });
      marker.style.left = (SL_GOOD * 100) + '%';
      return h('article', {
        class: 'wb-tile tone-sl-' + tone + (f.waiting > 0 ? ' has-waiting' : '') + (overdue ? ' is-overdue' : ''),
        dataset: { queue: name },
      },
      h('header', { class: 'wb-tile-head' },
        h('div', { class: 'wb-tile-title' },
          h('h3', { class: 'wb-tile-name', text: q.display_name || q.name }),
          h('span', { class: 'wb-tile-sub mono', text: q.name })),
        h('div', { class: 'wb-channels' }, f.channels.map((c) =>
          h('span', { class: 'wb-channel' + (c.waiting > 0 ? ' is-waiting' : ''), dataset: { channel: c.channel }, title: t('wb.channel_waiting', { channel: tOr('channel.', c.channel), count: c.waiting }) },
            icon(c.channel), h('span', { text: fmtInt(c.waiting) }))))),
      h('div', { class: 'wb-tile-main' },
        h('div', { class: 'wb-big', dataset: { fig: 'waiting' } },
          h('span', { class: 'wb-big-label', text: t('wb.waiting') }),
          h('span', { class: 'wb-big-value', text: fmtInt(f.waiting) })),
        h('div', { class: 'wb-big', dataset: { fig: 'longest' } },
          h('span', { class: 'wb-big-label', text: t('wb.longest_wait') }),
          h('span', { class: 'wb-big-value mono', dataset: { live: name }, text: f.waiting > 0 ? fmtMs(f.longest) : dash })),
        h('div', { class: 'wb-big wb-sl', dataset: { fig: 'service_level' } },
          h('span', { class: 'wb-big-label', text: t('wb.service_level') }),
          h('span', { class: 'wb-big-value wb-sl-value', text: fmtPercent(f.serviceLevel) }),
          h('span', { class: 'wb-sl-bar', 'aria-hidden': 'true' }, bar, marker),
          h('span', { class: 'wb-sl-note', text: f.serviceLevel === null ? t('wb.sl_none') : (thresholdSecs !== null ? t('wb.sl_target', { secs: thresholdSecs }) : '') }))),
      h('div', { class: 'wb-metrics' },
        metric('asa', t('wb.asa'), fmtMs(f.asa), t('wb.asa_title')),
        metric('abandon_rate', t('wb.abandon_rate'), fmtPercent(f.abandonRate, 1), t('wb.abandon_rate_title')),
        metric('aht', t('wb.aht'), fmtMs(f.aht), t('wb.aht_title'))),
      h('footer', { class: 'wb-counts' },
        count('offered', t('wb.offered'), f.offered),
        count('answered', t('wb.answered'), f.answered),
        count('abandoned', t('wb.abandoned'), f.abandoned)));
    }));
  }

  function stateOf(a) {
    return (a.state && a.state.state) || 'logged_out';
  }

  function stateText(s) {
    if (!s) return t('state.logged_out');
    const base = tOr('state.', s.state);
    return s.state === 'not_ready' && s.reason ? t('state.with_reason', { state: base, reason: tOr('reason.', s.reason) }) : base;
  }

  function renderAgents() {
    const stats = wb.stats && wb.stats.agents;
    const list = [...wb.agents.values()];
    // Counts by state over the agents listed below (every agent and supervisor account, with
    // the live state the socket reports), so the counts and the list always agree. The hub's
    // agents_by_state counts only agents its engine has seen (never-connected accounts are left
    // out); it is the fallback before the list arrives.
    const byState = {};
    for (const s of STATE_ORDER) byState[s] = 0;
    if (list.length) {
      for (const a of list) byState[stateOf(a)] = (byState[stateOf(a)] || 0) + 1;
    } else if (stats && stats.agents_by_state) {
      for (const [k, v] of Object.entries(stats.agents_by_state)) byState[k] = +v || 0;
    }
    const occ = stats ? stats.occupancy : null;
    const occupancyById = new Map();
    for (const pair of (stats && Array.isArray(stats.agent_occupancy)) ? stats.agent_occupancy : []) {
      if (Array.isArray(pair)) occupancyById.set(pair[0], pair[1]);
    }
    const signedIn = list.filter((a) => stateOf(a) !== 'logged_out').length;
    $('wb-agents-count').textContent = tn('wb.logged_in', signedIn, { count: signedIn });

    const ring = h('div', { class: 'wb-occ', title: t('wb.occupancy_title'), dataset: { fig: 'occupancy' } },
      h('span', { class: 'wb-occ-value', text: fmtPercent(occ) }),
      h('span', { class: 'wb-occ-label', text: t('wb.occupancy') }));
    ring.style.setProperty('--occ', String(occ === null || occ === undefined ? 0 : Math.max(0, Math.min(1, occ))));
    $('wb-agent-summary').replaceChildren(
      ring,
      h('div', { class: 'wb-state-counts' }, STATE_ORDER.map((s) =>
        h('div', { class: 'wb-state-count st-' + s + (byState[s] ? '' : ' is-zero'), dataset: { state: s } },
          h('span', { class: 'wb-state-dot', 'aria-hidden': 'true' }),
          h('span', { class: 'wb-state-name', text: tOr('state.', s) }),
          h('span', { class: 'wb-state-num', text: fmtInt(byState[s]) })))));

    list.sort((a, b) => {
      const d = STATE_ORDER.indexOf(stateOf(a)) - STATE_ORDER.indexOf(stateOf(b));
      if (d) return d;
      return String(a.agent.display_name || a.agent.username).localeCompare(String(b.agent.display_name || b.agent.username), I18N.getLang());
    });
    const ul = $('wb-agent-list');
    if (!list.length) {
      ul.replaceChildren(h('li', { class: 'wb-empty wb-empty-sm' }, h('p', { text: t('wb.no_agents') })));
      return;
    }
    ul.replaceChildren(...list.map((a) => {
      const s = stateOf(a);
      const name = a.agent.display_name || a.agent.username || '';
      const o = occupancyById.has(a.agent.id) ? occupancyById.get(a.agent.id) : null;
      const occBar = h('span', { class: 'wb-agent-occ-fill' });
      occBar.style.width = (o === null || o === undefined ? 0 : Math.round(o * 100)) + '%';
      return h('li', { class: 'wb-agent st-' + s, dataset: { agentId: a.agent.id, username: a.agent.username || '', state: s } },
        h('span', { class: 'avatar avatar-sm', dataset: { hue: avatarHue(a.agent.username || name) }, 'aria-hidden': 'true', text: initials(name) }),
        h('span', { class: 'wb-agent-main' },
          h('span', { class: 'wb-agent-name', text: name }),
          h('span', { class: 'wb-agent-state' },
            h('span', { class: 'wb-state-dot', 'aria-hidden': 'true' }),
            h('span', { class: 'wb-agent-state-text', text: stateText(a.state) }))),
        h('span', { class: 'wb-agent-side' },
          // Time in state for agents at work; how long someone has been offline is no wallboard news.
          s === 'logged_out' ? null
            : h('span', { class: 'wb-agent-time mono', title: t('wb.time_in_state'), dataset: { since: (a.state && a.state.since) || '' } }),
          h('span', { class: 'wb-agent-occ', title: t('wb.occupancy') + ' ' + fmtPercent(o) }, occBar)));
    }));
    tick();
  }

  function renderAll() {
    document.title = t('app.title_wallboard');
    renderUser();
    renderConn();
    renderSummary();
    renderTiles();
    renderAgents();
  }

  /** Between frames: clocks run on (wall clock, longest waits, time in state). */
  function tick() {
    const now = new Date();
    $('wb-clock').textContent = new Intl.DateTimeFormat(I18N.getLang(), { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }).format(now);
    if (sock.status === 'reconnecting') renderConn();
    if (!wb.stats) return;
    for (const el of document.querySelectorAll('[data-live]')) {
      const name = el.dataset.live;
      const f = name === 'all' ? combine(wb.stats.queues || []) : queueFigures(name);
      el.textContent = f.waiting > 0 ? fmtMs(f.longest) : (name === 'all' ? fmtMs(0) : dash);
      const tile = el.closest('.wb-tile');
      if (tile) tile.classList.toggle('is-overdue', !!(f.waiting > 0 && f.thresholdMs && f.longest > f.thresholdMs));
    }
    const sNow = serverNow();
    for (const el of document.querySelectorAll('.wb-agent-time')) {
      const since = parseDate(el.dataset.since);
      el.textContent = since ? formatDuration(sNow - since.getTime()) : '';
    }
  }

  // ------------------------------------------------------------------ language

  const language = S.languageControl({
    title: () => t('app.title_wallboard'),
    rerender: () => {
      renderAll();
      tick();
    },
  });

  // ------------------------------------------------------------------ boot

  async function boot() {
    document.documentElement.lang = I18N.getLang();
    const me = await getMe();
    if (me.status === 401 || (me.status === 200 && !me.user)) return leave('login');
    if (me.user && !ROLES_ALLOWED.includes(me.user.role)) return leave('forbidden');
    // Any other failure (hub restarting, network): show the board and let the socket retry.
    wb.user = me.user || null;
    S.decorateStaticIcons(icon);
    language.fill();
    language.apply();
    $('boot').hidden = true;
    $('wallboard').hidden = false;
    renderAll();
    setInterval(tick, 500);
    tick();
    sock.start();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
