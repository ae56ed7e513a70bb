// meshd dashboard. Plain JavaScript, no build step. Every value shown comes
// from the admin API and is untrusted (event data, sinks' error texts): it
// is set with textContent (el() below), never parsed as HTML.
'use strict';

const TOKEN_KEY = 'meshd-admin-token';
const POLL_MS = 1000;
const HISTORY_S = 300; // seconds kept for the charts

const state = {
  polling: false,
  timer: 0,
  prev: null, // the previous overview, for rates
  series: { published: [], delivered: [] }, // [{t, v}] totals per second
  topicSeries: new Map(), // topic -> [{t, v}]
  counters: new Map(), // key -> [{t, v}] raw counters, for rates
  dlTopic: '',
};

// ---- DOM helpers: text only ----

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'testid') e.setAttribute('data-testid', v);
    else if (k === 'title') e.title = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else if (k === 'type' || k === 'checked' || k === 'disabled' || k === 'value') e[k] = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function $(id) { return document.getElementById(id); }

function setRows(tableId, rows) {
  const tbody = $(tableId).tBodies[0];
  tbody.replaceChildren(...rows);
  if (rows.length === 0) {
    const cols = $(tableId).tHead.rows[0].cells.length;
    tbody.append(el('tr', {}, el('td', { class: 'muted', colspan: cols }, 'none')));
  }
}

function stateSpan(s) {
  return el('span', { class: 'state-' + String(s).replace(/[^A-Za-z-]/g, '-') }, s);
}

function fmtNum(n) {
  if (n === undefined || n === null) return '';
  if (n >= 1e9) return (n / 1e9).toFixed(1) + ' G';
  if (n >= 1e6) return (n / 1e6).toFixed(1) + ' M';
  if (n >= 1e4) return (n / 1e3).toFixed(1) + ' k';
  return String(Math.round(n));
}

function fmtBytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + u[i];
}

function fmtRate(r) { return (r || 0).toFixed(r >= 100 ? 0 : 1); }

function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? '' : d.toLocaleString();
}

function firstLine(s) { return String(s || '').split('\n')[0]; }

// ---- the API ----

class AuthError extends Error {}

async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {
    method, headers, cache: 'no-store', credentials: 'omit',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401) {
    showLogin(token ? 'That admin token was refused.' : '');
    throw new AuthError('admin token required');
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!resp.ok) {
    throw new Error((data && (data.detail || data.title)) || (resp.status + ' ' + resp.statusText));
  }
  return data;
}

const seg = encodeURIComponent;

function showLogin(message) {
  stopPolling();
  $('login').hidden = false;
  $('main').hidden = true;
  $('login-error').textContent = message || '';
  $('token').focus();
}

function hideLogin() {
  $('login').hidden = true;
  $('main').hidden = false;
}

function showProblem(err) {
  const p = $('problem');
  if (!err) { p.hidden = true; p.textContent = ''; return; }
  p.hidden = false;
  p.textContent = String(err.message || err);
}

// ---- rates, computed here from the counters of successive snapshots ----

function pushPoint(arr, t, v) {
  arr.push({ t, v });
  while (arr.length && t - arr[0].t > HISTORY_S * 1000) arr.shift();
}

// rateOf keeps the raw counter of key and returns its rate over the last
// few seconds.
function rateOf(key, t, value) {
  let arr = state.counters.get(key);
  if (!arr) { arr = []; state.counters.set(key, arr); }
  pushPoint(arr, t, value);
  while (arr.length > 6) arr.shift();
  if (arr.length < 2) return 0;
  const a = arr[0], b = arr[arr.length - 1];
  const dt = (b.t - a.t) / 1000;
  return dt > 0 ? Math.max(0, b.v - a.v) / dt : 0;
}

function drawLine(svg, points, w, h) {
  svg.replaceChildren();
  if (points.length < 2) return;
  const now = points[points.length - 1].t;
  const max = Math.max(1, ...points.map((p) => p.v));
  const coords = points.map((p) => {
    const x = w - ((now - p.t) / (HISTORY_S * 1000)) * w;
    const y = h - (p.v / max) * (h - 2) - 1;
    return x.toFixed(1) + ',' + y.toFixed(1);
  });
  svg.append(svgEl('polyline', { points: coords.join(' ') }));
}

function sparkline(points) {
  const svg = svgEl('svg', { class: 'spark', viewBox: '0 0 120 20', preserveAspectRatio: 'none' });
  drawLine(svg, points, 120, 20);
  return svg;
}

// ---- rendering ----

function render(o) {
  const t = Date.parse(o.time) || Date.now();
  $('app').textContent = 'app ' + o.app + ' · ' + o.version;
  const h = $('health');
  h.textContent = 'mesh ' + o.health.status;
  h.className = 'badge state-' + o.health.status.replace(' ', '-');
  $('updated').textContent = 'updated ' + new Date(t).toLocaleTimeString();
  showProblem(o.errors && o.errors.length ? { message: o.errors.join('\n') } : null);

  let totalPub = 0, totalDel = 0;
  const topicRate = new Map();
  for (const tp of o.topics) {
    const r = rateOf('topic/' + tp.name, t, tp.published);
    topicRate.set(tp.name, r);
    totalPub += r;
    let s = state.topicSeries.get(tp.name);
    if (!s) { s = []; state.topicSeries.set(tp.name, s); }
    pushPoint(s, t, r);
  }
  const subRate = new Map();
  for (const s of o.subscriptions) {
    const r = rateOf('sub/' + s.id, t, s.delivered);
    subRate.set(s.id, r);
    totalDel += r;
  }
  const connRate = new Map();
  for (const c of o.connectors) {
    const r = rateOf('conn/' + c.name, t, c.type === 'source' ? c.published : c.delivered);
    connRate.set(c.name, r);
    if (c.type !== 'source') totalDel += r;
  }
  pushPoint(state.series.published, t, totalPub);
  pushPoint(state.series.delivered, t, totalDel);
  $('rate-published').textContent = fmtRate(totalPub);
  $('rate-delivered').textContent = fmtRate(totalDel);
  drawLine($('chart-published'), state.series.published, 300, 60);
  drawLine($('chart-delivered'), state.series.delivered, 300, 60);

  renderTopics(o, topicRate);
  renderSubscriptions(o, subRate);
  renderConnectors(o, connRate);
  renderMQTT(o);
  renderDeadLetters(o);
  renderFlow(o, topicRate, subRate, connRate);
}

function renderTopics(o, rates) {
  setRows('topics', o.topics.map((tp) => el('tr', { testid: 'topic-' + tp.name },
    el('td', {}, tp.name),
    el('td', { class: 'num' }, fmtNum(tp.events)),
    el('td', { class: 'num' }, fmtBytes(tp.bytes)),
    el('td', {}, fmtTime(tp.first)),
    el('td', {}, fmtTime(tp.last)),
    el('td', { class: 'num', testid: 'rate-' + tp.name }, fmtRate(rates.get(tp.name))),
    el('td', {}, sparkline(state.topicSeries.get(tp.name) || [])),
  )));
}

function renderSubscriptions(o, rates) {
  setRows('subscriptions', o.subscriptions.map((s) => {
    const paused = s.state === 'PAUSED';
    const action = el('button', {
      type: 'button', testid: (paused ? 'resume-' : 'pause-') + s.id,
      onclick: () => act(
        (paused ? 'Resume' : 'Pause') + ' subscription "' + s.id + '"?' +
          (paused ? '' : '\nIt delivers nothing until resumed; its group keeps its position.'),
        'PUT', '/v1/subscriptions/' + seg(s.id) + (paused ? '/resume' : '/pause')),
    }, paused ? 'Resume' : 'Pause');
    return el('tr', { testid: 'sub-' + s.id },
      el('td', {}, s.id),
      el('td', {}, s.topic),
      el('td', {}, s.sink),
      el('td', { testid: 'state-' + s.id }, stateSpan(s.state)),
      el('td', { class: 'num', testid: 'backlog-' + s.id, title: 'pending ' + s.pending + ' + unacked ' + s.unacked }, fmtNum(s.backlog)),
      el('td', { class: 'num' }, fmtNum(s.redeliveries)),
      el('td', { class: 'num' }, fmtRate(rates.get(s.id))),
      el('td', { class: 'num' }, fmtNum(s.deadLettered), s.deadLetterTopic ? el('small', { class: 'muted' }, ' → ' + s.deadLetterTopic) : null),
      el('td', { class: 'err', title: s.lastErrorAt ? fmtTime(s.lastErrorAt) : undefined }, s.lastError || s.groupError || ''),
      el('td', {}, action),
    );
  }));
}

function lastConnectorError(c) {
  if (c.lastError) return c.lastError;
  if (c.connector && c.connector.trace) return firstLine(c.connector.trace);
  for (const tk of c.tasks || []) if (tk.trace) return 'task ' + tk.id + ': ' + firstLine(tk.trace);
  return '';
}

function renderConnectors(o, rates) {
  setRows('connectors', o.connectors.map((c) => {
    const st = c.connector.state;
    const running = st === 'RUNNING';
    const tasks = el('div', {});
    for (const tk of c.tasks || []) {
      tasks.append(el('div', {},
        tk.id + ': ', stateSpan(tk.state),
        tk.worker_id ? el('small', { class: 'muted' }, ' on ' + tk.worker_id) : null,
        tk.restarts ? el('small', { class: 'muted' }, ' · ' + tk.restarts + ' restarts') : null, ' ',
        running ? el('button', {
          type: 'button', testid: 'restart-' + c.name + '-' + tk.id,
          onclick: () => act('Restart task ' + tk.id + ' of connector "' + c.name + '"?', 'POST',
            '/v1/connectors/' + seg(c.name) + '/tasks/' + tk.id + '/restart'),
        }, 'Restart') : null));
    }
    const offsets = el('div', {});
    for (const off of (c.offsets || []).slice(0, 5)) offsets.append(el('div', { class: 'data' }, off.partition + ' = ' + off.offset));
    if ((c.offsets || []).length > 5) offsets.append(el('div', { class: 'muted' }, '… ' + (c.offsets.length - 5) + ' more'));
    const paused = st === 'PAUSED' || st === 'STOPPED';
    return el('tr', { testid: 'conn-' + c.name },
      el('td', {}, c.name),
      el('td', {}, (c.plugin || '') + ' (' + (c.type || '') + ')'),
      el('td', {}, stateSpan(c.holding ? 'HOLDING' : st)),
      el('td', {}, tasks),
      el('td', {}, offsets),
      el('td', { class: 'num' }, fmtRate(rates.get(c.name))),
      el('td', { class: 'num' }, fmtNum(c.deadLettered), c.deadLetterTopic ? el('small', { class: 'muted' }, ' → ' + c.deadLetterTopic) : null),
      el('td', { class: 'err' }, lastConnectorError(c)),
      el('td', {}, el('button', {
        type: 'button', testid: (paused ? 'resume-conn-' : 'pause-conn-') + c.name,
        onclick: () => act((paused ? 'Resume' : 'Pause') + ' connector "' + c.name + '"?', 'PUT',
          '/v1/connectors/' + seg(c.name) + (paused ? '/resume' : '/pause')),
      }, paused ? 'Resume' : 'Pause')),
    );
  }));
}

function renderMQTT(o) {
  setRows('mqtt', o.mqtt.map((m) => el('tr', { testid: 'mqtt-' + m.name },
    el('td', {}, m.name),
    el('td', {}, m.broker),
    el('td', {}, stateSpan(m.connected ? 'connected' : 'disconnected')),
    el('td', {}, ...m.inbound.map((r) => el('div', {}, r.mqtt + ' → ' + r.topic))),
    el('td', {}, ...m.outbound.map((r) => el('div', {}, r.topic + ' → ' + r.mqtt))),
  )));
}

function renderDeadLetters(o) {
  setRows('deadletters', o.deadLetters.map((d) => el('tr', { testid: 'dl-' + d.topic },
    el('td', {}, d.topic),
    el('td', { class: 'num', testid: 'dlcount-' + d.topic }, fmtNum(d.events)),
    el('td', {}, d.writers.join(', ')),
    el('td', {}, el('button', { type: 'button', testid: 'show-dl-' + d.topic, onclick: () => openDeadLetters(d.topic) }, 'Show')),
  )));
}

// ---- the flow view: publishers → topics → subscriptions and sinks ----

function renderFlow(o, topicRate, subRate, connRate) {
  const cols = { in: $('flow-in'), topics: $('flow-topics'), out: $('flow-out') };
  for (const c of Object.values(cols)) c.replaceChildren(c.firstElementChild);
  const nodes = new Map();
  const edges = [];
  const node = (col, key, title, sub, cls) => {
    if (nodes.has(key)) return;
    const n = el('div', { class: 'node ' + (cls || '') }, title, sub ? el('small', {}, sub) : null);
    cols[col].append(n);
    nodes.set(key, n);
  };
  const topic = (name) => node('topics', 't:' + name, name, fmtRate(topicRate.get(name)) + ' ev/s', '');
  const fed = new Set();
  for (const c of o.connectors) {
    if (c.type !== 'source') continue;
    node('in', 'c:' + c.name, c.name, (c.plugin || 'source') + ' · ' + c.connector.state, c.connector.state === 'FAILED' ? 'bad' : '');
    for (const tp of c.topics) { topic(tp); fed.add(tp); edges.push(['c:' + c.name, 't:' + tp, false]); }
  }
  for (const m of o.mqtt) {
    for (const r of m.inbound) {
      node('in', 'mi:' + m.name, 'mqtt ' + m.name, m.connected ? 'connected' : 'disconnected', m.connected ? '' : 'bad');
      topic(r.topic); fed.add(r.topic); edges.push(['mi:' + m.name, 't:' + r.topic, false]);
    }
  }
  for (const tp of o.topics) {
    topic(tp.name);
    if (!fed.has(tp.name) && tp.published > 0) {
      node('in', 'app', 'app (HTTP, WebSocket)', o.app, '');
      edges.push(['app', 't:' + tp.name, false]);
    }
  }
  for (const s of o.subscriptions) {
    topic(s.topic);
    const cls = s.state === 'PAUSED' || s.state === 'HOLDING' ? 'warn' : s.state === 'RUNNING' ? '' : 'bad';
    node('out', 's:' + s.id, s.id, s.state + ' · backlog ' + fmtNum(s.backlog) + ' · ' + fmtRate(subRate.get(s.id)) + ' ev/s', cls);
    edges.push(['t:' + s.topic, 's:' + s.id, s.state !== 'RUNNING']);
  }
  for (const c of o.connectors) {
    if (c.type === 'source') continue;
    const st = c.connector.state;
    node('out', 'c:' + c.name, c.name, (c.plugin || 'sink') + ' · ' + st + ' · ' + fmtRate(connRate.get(c.name)) + ' ev/s', st === 'RUNNING' ? '' : st === 'FAILED' ? 'bad' : 'warn');
    for (const tp of c.topics) {
      if (tp === c.deadLetterTopic) continue;
      topic(tp); edges.push(['t:' + tp, 'c:' + c.name, st !== 'RUNNING']);
    }
  }
  for (const m of o.mqtt) {
    for (const r of m.outbound) {
      node('out', 'mo:' + m.name, 'mqtt ' + m.name, m.connected ? 'connected' : 'disconnected', m.connected ? '' : 'bad');
      topic(r.topic); edges.push(['t:' + r.topic, 'mo:' + m.name, !m.connected]);
    }
  }
  const svg = $('flow-lines');
  svg.replaceChildren();
  const box = $('flow').getBoundingClientRect();
  for (const [from, to, dashed] of edges) {
    const a = nodes.get(from).getBoundingClientRect();
    const b = nodes.get(to).getBoundingClientRect();
    const x1 = a.right - box.left, y1 = a.top + a.height / 2 - box.top;
    const x2 = b.left - box.left, y2 = b.top + b.height / 2 - box.top;
    const mx = (x1 + x2) / 2;
    svg.append(svgEl('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: dashed ? 'paused' : '' }));
  }
}

// ---- actions, each confirmed, through the same API as the CLI ----

async function act(question, method, path, body) {
  if (!window.confirm(question)) return null;
  try {
    const res = await api(method, path, body);
    await poll(true);
    return res;
  } catch (err) {
    if (!(err instanceof AuthError)) window.alert('Failed: ' + (err.message || err));
    return null;
  }
}

async function openDeadLetters(topic) {
  state.dlTopic = topic;
  $('dl-view').hidden = false;
  $('dl-topic').textContent = topic;
  $('dl-result').textContent = '';
  await loadDeadLetters();
}

async function loadDeadLetters() {
  const topic = state.dlTopic;
  let page;
  try {
    page = await api('GET', '/v1/deadletters/' + seg(topic) + '?limit=200');
  } catch (err) {
    if (!(err instanceof AuthError)) $('dl-result').textContent = String(err.message || err);
    return;
  }
  setRows('dl-events', page.events.map((e) => el('tr', { testid: 'dle-' + e.seq },
    el('td', {}, el('input', { type: 'checkbox', class: 'dl-pick', value: String(e.seq), 'aria-label': 'select ' + e.seq })),
    el('td', { class: 'num' }, e.seq),
    el('td', {}, fmtTime(e.time)),
    el('td', {}, e.topic || ''),
    el('td', {}, e.by || ''),
    el('td', { class: 'num' }, e.attempts || ''),
    el('td', { class: 'err', testid: 'dle-error-' + e.seq }, e.error || ''),
    el('td', {}, e.id),
    el('td', {}, e.type),
    el('td', { class: 'data', testid: 'dle-data-' + e.seq }, e.dataBase64 ? '(base64) ' + e.data : e.data),
  )));
  if (page.next) $('dl-result').textContent = 'showing the first ' + page.events.length + ' events';
}

async function redrive(all) {
  const topic = state.dlTopic;
  const seqs = [...document.querySelectorAll('.dl-pick:checked')].map((c) => Number(c.value));
  if (!all && seqs.length === 0) { $('dl-result').textContent = 'select events first'; return; }
  const what = all ? 'every event in "' + topic + '"' : seqs.length + ' event(s) of "' + topic + '"';
  const res = await act('Re-drive ' + what + ' to the topic each came from?\n' +
    'Every subscription of that topic receives it again; the dead-letter copies are deleted once re-published.',
    'POST', '/v1/deadletters/' + seg(topic) + '/redrive', all ? { all: true } : { seqs });
  if (res) {
    $('dl-result').textContent = 're-driven ' + res.redriven + ', deleted ' + res.deleted + ', skipped ' + res.skipped.length;
    await loadDeadLetters();
  }
}

// ---- polling ----

async function poll(once) {
  try {
    const o = await api('GET', '/v1/overview');
    hideLogin();
    render(o);
  } catch (err) {
    if (err instanceof AuthError) return;
    showProblem(err);
  }
  if (!once) schedule();
}

function schedule() {
  clearTimeout(state.timer);
  state.polling = true;
  state.timer = setTimeout(() => poll(false), POLL_MS);
}

function stopPolling() {
  state.polling = false;
  clearTimeout(state.timer);
}

function start() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const tok = $('token').value.trim();
    if (!tok) return;
    sessionStorage.setItem(TOKEN_KEY, tok);
    $('token').value = '';
    $('forget-token').hidden = false;
    hideLogin();
    poll(false);
  });
  $('forget-token').hidden = !sessionStorage.getItem(TOKEN_KEY);
  $('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $('forget-token').hidden = true;
    showLogin('');
  });
  $('dl-redrive-selected').addEventListener('click', () => redrive(false));
  $('dl-redrive-all').addEventListener('click', () => redrive(true));
  $('dl-refresh').addEventListener('click', () => loadDeadLetters());
  $('dl-close').addEventListener('click', () => { $('dl-view').hidden = true; state.dlTopic = ''; });
  poll(false);
}

document.addEventListener('DOMContentLoaded', start);
