// The Agora operator console. Plain JavaScript, no dependencies. Every value from the
// node reaches the page through textContent or setAttribute, never as markup.
(function () {
  'use strict';

  const TOKEN_KEY = 'agora-admin-token';
  const CLUSTER_EVERY_MS = 5000;
  const DEAD_LETTERS_EVERY_MS = 10000;
  const METRICS_EVERY_MS = 2000;
  const OPERATIONS_EVERY_MS = 3000;
  const OPERATION_POLL_MS = 500;
  const CHART_POINTS = 60;
  const TERMINAL = ['DELIVERED', 'CANCELLED', 'EXPIRED', 'REFUNDED'];
  const FAILED = ['PAYMENT_FAILED', 'CANCELLED', 'EXPIRED', 'RETURNED', 'REFUND_PENDING', 'REFUNDED'];

  const byId = (id) => document.getElementById(id);
  const session = { token: null, settings: null, timers: [] };

  // ---- DOM helpers -------------------------------------------------------------------

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** An SVG element with attributes. */
  function svg(tag, attrs) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function setStatus(text, isError) {
    const status = byId('status');
    status.textContent = text;
    status.className = isError ? 'error' : '';
  }

  /** A timestamp for display: the admin API's RFC 3339 strings as they come, and the ms
   *  since the epoch an entity's state holds (a saga's history) in the same form. */
  function time(at) {
    if (typeof at === 'string') return at;
    return typeof at === 'number' ? new Date(at).toISOString() : '';
  }

  // ---- the token and the admin API ---------------------------------------------------

  /** Reads `#token=..&kind=..&id=..`; keeps the token in session storage, off the URL. */
  function readFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    const token = params.get('token');
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      params.delete('token');
      const rest = params.toString();
      history.replaceState(null, '', location.pathname + (rest ? '#' + rest : ''));
    }
    return { kind: params.get('kind'), id: params.get('id') };
  }

  /** Calls an admin route with the token; answers `{status, body}` (body parsed as JSON). */
  async function api(path, init) {
    const options = Object.assign({}, init || {});
    options.headers = Object.assign({ Authorization: 'Bearer ' + session.token }, options.headers || {});
    const resp = await fetch(path, options);
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (resp.status === 401) {
      forgetToken('the token was refused');
    }
    return { status: resp.status, body: body };
  }

  function problemText(r) {
    const b = r.body || {};
    return 'HTTP ' + r.status + (b.title ? ': ' + b.title : '') + (b.detail ? ' (' + b.detail + ')' : '');
  }

  function forgetToken(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    session.token = null;
    session.timers.forEach(clearInterval);
    session.timers = [];
    byId('app').hidden = true;
    byId('logout').hidden = true;
    byId('login').hidden = false;
    if (why) setStatus(why, true);
  }

  // ---- cluster map -------------------------------------------------------------------

  async function loadCluster() {
    const [members, shards, replicas] = await Promise.all([
      api('/admin/cluster/members'),
      api('/admin/cluster/shards'),
      api('/admin/cluster/replicas'),
    ]);
    if (members.status !== 200 || shards.status !== 200) {
      setStatus('cluster: ' + problemText(members.status !== 200 ? members : shards), true);
      return;
    }
    // 409: this cluster's shards are not replicated (replication_factor 1).
    const replicaView = replicas.status === 200 ? replicas.body : null;
    renderMembers(members.body, replicaView);
    renderShards(shards.body, replicaView);
    byId('app').setAttribute('data-state', 'ready');
    setStatus('updated ' + new Date().toLocaleTimeString(), false);
  }

  function renderMembers(view, replicas) {
    const body = byId('members-body');
    const removed = new Set((replicas && replicas.removed) || []);
    const rows = (view.members || []).map((m) => {
      const status = removed.has(m.id) ? 'removed' : m.status;
      const actions = el('td', {});
      if (session.settings && session.settings.mutations && replicas && !removed.has(m.id)) {
        const remove = el('button', { type: 'button', class: 'danger' }, 'Remove');
        remove.addEventListener('click', () => removeNode(m.id));
        actions.append(remove);
      }
      return el('tr', { 'data-node': m.id, 'data-status': status },
        el('td', {}, 'node ' + m.id + (m.id === view.me ? ' (this node)' : '')),
        el('td', { class: status }, status),
        el('td', {}, m.shards),
        el('td', {}, m.entities === null || m.entities === undefined ? '' : m.entities),
        el('td', {}, m.http_addr || ''),
        el('td', {}, m.cluster_addr || ''),
        actions);
    });
    body.replaceChildren(...rows);
    byId('node-name').textContent = 'node ' + view.me;
  }

  /** Per shard, what this node knows of its replicas: placement, group, rebuild. */
  function replicaInfo(replicas) {
    const info = new Map();
    if (!replicas) return info;
    const at = (shard) => {
      if (!info.has(shard)) info.set(shard, {});
      return info.get(shard);
    };
    (replicas.placement || []).forEach((nodes, shard) => { at(shard).placed = nodes; });
    (replicas.groups || []).forEach((g) => { Object.assign(at(g.shard), { group: g }); });
    (replicas.rebuilding || []).forEach((shard) => { at(shard).rebuilding = true; });
    (replicas.received || []).forEach((r) => { at(r.shard).received = r.received; });
    return info;
  }

  function renderShards(view, replicas) {
    const info = replicaInfo(replicas);
    const cells = (view.shards || []).map((s) => {
      const extra = info.get(s.shard) || {};
      const leader = extra.group ? extra.group.leader : null;
      const moving = extra.rebuilding || (extra.group && extra.group.learners.length > 0);
      // Where the replicas should be (agreed placement), else where they are (the voters).
      const holders = extra.placed || (extra.group ? extra.group.voters : null);
      const cell = el('div', {
        class: 'shard ' + s.status + (moving ? ' moving' : ''),
        'data-shard': s.shard,
        'data-owner': s.owner,
        'data-status': s.status,
        'data-leader': leader,
        'data-replicas': holders ? holders.join(',') : null,
        title: 'shard ' + s.shard + ': ' + s.status,
      },
      el('span', { class: 'shard-id' }, '#' + s.shard),
      el('span', { class: 'shard-owner' }, 'owner node ' + s.owner),
      leader !== null && leader !== undefined ? el('span', { class: 'shard-replicas' }, 'leader node ' + leader) : null,
      holders ? el('span', { class: 'shard-replicas' }, 'replicas ' + holders.join(', ')) : null,
      extra.group && extra.group.learners.length ? el('span', { class: 'shard-replicas' }, 'joining ' + extra.group.learners.join(', ')) : null,
      extra.rebuilding ? rebuildProgress(extra.received) : null,
      s.entities === null || s.entities === undefined ? null : el('span', { class: 'shard-replicas' }, s.entities + ' active'));
      return cell;
    });
    byId('shard-grid').replaceChildren(...cells);
    const raft = view.raft ? ', map group leader node ' + view.raft.leader + ', term ' + view.raft.term : '';
    byId('map-summary').textContent = (view.shards || []).length + ' shards, map epoch ' + view.epoch + raft;
    byId('replica-summary').textContent = replicas
      ? 'Replicated (placement version ' + replicas.version + '): this node holds ' +
        replicas.progress.settled + ' of ' + replicas.progress.placed + ' placed replicas, ' +
        replicas.progress.leaving + ' leaving, ' + (replicas.rebuilding || []).length + ' rebuilding.'
      : 'Shards are not replicated: each lives on its owner only.';
  }

  function rebuildProgress(received) {
    const r = received || {};
    const text = 'rebuilding: ' + (r.snapshot_bytes || 0) + ' B snapshot' +
      (r.snapshot_done ? ' (complete)' : '') + ', ' + (r.log_bytes || 0) + ' B log';
    return el('span', { class: 'shard-replicas' }, text);
  }

  // ---- entity inspector --------------------------------------------------------------

  async function inspect(kind, id) {
    const out = byId('entity');
    out.replaceChildren(el('p', { class: 'note' }, 'loading ' + kind + ' ' + id + '…'));
    const r = await api('/admin/entities/' + encodeURIComponent(kind) + '/' + encodeURIComponent(id));
    if (r.status === 421 && r.body) {
      out.replaceChildren(el('p', {}, 'Stored on node ' + r.body.owner + ', not this one: open the console on its admin port (' +
        (r.body.owner_admin_addr || 'unknown address') + ').'));
      return;
    }
    if (r.status !== 200) {
      out.replaceChildren(el('p', { class: 'error' }, problemText(r)));
      return;
    }
    const e = r.body;
    const fields = [['kind', e.kind], ['id', e.id], ['shard', e.shard], ['owner', 'node ' + e.owner],
      ['sequence', e.seq], ['epoch', e.epoch], ['written', time(e.written_at)], ['format', e.format]];
    const record = el('dl', { class: 'record', id: 'entity-record' });
    fields.forEach(([name, value]) => record.append(el('dt', {}, name), el('dd', { 'data-field': name }, value)));
    const parts = [record];
    const order = e.state && e.state.Order;
    if (e.kind === 'order' && order) parts.push(timeline(order.history || []));
    const messages = (e.applied_messages || []).map((m) => el('li', {}, time(m.at) + '  ' + m.msg_id));
    parts.push(el('h3', {}, 'Applied messages (latest ' + messages.length + ')'), el('ol', { id: 'applied' }, ...messages));
    parts.push(el('h3', {}, 'State'), el('pre', { id: 'entity-state' }, JSON.stringify(e.state, null, 2)));
    out.replaceChildren(...parts);
  }

  /** `StockReserved` → `STOCK_RESERVED`: the stored variant as the shop API names it. */
  function apiStatus(variant) {
    return String(variant).replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
  }

  /** An order's saga: its statuses in the order it went through them, with times. */
  function timeline(history) {
    const steps = history.map(([variant, atMs], i) => {
      const status = apiStatus(variant);
      const since = i > 0 ? ' (+' + (atMs - history[i - 1][1]) + ' ms)' : '';
      const cls = 'step' + (TERMINAL.includes(status) ? ' terminal' : '') + (FAILED.includes(status) ? ' failed' : '');
      return el('li', { class: cls, 'data-status': status },
        el('span', { class: 'step-status' }, status),
        el('span', { class: 'step-at' }, time(atMs) + since));
    });
    const wrap = el('div', {}, el('h3', {}, 'Saga timeline'));
    wrap.append(el('ol', { class: 'timeline', id: 'timeline' }, ...steps));
    return wrap;
  }

  // ---- dead letters ------------------------------------------------------------------

  async function loadDeadLetters() {
    const r = await api('/admin/dead-letters');
    if (r.status !== 200) return;
    const rows = (r.body.items || []).map((d) => el('tr', { 'data-msg': d.msg_id, 'data-dead-letter': d.id },
      el('td', {}, time(d.at)), el('td', {}, d.topic), el('td', {}, d.msg_id),
      el('td', {}, d.from), el('td', {}, d.to), el('td', {}, d.reason), deadLetterActions(d)));
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 6, class: 'note' }, 'none')));
    byId('dead-letters-body').replaceChildren(...rows);
  }

  /** Replay and Discard buttons for dead letter `d`, when mutations are enabled. */
  function deadLetterActions(d) {
    const cell = el('td', {});
    if (!(session.settings && session.settings.mutations)) return cell;
    const replay = el('button', { type: 'button', 'data-replay': d.id }, 'Replay');
    replay.addEventListener('click', () => replayDeadLetter(d));
    const discard = el('button', { type: 'button', class: 'danger', 'data-discard': d.id }, 'Discard');
    discard.addEventListener('click', async () => {
      if (!window.confirm('Discard dead letter ' + d.msg_id + ' (' + d.topic + ') for good?')) return;
      const r = await api('/admin/dead-letters/' + encodeURIComponent(d.id), { method: 'DELETE' });
      if (r.status !== 204) logOp('discard ' + d.msg_id + ': ' + problemText(r), true);
      loadDeadLetters();
    });
    cell.append(replay, ' ', discard);
    return cell;
  }

  /** Delivers dead letter `d`'s message to its receiver again (after a confirmation); the
   *  node removes it once the receiver takes it, and keeps it if refused or unreachable. */
  async function replayDeadLetter(d) {
    const what = 'replay ' + d.msg_id + ' (' + d.topic + ')';
    if (!window.confirm('Replay dead letter ' + d.msg_id + ' (' + d.topic + ') to its receiver? '
      + 'A message that took effect already is not taken twice.')) return;
    const r = await api('/admin/dead-letters/' + encodeURIComponent(d.id) + '/replay', { method: 'POST' });
    if (r.status === 204) logOp(what + ': delivered', false);
    else logOp(what + ': kept, ' + problemText(r), true);
    loadDeadLetters();
  }

  // ---- live charts -------------------------------------------------------------------

  const charts = [
    { key: 'throughput', title: 'Shop API throughput', unit: 'req/s' },
    { key: 'p99', title: 'Shop API p99 latency', unit: 'ms' },
    { key: 'commit', title: 'Store commit p99 latency', unit: 'ms' },
    { key: 'backlog', title: 'Outbox backlog', unit: 'messages' },
  ];
  const series = Object.fromEntries(charts.map((c) => [c.key, []]));
  let previous = null;

  /** Sums of the samples of interest in a Prometheus text exposition. */
  function parseMetrics(text) {
    const out = { requests: 0, backlog: 0, http: new Map(), commit: new Map(), at: Date.now() };
    const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/;
    for (const raw of text.split('\n')) {
      const m = line.exec(raw);
      if (!m) continue;
      const value = Number(m[3]);
      if (!Number.isFinite(value)) continue;
      const le = m[2] && /le="([^"]*)"/.exec(m[2]);
      if (m[1] === 'agora_http_request_seconds_count') out.requests += value;
      else if (m[1] === 'agora_outbox_backlog') out.backlog += value;
      else if (m[1] === 'agora_http_request_seconds_bucket' && le) addTo(out.http, le[1], value);
      else if (m[1] === 'agora_store_commit_seconds_bucket' && le) addTo(out.commit, le[1], value);
    }
    return out;
  }

  function addTo(map, key, value) {
    map.set(key, (map.get(key) || 0) + value);
  }

  /** The 0.99 quantile, in ms, of what a histogram's buckets gained between two scrapes. */
  function p99(now, before) {
    const bounds = [...now.keys()].map((le) => [le === '+Inf' ? Infinity : Number(le), le]).sort((a, b) => a[0] - b[0]);
    const counts = bounds.map(([bound, le]) => [bound, (now.get(le) || 0) - ((before && before.get(le)) || 0)]);
    const total = counts.length ? counts[counts.length - 1][1] : 0;
    if (total <= 0) return 0;
    const rank = 0.99 * total;
    let lower = 0;
    let below = 0;
    for (const [bound, count] of counts) {
      if (count >= rank) {
        if (bound === Infinity) return lower * 1000;
        const within = count - below;
        return (lower + (bound - lower) * (within > 0 ? (rank - below) / within : 1)) * 1000;
      }
      lower = bound;
      below = count;
    }
    return lower * 1000;
  }

  async function pollMetrics() {
    const resp = await fetch('/metrics');
    if (!resp.ok) return;
    const now = parseMetrics(await resp.text());
    if (previous) {
      const seconds = Math.max((now.at - previous.at) / 1000, 0.001);
      push('throughput', Math.max(now.requests - previous.requests, 0) / seconds);
      push('p99', p99(now.http, previous.http));
      push('commit', p99(now.commit, previous.commit));
    }
    push('backlog', now.backlog);
    previous = now;
    drawCharts();
  }

  function push(key, value) {
    const s = series[key];
    s.push(value);
    if (s.length > CHART_POINTS) s.shift();
  }

  function drawCharts() {
    const list = byId('chart-list');
    list.replaceChildren(...charts.map((c) => chart(c, series[c.key])));
  }

  /** A small line chart: the last CHART_POINTS samples, scaled to their maximum. */
  function chart(c, values) {
    const width = 300;
    const height = 80;
    const max = Math.max(...values, 1e-9);
    const step = width / (CHART_POINTS - 1);
    const points = values.map((v, i) => (i * step).toFixed(1) + ',' + (height - 4 - (v / max) * (height - 8)).toFixed(1));
    const picture = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, preserveAspectRatio: 'none', role: 'img' });
    picture.append(svg('polyline', { points: points.join(' ') }));
    const last = values.length ? values[values.length - 1] : 0;
    return el('div', { class: 'chart', 'data-chart': c.key },
      el('h3', {}, c.title + ': ', el('span', { class: 'value' }, last.toFixed(c.key === 'backlog' ? 0 : 2) + ' ' + c.unit),
        el('span', { class: 'note' }, ' (max ' + max.toFixed(2) + ')')),
      picture);
  }

  // ---- operations (only with admin_mutations = true) ---------------------------------

  function logOp(text, isError) {
    const entry = el('li', { class: isError ? 'error' : '' }, new Date().toLocaleTimeString() + ' ' + text);
    byId('op-log').prepend(entry);
    return entry;
  }

  /** What an operation acts on, in words. */
  function opTarget(op) {
    if (op.kind === 'move') return 'shard ' + op.shard + ' to node ' + op.to;
    return 'node ' + op.node;
  }

  /** A progress bar and "k of N shards" for an operation. */
  function opProgress(op) {
    const p = op.progress || { done: 0, total: 0, unit: '' };
    const bar = el('progress', { max: Math.max(p.total, 1), value: p.total > 0 ? p.done : (op.state === 'running' ? 0 : 1) });
    return el('span', { class: 'op-progress' }, bar, ' ', p.done + ' of ' + p.total + ' ' + p.unit);
  }

  /** How an operation ended: its result, or why it failed. */
  function opOutcome(op) {
    if (op.state === 'failed' && op.problem) return op.problem.title + ': ' + op.problem.detail;
    if (op.state === 'succeeded' && op.result) return JSON.stringify(op.result);
    return '';
  }

  function opRow(op) {
    return el('tr', { 'data-operation': op.id, 'data-kind': op.kind, 'data-state': op.state },
      el('td', {}, op.kind), el('td', {}, opTarget(op)),
      el('td', { class: 'op-' + op.state }, op.state),
      el('td', {}, opProgress(op)), el('td', {}, time(op.started_at)),
      el('td', {}, opOutcome(op)));
  }

  async function loadOperations() {
    const r = await api('/admin/operations');
    if (r.status !== 200) return;
    const rows = (r.body.items || []).map(opRow);
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 6, class: 'note' }, 'none')));
    byId('operations-body').replaceChildren(...rows);
  }

  /** Shows operation `op` in the log `entry`, and follows it until it ends. */
  function follow(what, op, entry) {
    entry.replaceChildren(new Date().toLocaleTimeString() + ' ' + what + ': ' + op.state + ' ', opProgress(op),
      op.state === 'running' ? '' : ' ' + opOutcome(op));
    entry.className = op.state === 'failed' ? 'error' : '';
    entry.setAttribute('data-operation', op.id);
    loadOperations();
    if (op.state !== 'running') {
      loadCluster();
      return;
    }
    setTimeout(async () => {
      const r = await api('/admin/operations/' + encodeURIComponent(op.id));
      if (r.status === 200) follow(what, r.body, entry);
      else entry.textContent = what + ': ' + problemText(r);
    }, OPERATION_POLL_MS);
  }

  async function operate(what, path, body) {
    if (!window.confirm(what + '?')) return;
    const entry = logOp(what + ': asking…', false);
    const r = await api(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 202 && r.body && r.body.id) {
      follow(what, r.body, entry);
      return;
    }
    const ok = r.status >= 200 && r.status < 300;
    entry.textContent = new Date().toLocaleTimeString() + ' ' + what + ': ' +
      (ok ? 'HTTP ' + r.status + ' ' + JSON.stringify(r.body) : problemText(r));
    entry.className = ok ? '' : 'error';
    loadCluster();
  }

  function removeNode(id) {
    operate('Remove node ' + id + ' for good (its replicas are rebuilt elsewhere)',
      '/admin/cluster/members/' + encodeURIComponent(id) + '/remove');
  }

  function wireOperations() {
    byId('operations').hidden = false;
    byId('move-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const shard = Number(byId('move-shard').value);
      const to = Number(byId('move-to').value);
      const what = session.settings.replicated ? 'Move the lead of shard ' : 'Move shard ';
      operate(what + shard + ' to node ' + to, '/admin/shards/' + shard + '/move', { to: to });
    });
    // Replicated shards move their lead, not their data; a replicated node is not drained
    // (the endpoint answers 409: stop it with SIGTERM, or remove it).
    if (session.settings.replicated) {
      byId('move-button').textContent = 'Move lead';
      byId('drain').hidden = true;
    }
    byId('drain').addEventListener('click', () => {
      const me = session.settings.me;
      operate('Drain node ' + me + ' (its shards move to the other nodes)',
        '/admin/cluster/members/' + encodeURIComponent(me) + '/drain');
    });
  }

  // ---- start -------------------------------------------------------------------------

  function every(ms, f) {
    const run = () => f().catch((e) => setStatus(String(e), true));
    run();
    session.timers.push(setInterval(run, ms));
  }

  async function start(wanted) {
    byId('login').hidden = true;
    byId('app').hidden = false;
    byId('logout').hidden = false;
    const settings = await api('/admin/console/settings');
    if (settings.status !== 200) {
      if (session.token) setStatus('settings: ' + problemText(settings), true);
      return;
    }
    session.settings = settings.body;
    if (session.settings.mutations) wireOperations();
    every(CLUSTER_EVERY_MS, loadCluster);
    every(DEAD_LETTERS_EVERY_MS, loadDeadLetters);
    every(OPERATIONS_EVERY_MS, loadOperations);
    every(METRICS_EVERY_MS, pollMetrics);
    if (wanted.kind && wanted.id) {
      byId('inspect-kind').value = wanted.kind;
      byId('inspect-id').value = wanted.id;
      await inspect(wanted.kind, wanted.id);
    }
  }

  function init() {
    const wanted = readFragment();
    session.token = sessionStorage.getItem(TOKEN_KEY);
    byId('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      session.token = byId('token-input').value;
      sessionStorage.setItem(TOKEN_KEY, session.token);
      byId('token-input').value = '';
      start({}).catch((e) => setStatus(String(e), true));
    });
    byId('logout').addEventListener('click', () => forgetToken('token forgotten'));
    byId('inspect-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      inspect(byId('inspect-kind').value, byId('inspect-id').value.trim()).catch((e) => setStatus(String(e), true));
    });
    if (session.token) {
      start(wanted).catch((e) => setStatus(String(e), true));
    } else {
      byId('login').hidden = false;
    }
  }

  init();
}());
