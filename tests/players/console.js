// Drives Encore's web console in headless Chromium as an operator would and prints what
// happened as JSON.
//
//   node console.js BASE_URL TOKEN INPUT SCREENSHOT.png
//
// Opens BASE_URL/, gives the token when the page asks for it, waits for the channel cards and
// measures how far the first channel's player advances, submits INPUT through the job form,
// waits for that job to show `succeeded`, plays it, and saves a screenshot of the whole page.
// Every request the page makes is recorded: `offsite` lists those that left 127.0.0.1.
'use strict';
const puppeteer = require('puppeteer-core');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const [base, token, input, screenshot] = process.argv.slice(2);
  if (!screenshot) {
    console.error('usage: node console.js BASE_URL TOKEN INPUT SCREENSHOT.png');
    process.exit(2);
  }
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--autoplay-policy=no-user-gesture-required',
           '--mute-audio', '--disable-dev-shm-usage', '--window-size=1400,1200'],
  });
  const report = { channels: [], advanced: 0, asked_token: false, job_state: null, job_played: 0,
                   offsite: [], requests: 0, page_errors: [], console_errors: [] };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 1200 });
    page.on('request', (r) => {
      report.requests += 1;
      const host = new URL(r.url()).hostname;
      if (!['127.0.0.1', ''].includes(host) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) {
        report.offsite.push(r.url());
      }
    });
    page.on('pageerror', (e) => report.page_errors.push(String(e)));
    page.on('console', (m) => {
      if (['error', 'warn'].includes(m.type())) report.console_errors.push(m.text());
    });
    await page.goto(`${base}/`, { waitUntil: 'domcontentloaded' });

    // The token, asked once.
    await page.waitForFunction(() => document.getElementById('token-dialog').open
      || document.querySelector('.card[data-channel]'), { timeout: 20000 });
    if (await page.evaluate(() => document.getElementById('token-dialog').open)) {
      report.asked_token = true;
      await page.type('#token-input', token);
      await page.click('#token-form button[type=submit]');
    }

    // The channels, and the first one's player.
    await page.waitForSelector('.card[data-channel]', { timeout: 20000 });
    report.channels = await page.$$eval('.card[data-channel]', (cards) => cards.map((c) => c.dataset.channel));
    let start = null;
    const deadline = Date.now() + 45000;
    while (Date.now() < deadline) {
      const t = await page.$eval('.card[data-channel] video', (v) => v.currentTime);
      if (start === null && t > 0) start = t;
      if (start !== null) report.advanced = t - start;
      if (report.advanced >= 6) break;
      await sleep(500);
    }

    // A job through the form.
    await page.type('#job-form input[name=input]', input);
    await page.type('#job-form input[name=ladder]', '240:400k');
    await page.click('#job-form button[type=submit]');
    const jobDeadline = Date.now() + 180000;
    while (Date.now() < jobDeadline) {
      report.job_state = await page.evaluate(() => {
        const row = document.querySelector('#jobs tbody tr[data-job]');
        return row ? row.dataset.state : null;
      });
      const error = await page.$eval('#job-form-error', (e) => e.textContent);
      if (error) { report.job_error = error; break; }
      if (['succeeded', 'failed', 'cancelled'].includes(report.job_state)) break;
      await sleep(500);
    }
    report.channel_video = await page.$eval('.card[data-channel] video', (v) => ({
      readyState: v.readyState, paused: v.paused, error: v.error && v.error.message, src: v.currentSrc }));
    report.status = await page.$eval('#status', (e) => e.textContent);
    if (report.job_state === 'succeeded') {
      await page.click('#jobs tbody tr[data-state=succeeded] button.play');
      const playDeadline = Date.now() + 20000;
      while (Date.now() < playDeadline && report.job_played < 1) {
        report.job_played = await page.$eval('#job-video', (v) => v.currentTime);
        await sleep(300);
      }
    }
    await sleep(2500); // one more poll, so the charts have their points
    await page.screenshot({ path: screenshot, fullPage: true });
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(report));
}

main().catch((e) => { console.error(e); process.exit(1); });
