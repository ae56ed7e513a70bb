// Drives the dashboard in headless Chromium for dashboard_test.go, which
// starts meshd, a sink and an admin-token proxy, and passes their addresses
// in the environment. Exits non-zero with a line starting "FAIL:" when a
// check fails.
'use strict';

const { chromium } = require('playwright-core');

const env = process.env;
const need = (k) => env[k] || fail('the environment lacks ' + k);

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  fail('timed out after ' + ms + ' ms waiting for ' + what + ' (last: ' + last + ')');
}

let seq = 0;
async function publish(type, data, contentType) {
  const resp = await fetch(need('API_URL') + '/v1/publish/orders', {
    method: 'POST',
    headers: {
      'ce-specversion': '1.0', 'ce-id': 'ui-' + process.pid + '-' + (++seq), 'ce-source': '/ui-test',
      'ce-type': type, 'Content-Type': contentType || 'application/json',
    },
    body: data,
  });
  if (resp.status !== 204) fail('publishing answered ' + resp.status + ': ' + (await resp.text()));
}

async function sinkCount() {
  const resp = await fetch(need('SINK_URL') + '/count');
  return Number(await resp.text());
}

async function text(page, testid) {
  const loc = page.locator('[data-testid="' + testid + '"]');
  return (await loc.count()) ? (await loc.first().textContent()).trim() : '';
}

(async () => {
  const browser = await chromium.launch({
    executablePath: need('CHROMIUM'),
    headless: true,
    // The flags that work on this kind of machine: no sandbox as root, no
    // background connections a closed network refuses.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  let loggedIn = false;
  const problems = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Before the token is typed in, the first call is refused with 401,
    // which Chromium reports on the console: that one is expected.
    if (!loggedIn && /status of 401/.test(m.text())) return;
    problems.push('console error: ' + m.text());
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('dialog', (d) => { console.log('dialog: ' + d.message().split('\n')[0]); d.accept(); });

  // The page asks for the admin token, once, and keeps it for the tab.
  await page.goto(need('UI_URL'));
  await page.waitForSelector('#login:not([hidden])', { timeout: 15000 });
  await page.fill('#token', need('ADMIN_TOKEN'));
  loggedIn = true;
  await page.click('#login button[type=submit]');
  await page.waitForSelector('[data-testid="sub-good"]', { timeout: 15000 });
  const stored = await page.evaluate(() => sessionStorage.getItem('meshd-admin-token'));
  if (stored !== env.ADMIN_TOKEN) fail('the token is not kept in sessionStorage');
  console.log('logged in; subscriptions shown');

  // The rate moves while events are published.
  let publishing = true;
  const publisher = (async () => {
    for (let i = 0; publishing && i < 400; i++) {
      await publish('test.rate', JSON.stringify({ i }));
      await sleep(i < 60 ? 40 : 15); // faster after a while: the rate changes
    }
  })();
  const seen = new Set();
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline && seen.size < 3) {
    const v = await text(page, 'rate-orders');
    if (v && Number(v) > 0) seen.add(v);
    await sleep(400);
  }
  publishing = false;
  await publisher;
  if (seen.size < 2) fail('the publish rate of "orders" did not move: saw ' + JSON.stringify([...seen]));
  console.log('rate of orders moved through ' + JSON.stringify([...seen]));
  const line = await page.locator('#chart-published polyline').count();
  if (line !== 1) fail('the throughput chart has no line');

  // Pausing from the page stops delivery; the group keeps the events.
  await waitFor(async () => (await sinkCount()) >= 60, 20000, 'the sink to receive the first events');
  await page.click('[data-testid="pause-good"]');
  await waitFor(async () => (await text(page, 'state-good')) === 'PAUSED', 10000, 'the subscription to show PAUSED');
  const before = await sinkCount();
  for (let i = 0; i < 10; i++) await publish('test.paused', '{}');
  await waitFor(async () => Number(await text(page, 'backlog-good')) >= 10, 15000, 'the backlog of the paused subscription to show the 10 events');
  const after = await sinkCount();
  if (after !== before) fail('the paused subscription delivered ' + (after - before) + ' events');
  console.log('paused: backlog ' + (await text(page, 'backlog-good')) + ', sink count stays ' + after);
  console.log('PAUSED_COUNT=' + after);

  // An event whose data holds markup, and a sink whose error text does,
  // are shown as text.
  await publish('test.xss', '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">', 'text/html');
  await waitFor(async () => Number(await text(page, 'dlcount-orders-dead')) >= 1, 15000, 'the dead-letter topic to hold the event');
  await page.click('[data-testid="show-dl-orders-dead"]');
  await page.waitForSelector('#dl-events tbody tr[data-testid^="dle-"]', { timeout: 10000 });
  const dataCell = await page.locator('#dl-events td[data-testid^="dle-data-"]').first().textContent();
  const errCell = await page.locator('#dl-events td[data-testid^="dle-error-"]').first().textContent();
  if (!dataCell.includes('<script>window.__xss=1</script>')) fail('the event data is not shown as text: ' + dataCell);
  if (!errCell.includes('<img src=x onerror=')) fail('the delivery error is not shown as text: ' + errCell);
  const xss = await page.evaluate(() => window.__xss);
  if (xss !== undefined) fail('markup from an event ran: window.__xss = ' + xss);
  const injected = await page.locator('#dl-events img, #dl-events script, #main img').count();
  if (injected) fail(injected + ' elements were made from event data');
  console.log('markup shown as text, not run');

  // Re-drive the dead letter from the page.
  await page.locator('#dl-events input.dl-pick').first().check();
  await page.click('#dl-redrive-selected');
  await waitFor(async () => /re-driven 1\b/.test(await text(page, 'dl-result')), 10000, 'the re-drive result');
  console.log('re-drive: ' + (await text(page, 'dl-result')));

  await page.screenshot({ path: need('SCREENSHOT'), fullPage: true });
  if (problems.length) fail(problems.join('\n'));
  await browser.close();
  console.log('ok');
})().catch((e) => fail(e && e.stack || String(e)));
