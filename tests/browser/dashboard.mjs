// Drives the dashboard of a running host in Debian's headless Chromium
// (playwright-core, no browser download): list filters and paging, the seed
// 002 fan-out's timeline, every action button, the functions view, the key
// sent as x-functions-key, the entities view, a phone-width window. Screenshots go to SHOTS.
//
//   node dashboard.mjs BASE SHOTS      (run by tests/dashboard.rs)
//
// Every wait is a poll with a deadline; nothing sleeps a fixed time.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) throw new Error('usage: node dashboard.mjs BASE SHOTS');
const API = base + '/runtime/webhooks/durabletask';
const DEADLINE = 60_000;
mkdirSync(shots, { recursive: true });

async function until(what, fn, deadline = DEADLINE) {
  const end = Date.now() + deadline;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function api(path, options = {}) {
  const r = await fetch(API + path, options);
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function start(name, id, input) {
  const r = await api('/orchestrators/' + name + (id ? '/' + id : ''), {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input ?? null),
  });
  assert.equal(r.status, 202, name + ': ' + JSON.stringify(r.body));
  return r.body.id;
}

const statusOf = async (id) => (await api('/instances/' + encodeURIComponent(id))).body?.runtimeStatus;
const reaches = (id, status) => until(id + ' to be ' + status, async () => (await statusOf(id)) === status);

// ---- the instances the page will show ------------------------------------
const r = await fetch(base + '/api/starter_function', {
  method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ start: '2025-06-17T10:00:00Z', end: '2025-06-17T11:00:00Z', total_chunks: 5, time: '2025-06-17T10:00:00Z' }),
});
assert.equal(r.status, 202);
const fanOut = (await r.json()).id;
for (const i of [0, 1, 2]) await start('HelloSequence', 'hello-' + i);
await start('ApprovalWithTimeout', 'appr-event', { timeout_seconds: 600 });
await start('ApprovalWithTimeout', 'appr-control', { timeout_seconds: 600 });
// The activity fails for 5 s: it runs within that even on a loaded machine, and the
// rewind comes long after.
const failUntil = Date.now() + 5000;
await start('CallFlaky', 'flaky-1', { fail_until_ms: failUntil });
await start('SubParent', 'parent-1', 3);
for (const id of [fanOut, 'hello-0', 'hello-1', 'hello-2', 'parent-1']) await reaches(id, 'Completed');
await reaches('flaky-1', 'Failed');
await reaches('appr-event', 'Running');
await reaches('appr-control', 'Running');
// A counter entity (seed 003's) with state 7, signalled through the HTTP API.
const signalled = await api('/entities/counter/dash?op=add', {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: '7',
});
assert.equal(signalled.status, 202, JSON.stringify(signalled.body));
await until('counter@dash to hold 7', async () => (await api('/entities/counter/dash')).body === 7);

// ---- the browser -----------------------------------------------------------
const profile = mkdtempSync(join(tmpdir(), 'fnhost-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.FNHOST_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = browser.pages()[0] || await browser.newPage();
page.setDefaultTimeout(DEADLINE);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
// Every call the page makes, with the key it sent.
const calls = [];
page.on('request', (req) => calls.push({ url: req.url(), key: req.headers()['x-functions-key'] }));

// A fresh page load for every view: a view left from before can never be read by mistake.
async function open(hash) {
  await page.goto('about:blank');
  await page.goto(base + '/dashboard' + hash);
}

const rowIds = () => page.$$eval('#instances tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
async function listShows(hash, check) {
  await open(hash);
  return until('the list at ' + hash, async () => {
    const ids = await rowIds();
    const empty = await page.$('#no-instances');
    return (ids.length || empty) && check(ids) ? ids : null;
  });
}

try {
  // The key: given once as ?code=, kept out of the address bar, sent on every call.
  await page.goto(base + '/dashboard?code=dashboard-test-key#/instances');
  await page.waitForSelector('#instances tr[data-id]');
  assert.ok(!page.url().includes('code='), 'the key stays out of the address bar: ' + page.url());
  await page.reload();
  await page.waitForSelector('#instances tr[data-id]');
  const dataCalls = calls.filter((c) => c.url.includes('/runtime/webhooks/') || c.url.includes('/admin/'));
  assert.ok(dataCalls.length >= 4, 'the page called the API');
  for (const c of dataCalls) assert.equal(c.key, 'dashboard-test-key', 'x-functions-key on ' + c.url);

  // The list and its filters.
  let ids = await listShows('#/instances', (ids) => ids.length >= 8);
  for (const id of [fanOut, 'hello-0', 'appr-event', 'flaky-1', 'parent-1']) assert.ok(ids.includes(id), id + ' listed');
  await page.screenshot({ path: join(shots, 'instances.png') });
  ids = await listShows('#/instances?status=Running', (ids) => ids.length > 0);
  assert.deepEqual(ids.sort(), ['appr-control', 'appr-event']);
  const badges = await page.$$eval('#instances .badge', (b) => b.map((x) => x.dataset.status));
  assert.ok(badges.every((s) => s === 'Running'), badges.join());
  ids = await listShows('#/instances?status=Failed,Running', (ids) => ids.length > 0);
  assert.deepEqual(ids.sort(), ['appr-control', 'appr-event', 'flaky-1']);
  ids = await listShows('#/instances?name=hellosequence', (ids) => ids.length > 0);
  assert.deepEqual(ids.sort(), ['hello-0', 'hello-1', 'hello-2']);
  ids = await listShows('#/instances?prefix=appr-', (ids) => ids.length > 0);
  assert.deepEqual(ids.sort(), ['appr-control', 'appr-event']);
  const future = new Date(Date.now() + 3600_000).toISOString().slice(0, 19);
  ids = await listShows('#/instances?from=' + future, () => true);
  assert.deepEqual(ids, [], 'nothing was created in the future');
  const past = new Date(Date.now() - 3600_000).toISOString().slice(0, 19);
  ids = await listShows('#/instances?prefix=hello-&to=' + past, () => true);
  assert.deepEqual(ids, [], 'nothing was created an hour ago');
  // The filter form drives the same: tick Completed, type a prefix, apply.
  await open('#/instances');
  await page.check('#filters input[value=Completed]');
  await page.fill('#filters input[name=prefix]', 'hello-');
  await page.click('#apply');
  ids = await until('the form filter', async () => {
    const ids = await rowIds();
    return ids.length === 3 && page.url().includes('status=Completed') ? ids : null;
  });
  assert.deepEqual(ids.sort(), ['hello-0', 'hello-1', 'hello-2']);

  // Paging through the continuation token: 3 hello instances, 2 a page.
  const first = await listShows('#/instances?prefix=hello-&top=2', (ids) => ids.length === 2);
  assert.equal(await page.isEnabled('#next'), true);
  assert.equal(await page.isEnabled('#prev'), false);
  await page.click('#next');
  const second = await until('page 2', async () => { const ids = await rowIds(); return ids.length === 1 ? ids : null; });
  assert.ok(!first.includes(second[0]), 'page 2 is another instance');
  assert.equal(await page.isEnabled('#next'), false, 'no page after the last');
  await page.click('#prev');
  await until('page 1 again', async () => JSON.stringify(await rowIds()) === JSON.stringify(first));

  // The seed 002 fan-out: one bar per activity, each completed, with its times.
  await open('#/instances/' + fanOut);
  await page.waitForSelector('#timeline');
  const bars = await page.$$eval('#timeline .tl-row', (rows) => rows.map((r) => ({ ...r.dataset })));
  const activities = bars.filter((b) => b.kind === 'activity');
  assert.equal(activities.length, 5, JSON.stringify(bars));
  assert.ok(activities.every((b) => b.name === 'process_chunk_activity' && b.outcome === 'completed'), JSON.stringify(bars));
  assert.equal(bars.find((b) => b.kind === 'orchestration').outcome, 'completed');
  assert.equal(await page.textContent('#instance-status'), 'Completed');
  assert.match(await page.textContent('#output'), /"total_chunks": 5/);
  const raw = JSON.parse(await page.textContent('#raw-history'));
  assert.equal(raw.filter((e) => e.EventType === 'TaskScheduled').length, 5);
  assert.equal(raw.filter((e) => e.EventType === 'TaskCompleted').length, 5);
  await page.click('#timeline .tl-row[data-kind=activity] .tl-label');
  assert.match(await page.textContent('#timeline .tl-detail'), /"chunk_id"/);
  await page.screenshot({ path: join(shots, 'instance.png'), fullPage: true });
  await page.locator('.split').screenshot({ path: join(shots, 'timeline.png') });

  // Parent and children link to each other.
  await open('#/instances/parent-1');
  await page.waitForSelector('#children a');
  const child = await page.textContent('#children a');
  assert.ok((await page.$$('#timeline .tl-row[data-kind=sub-orchestration]')).length >= 1);
  await page.click('#children a');
  await page.waitForSelector('#parent a');
  assert.equal(await page.textContent('#instance-id'), child);
  assert.equal(await page.textContent('#parent a'), 'parent-1');

  // Actions: confirm, see the API's answer, and the instance changes as the API says.
  async function act(id, button, expectStatus, fill) {
    await open('#/instances/' + encodeURIComponent(id));
    await page.waitForSelector('#instance-status');
    if (fill) await fill();
    await page.click(button);
    await page.waitForSelector('#confirm[open]');
    await page.click('#confirm-ok');
    await until(button + ' answer', async () => (await page.textContent('#answer-status')) === String(expectStatus));
    return JSON.parse((await page.$eval('#answer pre', (p) => p.textContent).catch(() => 'null')) || 'null');
  }
  // A cancelled confirmation sends nothing.
  await open('#/instances/appr-control');
  await page.waitForSelector('#instance-status');
  await page.click('#terminate');
  await page.click('#confirm-cancel');
  assert.equal(await page.isVisible('#answer'), false);
  assert.equal(await statusOf('appr-control'), 'Running');

  await act('appr-control', '#suspend', 202);
  await reaches('appr-control', 'Suspended');
  await until('the page to show Suspended', async () => (await page.textContent('#instance-status')) === 'Suspended');
  await act('appr-control', '#resume', 202);
  await reaches('appr-control', 'Running');
  await act('appr-control', '#terminate', 202, () => page.fill('#reason', 'from the dashboard'));
  await reaches('appr-control', 'Terminated');
  assert.equal((await api('/instances/appr-control')).body.output, 'from the dashboard');
  await act('appr-control', '#terminate', 410); // finished: the API's 410 is shown

  await act('appr-event', '#raise-event', 202, async () => {
    await page.fill('#event-name', 'Approval');
    await page.fill('#event-data', 'true');
  });
  await reaches('appr-event', 'Completed');
  assert.match(JSON.stringify((await api('/instances/appr-event')).body.output), /Approved!/);

  await until('the flaky window to pass', async () => Date.now() > failUntil);
  await open('#/instances/flaky-1');
  await page.waitForSelector('#failure');
  assert.match(await page.textContent('#failure'), /not yet/);
  assert.ok((await page.$$('#timeline .tl-row[data-outcome=failed][data-kind=activity]')).length === 1);
  await act('flaky-1', '#rewind', 202);
  await reaches('flaky-1', 'Completed');
  assert.equal((await api('/instances/flaky-1')).body.output, 'finally');

  const restarted = await act('hello-0', '#restart', 202);
  assert.ok(restarted.id && restarted.id !== 'hello-0', JSON.stringify(restarted));
  await page.waitForSelector('#answer a');
  await reaches(restarted.id, 'Completed');

  const purged = await act('hello-1', '#purge', 200);
  assert.deepEqual(purged, { instancesDeleted: 1 });
  assert.equal((await api('/instances/hello-1')).status, 404);
  await open('#/instances/hello-1');
  await page.waitForSelector('#instance-error');

  // Functions with their invocation counts.
  await open('#/functions');
  const count = (name, col) => page.$eval(`#functions tr[data-name="${name}"] td[data-col=${col}]`, (td) => Number(td.textContent));
  await until('process_chunk_activity counted', async () => (await count('process_chunk_activity', 'succeeded').catch(() => 0)) >= 5);
  assert.ok((await count('starter_function', 'succeeded')) >= 1);
  assert.ok((await count('Flaky', 'failed')) >= 1);
  assert.match(await page.textContent('#functions tr[data-name="starter_function"]'), /\/api\/starter_function/);
  assert.match(await page.textContent('#hub'), /TestHub/);

  // Entities: the section appears because the host serves entities/, and lists the counter.
  await page.waitForSelector('#nav-entities', { state: 'visible' });
  await page.click('#nav-entities');
  const row = await until('the counter in the entities view', async () => {
    const rows = await page.$$eval('#entities tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent.trim())));
    return rows.find((cells) => cells[0] === 'counter' && cells[1] === 'dash');
  });
  assert.equal(row[3], '7', JSON.stringify(row));
  await page.screenshot({ path: join(shots, 'functions.png') });

  // Phone width: nothing wider than the window.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const hash of ['#/instances', '#/instances/' + fanOut, '#/functions']) {
    await open(hash);
    await page.waitForSelector('main table, #timeline');
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= inner, `${hash} is ${scroll} px wide in a ${inner} px window`);
  }
  await open('#/instances/' + fanOut);
  await page.waitForSelector('#timeline');
  await page.screenshot({ path: join(shots, 'phone.png') });

  // Keys enforced: until the lead wires require_admin to the master key, the
  // browser itself answers 401 to calls without the right key, as the host
  // will. The page asks for the key, then every call carries it.
  const locked = await browser.newPage();
  await locked.route(/\/(runtime\/webhooks|admin)\//, (route) => {
    const given = route.request().headers()['x-functions-key'];
    if (given === 'the-master-key') return route.continue();
    return route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":"a master key is needed"}' });
  });
  await locked.setViewportSize({ width: 1280, height: 900 });
  await locked.goto(base + '/dashboard#/instances');
  await locked.waitForSelector('#key-form:not([hidden])');
  assert.match(await locked.textContent('#key-note'), /401/);
  assert.match(await locked.textContent('#instances'), /401/);
  await locked.fill('#key-input', 'the-master-key');
  await locked.click('#key-form button[type=submit]');
  await locked.waitForSelector('#instances tr[data-id]');
  assert.equal(await locked.isVisible('#key-form'), false);
  await locked.close();

  assert.deepEqual(pageErrors, [], 'no script errors');
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log('dashboard: all checks passed');
