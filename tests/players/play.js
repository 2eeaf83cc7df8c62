// Plays a stream in headless Chromium with a real web player and prints what happened as JSON.
//
//   node play.js hls|dash URL SECONDS
//
// With PLAYER_CMCD=SESSION_ID in the environment, the player sends CMCD (CTA-5004) with that
// session id, in the query string.
//
// The player library is hls.js or dash.js from this folder's node_modules (`npm ci`); Chromium is
// the system's (`CHROMIUM`, default /usr/bin/chromium). The page starts muted playback, records
// every player error, and after SECONDS of wall time reports the video element's state, with
// `advanced`: the media time played since the first 'playing' event, and `stalls`: the media
// times at which playback stopped for data ('waiting') after it had started.
'use strict';
const puppeteer = require('puppeteer-core');

async function main() {
  const [kind, url, seconds] = process.argv.slice(2);
  if (!['hls', 'dash'].includes(kind) || !url) {
    console.error('usage: node play.js hls|dash URL SECONDS');
    process.exit(2);
  }
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--autoplay-policy=no-user-gesture-required',
           '--mute-audio', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    const console_lines = [];
    page.on('console', (m) => { if (m.type() === 'error') console_lines.push(m.text()); });
    await page.setContent('<!doctype html><body><video id="v" muted playsinline></video></body>');
    const library = kind === 'hls' ? 'hls.js/dist/hls.min.js' : 'dashjs/dist/dash.all.min.js';
    await page.addScriptTag({ path: require.resolve(library) });
    await page.evaluate((kind, url, cmcdSession) => {
      const video = document.getElementById('v');
      window.report = { errors: [], levels: 0, firstPlayingTime: null, stalls: [] };
      // Media time at the first 'playing': live DASH starts far from zero.
      video.addEventListener('playing', () => {
        if (window.report.firstPlayingTime === null) window.report.firstPlayingTime = video.currentTime;
      });
      // Every stop for data once playing ('waiting'), at its media time: the player's stalls.
      video.addEventListener('waiting', () => {
        if (window.report.firstPlayingTime !== null) window.report.stalls.push(video.currentTime);
      });
      if (kind === 'hls') {
        const cmcd = cmcdSession ? { sessionId: cmcdSession, contentId: 'test', useHeaders: false } : undefined;
        const hls = new Hls({ enableWorker: false, cmcd });
        hls.on(Hls.Events.ERROR, (_, d) => window.report.errors.push(
          { fatal: !!d.fatal, type: d.type, details: d.details, reason: d.reason || String(d.error || '') }));
        hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => { window.report.levels = d.levels.length; });
        hls.loadSource(url);
        hls.attachMedia(video);
      } else {
        const player = dashjs.MediaPlayer().create();
        player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_NONE } });
        if (cmcdSession) {
          player.updateSettings({ streaming: { cmcd: { enabled: true, sid: cmcdSession, cid: 'test', mode: 'query' } } });
        }
        player.on(dashjs.MediaPlayer.events.ERROR, (e) => window.report.errors.push(
          { fatal: true, type: 'dash', details: String(e.error && (e.error.message || e.error.code) || e.error) }));
        player.on(dashjs.MediaPlayer.events.STREAM_INITIALIZED, () => {
          window.report.levels = player.getBitrateInfoListFor('video').length;
        });
        player.initialize(video, url, true);
      }
      video.play().catch(() => {});
    }, kind, url, process.env.PLAYER_CMCD || '');
    await new Promise((r) => setTimeout(r, Number(seconds || 10) * 1000));
    const state = await page.evaluate(() => {
      const v = document.getElementById('v');
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
      const buffered = [];
      for (let i = 0; i < v.buffered.length; i++) buffered.push([v.buffered.start(i), v.buffered.end(i)]);
      const start = window.report.firstPlayingTime;
      const advanced = start === null ? 0 : v.currentTime - start;
      return Object.assign({}, window.report, {
        currentTime: v.currentTime, advanced, readyState: v.readyState, paused: v.paused, ended: v.ended,
        width: v.videoWidth, height: v.videoHeight, buffered,
        totalFrames: q.totalVideoFrames || 0, droppedFrames: q.droppedVideoFrames || 0,
        mediaError: v.error ? { code: v.error.code, message: v.error.message } : null,
      });
    });
    state.console = console_lines;
    console.log(JSON.stringify(state));
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
