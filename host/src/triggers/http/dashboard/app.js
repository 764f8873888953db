// fnhost dashboard: one script, no framework, no build step. It reads the
// Durable Functions management API (/runtime/webhooks/durabletask) and the
// host's /admin endpoints, sending the key given as ?code= (kept in
// sessionStorage) as x-functions-key on every call.
'use strict';

const API = '/runtime/webhooks/durabletask';
const KEY = 'fnhost.key';
const STATUSES = ['Pending', 'Running', 'Suspended', 'Completed', 'Failed', 'Terminated', 'ContinuedAsNew'];
const TERMINAL = ['Completed', 'Failed', 'Terminated'];
const REFRESH_MS = 3000;

let refreshTimer = null;
let viewToken = 0; // bumped on every navigation: late answers of an old view are dropped

// ---- small helpers -------------------------------------------------------

/** An element: h('a', {href: '#'}, 'text', child...). Text is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function key() { return sessionStorage.getItem(KEY) || ''; }

/** fetch with the key; resolves to {status, headers, body (parsed JSON or text)}. */
async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (key()) headers['x-functions-key'] = key();
  const r = await fetch(path, Object.assign({}, options, { headers }));
  const text = await r.text();
  let body = text;
  try { body = text ? JSON.parse(text) : null; } catch (_) { /* not JSON: keep the text */ }
  if (r.status === 401 || r.status === 403) showKeyForm('The host asked for a key (' + r.status + '): enter the master key.');
  return { status: r.status, headers: r.headers, body };
}

function json(value) { return JSON.stringify(value, null, 2); }

function pre(value) {
  return h('pre', { class: 'json' }, value === null || value === undefined ? 'null' : json(value));
}

function badge(status) { return h('span', { class: 'badge ' + status, dataset: { status } }, status); }

/** `2025-06-17 10:00:00Z` from an ISO time. */
function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function duration(ms) {
  if (ms < 0 || !isFinite(ms)) return '';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  const m = Math.floor(ms / 60000), s = Math.round((ms % 60000) / 1000);
  if (m < 60) return m + ' min ' + s + ' s';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

function instanceLink(id) {
  return h('a', { href: '#/instances/' + encodeURIComponent(id), class: 'mono' }, id);
}

function errorText(r) {
  if (r.body && typeof r.body === 'object' && r.body.error) return r.body.error;
  return typeof r.body === 'string' ? r.body : json(r.body);
}

function main() { return document.getElementById('main'); }

function setView(name, ...content) {
  for (const a of document.querySelectorAll('.top nav a')) a.classList.toggle('active', a.dataset.view === name);
  main().replaceChildren(...content);
}

function every(ms, fn) {
  clearInterval(refreshTimer);
  refreshTimer = setInterval(fn, ms);
}

// ---- key -----------------------------------------------------------------

function showKeyForm(note) {
  const form = document.getElementById('key-form');
  form.hidden = false;
  document.getElementById('key-note').textContent = note || '';
}

function setupKey() {
  const params = new URLSearchParams(location.search);
  if (params.has('code')) {
    sessionStorage.setItem(KEY, params.get('code'));
    params.delete('code');
    const q = params.toString();
    // Keep the key out of the address bar, the history and screenshots.
    history.replaceState(null, '', location.pathname + (q ? '?' + q : '') + location.hash);
  }
  const button = document.getElementById('key-button');
  const label = () => { button.textContent = key() ? 'Key ✓' : 'Key'; };
  label();
  button.addEventListener('click', () => {
    const form = document.getElementById('key-form');
    form.hidden ? showKeyForm('') : (form.hidden = true);
  });
  document.getElementById('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = document.getElementById('key-input').value.trim();
    if (v) sessionStorage.setItem(KEY, v);
    document.getElementById('key-input').value = '';
    document.getElementById('key-form').hidden = true;
    label();
    route();
  });
  document.getElementById('key-clear').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    label();
    document.getElementById('key-note').textContent = 'Key forgotten.';
  });
}

// ---- confirmation --------------------------------------------------------

/** Ask before an action; resolves true when confirmed. */
function confirmAction(title, ...body) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-body').replaceChildren(...body);
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

// ---- router --------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || '') };
}

function route() {
  clearInterval(refreshTimer);
  viewToken++;
  const { parts, query } = parseHash();
  if (parts[0] === 'instances' && parts.length > 1) return instanceView(parts.slice(1).join('/'));
  if (parts[0] === 'functions') return functionsView();
  if (parts[0] === 'entities') return entitiesView();
  return instancesView(query);
}

// ---- instances list ------------------------------------------------------

function instancesView(query) {
  const token = viewToken;
  const chosen = (query.get('status') || '').split(',').filter(Boolean);
  const form = h('form', { class: 'panel filters', id: 'filters' },
    h('fieldset', {}, h('legend', {}, 'Status'),
      STATUSES.map((s) => h('label', {}, h('input', { type: 'checkbox', name: 'status', value: s, checked: chosen.includes(s) }), s))),
    h('label', {}, 'Name', h('input', { name: 'name', value: query.get('name') || '', placeholder: 'orchestrator name' })),
    h('label', {}, 'Instance id prefix', h('input', { name: 'prefix', value: query.get('prefix') || '' })),
    h('label', {}, 'Created from', h('input', { type: 'datetime-local', step: 1, name: 'from', value: query.get('from') || '' })),
    h('label', {}, 'Created to', h('input', { type: 'datetime-local', step: 1, name: 'to', value: query.get('to') || '' })),
    h('label', {}, 'Page size', h('select', { name: 'top' },
      [25, 50, 100, 500].map((n) => h('option', { value: n, selected: String(n) === (query.get('top') || '50') }, n)))),
    h('button', { type: 'submit', id: 'apply' }, 'Apply'),
    h('button', { type: 'button', class: 'quiet', onclick: () => { location.hash = '#/instances'; } }, 'Clear'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const q = new URLSearchParams();
    const statuses = f.getAll('status');
    if (statuses.length) q.set('status', statuses.join(','));
    for (const k of ['name', 'prefix', 'from', 'to', 'top']) if (f.get(k)) q.set(k, f.get(k));
    const next = '#/instances?' + q.toString();
    if (location.hash === next) route(); else location.hash = next;
  });

  const pages = [null]; // continuation tokens of the pages seen: pages[i] opens page i
  let page = 0;
  const tbody = h('tbody', { id: 'instances' });
  const info = h('span', { class: 'muted', id: 'list-info' });
  const prev = h('button', { type: 'button', class: 'quiet', id: 'prev', disabled: true, onclick: () => { page--; load(); } }, '← Previous');
  const next = h('button', { type: 'button', class: 'quiet', id: 'next', disabled: true, onclick: () => { page++; load(); } }, 'Next →');
  const auto = h('input', { type: 'checkbox', id: 'auto-refresh', checked: true });
  const toolbar = h('div', { class: 'toolbar' }, prev, next, info, h('span', { class: 'grow' }),
    h('label', {}, auto, ' Auto-refresh'),
    h('button', { type: 'button', class: 'quiet', onclick: () => load() }, 'Refresh'));
  const table = h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Status'), h('th', {}, 'Name'), h('th', {}, 'Instance id'),
      h('th', {}, 'Created'), h('th', { class: 'hide-narrow' }, 'Last updated'))), tbody));
  setView('instances', h('h1', {}, 'Orchestrations'), form, toolbar, table);

  const name = (query.get('name') || '').trim().toLowerCase();
  const top = Number(query.get('top') || 50);
  const params = new URLSearchParams();
  if (chosen.length) params.set('runtimeStatus', chosen.join(','));
  if (query.get('prefix')) params.set('instanceIdPrefix', query.get('prefix'));
  for (const [k, api] of [['from', 'createdTimeFrom'], ['to', 'createdTimeTo']]) {
    const v = query.get(k);
    if (v && !isNaN(new Date(v))) params.set(api, new Date(v).toISOString());
  }

  // One page: the API filters by status, prefix and time. The API has no name
  // filter, so with one, whole API pages are read until a page's worth matches.
  async function load() {
    let continuation = pages[page];
    const rows = [];
    let status = 200, failure = null;
    do {
      params.set('top', String(name ? Math.max(top, 100) : top));
      const r = await call(API + '/instances?' + params, continuation ? { headers: { 'x-ms-continuation-token': continuation } } : {});
      if (token !== viewToken) return;
      status = r.status;
      if (r.status !== 200 || !Array.isArray(r.body)) { failure = errorText(r); break; }
      rows.push(...r.body.filter((i) => !name || (i.name || '').toLowerCase().includes(name)));
      continuation = r.headers.get('x-ms-continuation-token');
    } while (name && continuation && rows.length < top);
    pages[page + 1] = continuation || undefined;
    prev.disabled = page === 0;
    next.disabled = !continuation;
    if (failure !== null) {
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'error' }, 'The API answered ' + status + ': ' + failure)));
      info.textContent = '';
      return;
    }
    info.textContent = rows.length ? 'Page ' + (page + 1) + ': ' + rows.length + ' instance' + (rows.length === 1 ? '' : 's') : '';
    tbody.replaceChildren(...(rows.length ? rows.map((i) => h('tr', { dataset: { id: i.instanceId } },
      h('td', {}, badge(i.runtimeStatus)),
      h('td', {}, i.name),
      h('td', {}, instanceLink(i.instanceId)),
      h('td', {}, when(i.createdTime)),
      h('td', { class: 'hide-narrow' }, when(i.lastUpdatedTime)))) :
      [h('tr', {}, h('td', { colspan: 5, class: 'muted', id: 'no-instances' }, 'No instance matches.'))]));
  }
  load();
  every(REFRESH_MS, () => { if (auto.checked && !document.hidden) load(); });
}

// ---- one instance --------------------------------------------------------

function instanceView(id) {
  const token = viewToken;
  const head = h('div', {});
  const body = h('div', {});
  const answer = h('div', { class: 'panel answer', id: 'answer', hidden: true });
  const auto = h('input', { type: 'checkbox', id: 'auto-refresh', checked: true });
  const opened = new Set();
  setView('instances',
    h('p', { class: 'toolbar' }, h('a', { href: '#/instances' }, '← Orchestrations'), h('span', { class: 'grow' }),
      h('label', { class: 'muted' }, auto, ' Refresh while it runs')),
    head, actionsPanel(id, answer, () => load()), answer, body);

  async function load() {
    const [s, hist] = await Promise.all([
      call(API + '/instances/' + encodeURIComponent(id) + '?showInput=true'),
      call('/admin/durable/instances/' + encodeURIComponent(id) + '/history'),
    ]);
    if (token !== viewToken) return;
    if (s.status !== 200 && s.status !== 202) {
      head.replaceChildren(h('h1', { class: 'mono' }, id));
      body.replaceChildren(h('p', { class: 'panel error', id: 'instance-error' },
        s.status === 404 ? 'No instance with this id in the task hub (it may have been purged).' : 'The API answered ' + s.status + ': ' + errorText(s)));
      return;
    }
    const st = s.body;
    const history = hist.status === 200 ? hist.body : null;
    renderHead(head, st, history);
    renderBody(body, st, history, opened);
    if (TERMINAL.includes(st.runtimeStatus)) auto.checked = false;
  }
  load();
  every(REFRESH_MS, () => { if (auto.checked && !document.hidden) load(); });
}

function renderHead(head, st, history) {
  const children = [];
  const parent = history && history.parentInstanceId;
  for (const e of (history ? history.events : [])) {
    if (e.EventType === 'SubOrchestrationInstanceCreated') children.push(e.InstanceId);
  }
  head.replaceChildren(
    h('h1', {}, badge(st.runtimeStatus), ' ', h('span', { class: 'mono', id: 'instance-id' }, st.instanceId)),
    h('div', { class: 'panel' }, h('dl', { class: 'meta' },
      h('dt', {}, 'Name'), h('dd', { id: 'instance-name' }, st.name),
      h('dt', {}, 'Status'), h('dd', { id: 'instance-status' }, st.runtimeStatus),
      h('dt', {}, 'Created'), h('dd', {}, when(st.createdTime)),
      h('dt', {}, 'Last updated'), h('dd', {}, when(st.lastUpdatedTime)),
      history ? [h('dt', {}, 'Execution'), h('dd', { class: 'mono' }, history.executionId)] : null,
      parent ? [h('dt', {}, 'Parent'), h('dd', { id: 'parent' }, instanceLink(parent))] : null,
      children.length ? [h('dt', {}, 'Children'), h('dd', { id: 'children' }, children.flatMap((c, i) => [i ? ', ' : '', instanceLink(c)]))] : null)));
}

function renderBody(body, st, history, opened) {
  const payloads = h('div', { class: 'payloads' },
    h('div', { class: 'panel' }, h('h2', {}, 'Input'), pre(st.input)),
    h('div', { class: 'panel' }, h('h2', {}, 'Output'), h('div', { id: 'output' }, pre(st.output))),
    h('div', { class: 'panel' }, h('h2', {}, 'Custom status'), pre(st.customStatus)));
  const failure = failureOf(st, history);
  const parts = [payloads];
  if (failure) parts.push(h('div', { class: 'panel', id: 'failure' }, h('h2', { class: 'error' }, 'Failure'), pre(failure)));
  if (history) {
    parts.push(h('div', { class: 'split' },
      h('div', { class: 'panel' }, h('h2', {}, 'Timeline'), timeline(history.events, st.runtimeStatus, opened)),
      h('div', { class: 'panel' }, h('h2', {}, 'History (' + history.events.length + ' events)'), h('pre', { class: 'json', id: 'raw-history' }, json(history.events)))));
  } else {
    parts.push(h('p', { class: 'panel muted' }, 'No history yet: the instance has not started.'));
  }
  body.replaceChildren(...parts);
}

function failureOf(st, history) {
  if (st.runtimeStatus !== 'Failed') return null;
  const done = history && history.events.find((e) => e.EventType === 'ExecutionCompleted');
  return (done && done.FailureDetails) || st.output;
}

// ---- timeline ------------------------------------------------------------

/**
 * Bars from the history: one per activity, sub-orchestration and timer, from
 * when it was scheduled to when its completion was recorded; one per external
 * event, from the start of the execution (or the previous event of that name)
 * to its arrival. Unfinished work runs to now.
 */
function bars(events, status) {
  const t = (iso) => new Date(iso).getTime();
  const now = Date.now();
  const started = events.find((e) => e.EventType === 'ExecutionStarted');
  const start = started ? t(started.Timestamp) : (events.length ? t(events[0].Timestamp) : now);
  const ended = events.find((e) => ['ExecutionCompleted', 'ExecutionTerminated', 'ContinueAsNew'].includes(e.EventType));
  const out = [];
  const done = new Map();
  const fired = new Map();
  for (const e of events) {
    if (['TaskCompleted', 'TaskFailed', 'SubOrchestrationInstanceCompleted', 'SubOrchestrationInstanceFailed'].includes(e.EventType)) done.set(e.TaskScheduledId, e);
    if (e.EventType === 'TimerFired') fired.set(e.TimerId, e);
  }
  const finishedAt = ended ? t(ended.Timestamp) : now;
  out.push({
    kind: 'orchestration', label: started ? started.Name : 'orchestration', start, end: finishedAt,
    outcome: status === 'Failed' ? 'failed' : (ended ? 'completed' : 'pending'), detail: { status, started: started && started.Timestamp, ended: ended && ended.Timestamp },
  });
  const lastEvent = new Map();
  for (const e of events) {
    if (e.EventType === 'TaskScheduled' || e.EventType === 'SubOrchestrationInstanceCreated') {
      const c = done.get(e.EventId);
      const sub = e.EventType !== 'TaskScheduled';
      out.push({
        kind: sub ? 'sub-orchestration' : 'activity', label: e.Name, seq: e.EventId, start: t(e.Timestamp), end: c ? t(c.Timestamp) : (ended ? finishedAt : now),
        outcome: c ? (c.EventType.endsWith('Failed') ? 'failed' : 'completed') : 'pending', instance: sub ? e.InstanceId : null,
        detail: Object.assign({ scheduled: e.Timestamp, input: e.Input }, c ? { finished: c.Timestamp } : {},
          c && 'Result' in c ? { result: c.Result } : {}, c && c.Reason ? { error: c.ErrorType + ': ' + c.Reason, details: c.Details } : {}),
      });
    } else if (e.EventType === 'TimerCreated') {
      const f = fired.get(e.EventId);
      out.push({
        kind: 'timer', label: 'timer', start: t(e.Timestamp), end: f ? t(f.Timestamp) : Math.max(t(e.FireAt), now),
        outcome: f ? 'completed' : 'pending', detail: Object.assign({ created: e.Timestamp, fireAt: e.FireAt }, f ? { fired: f.Timestamp } : {}),
      });
    } else if (e.EventType === 'EventRaised') {
      const from = lastEvent.has(e.Name) ? lastEvent.get(e.Name) : start;
      lastEvent.set(e.Name, t(e.Timestamp));
      out.push({ kind: 'event', label: e.Name, start: from, end: t(e.Timestamp), outcome: 'completed', detail: { arrived: e.Timestamp, input: e.Input } });
    }
  }
  return out;
}

/** `opened`: the rows whose details are shown, kept across refreshes. */
function timeline(events, status, opened) {
  const list = bars(events, status);
  const t0 = Math.min(...list.map((b) => b.start));
  const t1 = Math.max(...list.map((b) => b.end), t0 + 1);
  const span = t1 - t0;
  const pct = (v) => ((v - t0) / span) * 100;
  const ticks = h('div', { class: 'ticks' });
  for (let i = 0; i <= 4; i++) {
    const s = h('span', {}, duration((span * i) / 4) || '0 ms');
    s.style.left = Math.min(96, Math.max(3, i * 25)) + '%';
    ticks.append(s);
  }
  const rows = list.map((b, i) => {
    const bar = h('div', { class: 'tl-bar ' + b.kind + ' ' + b.outcome, title: b.label + ': ' + duration(b.end - b.start) + ' (' + b.outcome + ')' });
    bar.style.left = pct(b.start) + '%';
    bar.style.width = Math.max(0.3, pct(b.end) - pct(b.start)) + '%';
    const row = h('div', { class: 'tl-row', dataset: { kind: b.kind, outcome: b.outcome, name: b.label }, id: 'bar-' + i },
      h('div', { class: 'tl-label' }, h('span', { class: 'kind' }, b.kind === 'sub-orchestration' ? 'sub' : b.kind === 'orchestration' ? '' : b.kind),
        h('span', { class: 'name', title: b.label }, b.label + (b.seq !== undefined ? ' #' + b.seq : '')), h('span', { class: 'dur' }, duration(b.end - b.start))),
      h('div', { class: 'tl-track' }, bar));
    const detail = () => h('div', { class: 'tl-detail' }, b.instance ? h('p', {}, 'Instance ', instanceLink(b.instance)) : null, pre(b.detail));
    if (opened.has(i)) row.append(detail());
    row.addEventListener('click', (e) => {
      if (e.target.closest('.tl-detail')) return;
      const open = row.querySelector('.tl-detail');
      if (open) { open.remove(); opened.delete(i); return; }
      opened.add(i);
      row.append(detail());
    });
    return row;
  });
  return h('div', { class: 'timeline', id: 'timeline' },
    h('div', { class: 'tl-axis' }, h('div', {}), ticks), rows,
    h('div', { class: 'legend' },
      [['var(--ok)', 'completed'], ['var(--fail)', 'failed'], ['var(--run)', 'running'], ['var(--pending)', 'timer'], ['var(--wait)', 'event wait']]
        .map(([c, n]) => { const i = h('i'); i.style.background = c; return h('span', {}, i, n); }),
      h('span', {}, 'Click a row for its input, result and times.')));
}

// ---- actions -------------------------------------------------------------

function actionsPanel(id, answer, reload) {
  const base = API + '/instances/' + encodeURIComponent(id);
  const reason = h('input', { name: 'reason', placeholder: 'reason (optional)', id: 'reason' });
  const eventName = h('input', { name: 'event-name', placeholder: 'event name', id: 'event-name' });
  const eventData = h('input', { name: 'event-data', placeholder: 'JSON data, e.g. true', id: 'event-data' });
  const newId = h('input', { type: 'checkbox', id: 'restart-new-id', checked: true });

  function show(what, r) {
    answer.hidden = false;
    const link = r.body && typeof r.body === 'object' && r.body.id && r.body.id !== id ? h('p', {}, 'New instance: ', instanceLink(r.body.id)) : null;
    answer.replaceChildren(h('h2', {}, what + ': ', h('span', { class: 'code', id: 'answer-status' }, String(r.status))), link,
      r.body === null || r.body === '' ? h('p', { class: 'muted' }, '(empty body)') : pre(r.body));
  }

  async function act(what, method, path, confirmBody, body) {
    const ok = await confirmAction(what + ' ' + id + '?', confirmBody || '');
    if (!ok) return;
    const options = { method };
    if (body !== undefined) { options.body = body; options.headers = { 'content-type': 'application/json' }; }
    const r = await call(path, options);
    show(what, r);
    reload();
  }

  const q = () => (reason.value ? '?reason=' + encodeURIComponent(reason.value) : '');
  return h('div', { class: 'panel actions', id: 'actions' },
    h('span', { class: 'event' }, eventName, eventData,
      h('button', { type: 'button', id: 'raise-event', onclick: () => {
        const name = eventName.value.trim();
        if (!name) { show('Raise event', { status: 'not sent', body: 'Give the event a name.' }); return; }
        const data = eventData.value.trim();
        if (data) { try { JSON.parse(data); } catch (e) { show('Raise event', { status: 'not sent', body: 'The data is not JSON: ' + e.message }); return; } }
        act('Raise event', 'POST', base + '/raiseEvent/' + encodeURIComponent(name), h('p', {}, 'Event ', h('b', {}, name), ' with data ', h('code', {}, data || '(none)')), data || undefined);
      } }, 'Raise event')),
    reason,
    h('button', { type: 'button', class: 'danger', id: 'terminate', onclick: () => act('Terminate', 'POST', base + '/terminate' + q()) }, 'Terminate'),
    h('button', { type: 'button', id: 'suspend', onclick: () => act('Suspend', 'POST', base + '/suspend' + q()) }, 'Suspend'),
    h('button', { type: 'button', id: 'resume', onclick: () => act('Resume', 'POST', base + '/resume' + q()) }, 'Resume'),
    h('button', { type: 'button', id: 'rewind', onclick: () => act('Rewind', 'POST', base + '/rewind' + q(), h('p', {}, 'Its failed activities run again.')) }, 'Rewind'),
    h('span', {}, h('button', { type: 'button', id: 'restart', onclick: () => act('Restart', 'POST', base + '/restart?restartWithNewInstanceId=' + newId.checked,
      h('p', {}, newId.checked ? 'A new instance starts with the same input.' : 'The instance starts again under the same id.')) }, 'Restart'),
    h('label', {}, ' ', newId, ' new id')),
    h('button', { type: 'button', class: 'danger', id: 'purge', onclick: () => act('Purge', 'DELETE', base, h('p', {}, 'Its history and status are deleted for good.')) }, 'Purge'));
}

// ---- functions -----------------------------------------------------------

function functionsView() {
  const token = viewToken;
  const tbody = h('tbody', { id: 'functions' });
  setView('functions', h('h1', {}, 'Functions'), h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Trigger'), h('th', {}, 'Route'),
      h('th', { class: 'hide-narrow' }, 'Folder'), h('th', { class: 'num' }, 'Succeeded'), h('th', { class: 'num' }, 'Failed'))), tbody)));
  async function load() {
    const r = await call('/admin/functions');
    if (token !== viewToken) return;
    if (r.status !== 200) { tbody.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'error' }, 'The host answered ' + r.status + ': ' + errorText(r)))); return; }
    tbody.replaceChildren(...r.body.functions.map((f) => h('tr', { dataset: { name: f.name } },
      h('td', {}, f.name), h('td', {}, f.trigger),
      h('td', { class: 'mono' }, f.route ? (f.methods ? '[' + f.methods.join(',') + '] ' : '') + f.route + (f.authLevel ? ' (' + f.authLevel + ')' : '') : (f.queueName || f.path || f.schedule || '')),
      h('td', { class: 'hide-narrow' }, f.folder),
      h('td', { class: 'num', dataset: { col: 'succeeded' } }, f.invocations.succeeded),
      h('td', { class: 'num', dataset: { col: 'failed' } }, f.invocations.failed))));
  }
  load();
  every(REFRESH_MS, () => { if (!document.hidden) load(); });
}

// ---- entities (shown once the host answers for them) ----------------------

async function probeEntities() {
  const r = await call(API + '/entities');
  document.getElementById('nav-entities').hidden = !(r.status === 200 && Array.isArray(r.body));
}

function entitiesView() {
  const token = viewToken;
  const tbody = h('tbody', { id: 'entities' });
  setView('entities', h('h1', {}, 'Entities'), h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Key'), h('th', {}, 'Last operation'), h('th', {}, 'State'))), tbody)));
  (async () => {
    const r = await call(API + '/entities?fetchState=true');
    if (token !== viewToken) return;
    if (r.status !== 200 || !Array.isArray(r.body)) {
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'This host does not serve entities (' + r.status + ').')));
      return;
    }
    tbody.replaceChildren(...r.body.map((e) => h('tr', {},
      h('td', {}, (e.entityId || {}).name), h('td', { class: 'mono' }, (e.entityId || {}).key),
      h('td', {}, when(e.lastOperationTime)), h('td', {}, pre(e.state)))));
  })();
}

// ---- start ---------------------------------------------------------------

async function header() {
  const r = await call('/admin/functions');
  if (r.status === 200 && r.body.taskHub) document.getElementById('hub').textContent = 'Task hub: ' + r.body.taskHub;
}

document.addEventListener('DOMContentLoaded', () => {
  setupKey();
  window.addEventListener('hashchange', route);
  route();
  header();
  probeEntities();
});
