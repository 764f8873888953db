// The dashboard in Debian's headless Firefox ESR, driven by puppeteer-core
// over WebDriver BiDi (no browser download): the list and its filter form,
// the seed 002 fan-out's timeline, a confirmed action, the functions view and
// a phone-width window. dashboard.mjs covers everything in Chromium; this
// checks that the same page works in the other engine.
//
//   node firefox.mjs BASE SHOTS      (run by tests/dashboard.rs)
import puppeteer from 'puppeteer-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) throw new Error('usage: node firefox.mjs BASE SHOTS');
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
const statusOf = async (id) => (await (await fetch(API + '/instances/' + id)).json()).runtimeStatus;
const reaches = (id, s) => until(id + ' to be ' + s, async () => (await statusOf(id)) === s);

const r = await fetch(base + '/api/starter_function', {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ total_chunks: 5 }),
});
assert.equal(r.status, 202);
const fanOut = (await r.json()).id;
assert.equal((await fetch(API + '/orchestrators/ApprovalWithTimeout/ff-appr', {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"timeout_seconds": 600}',
})).status, 202);
await reaches(fanOut, 'Completed');
await reaches('ff-appr', 'Running');

const profile = mkdtempSync(join(tmpdir(), 'fnhost-firefox-'));
const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: process.env.FNHOST_FIREFOX || '/usr/bin/firefox-esr',
  headless: true,
  userDataDir: profile,
});
const errors = [];
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(DEADLINE);
  page.on('pageerror', (e) => errors.push(e.message));
  await page.setViewport({ width: 1280, height: 900 });
  const open = async (hash) => {
    await page.goto('about:blank');
    await page.goto(base + '/dashboard' + hash);
  };
  const rowIds = () => page.$$eval('#instances tr[data-id]', (rows) => rows.map((r) => r.dataset.id));

  // The filter form: tick Running, apply.
  await open('#/instances');
  await page.waitForSelector('#instances tr[data-id]');
  await page.click('#filters input[value=Running]');
  await page.type('#filters input[name=prefix]', 'ff-');
  await page.click('#apply');
  await until('the Running filter', async () => JSON.stringify(await rowIds()) === '["ff-appr"]');

  // The fan-out's timeline.
  await open('#/instances/' + fanOut);
  await page.waitForSelector('#timeline');
  const kinds = await page.$$eval('#timeline .tl-row', (rows) => rows.map((r) => r.dataset.kind + ':' + r.dataset.outcome));
  assert.equal(kinds.filter((k) => k === 'activity:completed').length, 5, kinds.join());
  await page.click('#timeline .tl-row[data-kind=activity] .tl-label');
  await page.waitForSelector('#timeline .tl-detail');
  assert.match(await page.$eval('#timeline .tl-detail', (d) => d.textContent), /"chunk_id"/);
  await page.screenshot({ path: join(shots, 'firefox-instance.png') });

  // A confirmed action and its answer.
  await open('#/instances/ff-appr');
  await page.waitForSelector('#instance-status');
  await page.click('#terminate');
  await page.waitForSelector('#confirm[open]');
  await page.click('#confirm-ok');
  await until('the answer', async () => (await page.$eval('#answer-status', (s) => s.textContent).catch(() => '')) === '202');
  await reaches('ff-appr', 'Terminated');

  // Functions, and a phone-width window.
  await open('#/functions');
  await page.waitForSelector('#functions tr[data-name="process_chunk_activity"]');
  await page.setViewport({ width: 390, height: 844 });
  for (const hash of ['#/instances', '#/instances/' + fanOut]) {
    await open(hash);
    await page.waitForSelector('main table, #timeline');
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= inner, `${hash} is ${scroll} px wide in a ${inner} px window`);
  }
  assert.deepEqual(errors, [], 'no script errors');
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log('firefox: all checks passed');
