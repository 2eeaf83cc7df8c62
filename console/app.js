// Encore's console: live channels with a player each, jobs (submit, follow, cancel, retry,
// play), this node's hardware and load, and charts of the last minutes. Everything comes from
// the daemon itself: the /v1 API, /metrics, and the origin's streams; nothing is loaded from
// anywhere else. With an API token set, the page asks for it once and keeps it in this tab's
// session storage.
'use strict';

const POLL_MS = 2000;
const HISTORY = 150; // chart points: 5 minutes at one every 2 s
const TOKEN_KEY = 'encore-api-token';
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
const COLOURS = ['#58a6ff', '#3fb950', '#d29922', '#f85149', '#bc8cff', '#39c5cf', '#ff7b72', '#a5d6ff'];

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function status(text) { $('status').textContent = text; }

// ---- The API, with the token asked for when the daemon wants one ----

let tokenPrompt = null;

function askToken(refused) {
  if (!tokenPrompt) {
    tokenPrompt = new Promise((resolve) => {
      $('token-error').hidden = !refused;
      $('token-input').value = '';
      $('token-dialog').showModal();
      $('token-form').addEventListener('submit', () => {
        sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
        tokenPrompt = null;
        resolve();
      }, { once: true });
    });
  }
  return tokenPrompt;
}

async function api(path, init = {}) {
  for (;;) {
    const headers = new Headers(init.headers || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.set('Authorization', `Bearer ${token}`);
    const response = await fetch(path, { ...init, headers });
    if (response.status !== 401) return response;
    await askToken(Boolean(token));
  }
}

async function json(path, init) {
  const r = await api(path, init);
  if (!r.ok) throw new Error(await problemText(r));
  return r.status === 204 ? null : r.json();
}

async function problemText(r) {
  try {
    const p = await r.json();
    return p.detail || p.title || `${r.status}`;
  } catch {
    return `${r.status} ${r.statusText}`;
  }
}

// ---- Players ----

// Plays `url` in `video`, sending CMCD with `contentId`; `onFatal` hears of an error the
// player cannot get over. Returns what stops it.
function attachPlayer(video, kind, url, contentId, onFatal = () => {}) {
  if (kind === 'dash' && window.dashjs) {
    const player = dashjs.MediaPlayer().create();
    player.updateSettings({ streaming: { cmcd: { enabled: true, cid: contentId } } });
    player.on(dashjs.MediaPlayer.events.ERROR, (e) => onFatal(String((e.error && e.error.message) || e.error)));
    player.initialize(video, url, true);
    return () => player.reset();
  }
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls({ cmcd: { contentId, useHeaders: false } });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) onFatal(d.details); });
    hls.loadSource(url);
    hls.attachMedia(video);
    return () => hls.destroy();
  }
  video.src = url; // a browser that plays HLS itself
  return () => video.removeAttribute('src');
}

function playerKind() { return $('player-kind').value; }

// ---- Live channels ----

const channelCards = new Map(); // name → { card, stop, kind }

function renderChannels(channels, rates, latency, viewers) {
  const box = $('channels');
  const placeholder = $('no-channels');
  if (placeholder) placeholder.hidden = channels.length > 0;
  const seen = new Set();
  for (const ch of channels) {
    seen.add(ch.name);
    let entry = channelCards.get(ch.name);
    if (!entry) {
      const video = el('video', { muted: '', playsinline: '', autoplay: '', 'data-channel': ch.name });
      video.muted = true;
      const card = el('div', { class: 'card', 'data-channel': ch.name },
        el('h3', {}, ch.name, el('span', { class: 'badge' })),
        video,
        el('p', { class: 'muted info' }),
        el('table', {}, el('thead', {}, el('tr', {},
          el('th', {}, 'Rung'), el('th', {}, 'Real time'), el('th', {}, 'Encode fps'))), el('tbody')));
      box.append(card);
      entry = { card, video, stop: null, kind: null, failed: false };
      channelCards.set(ch.name, entry);
    }
    // A player starts once the channel publishes, and starts again after a fatal error (the
    // channel restarted, the network dropped) or when another player is chosen.
    const publishing = ch.state === 'on_air' || ch.state === 'on_slate';
    if (publishing && (entry.kind !== playerKind() || entry.failed)) {
      if (entry.stop) entry.stop();
      entry.kind = playerKind();
      entry.failed = false;
      entry.stop = attachPlayer(entry.video, entry.kind, entry.kind === 'dash' ? ch.dash : ch.hls, ch.name,
        (why) => { entry.failed = true; status(`${ch.name}: player error ${why}; starting it again`); });
    }
    const badge = entry.card.querySelector('.badge');
    badge.className = `badge ${ch.state}`;
    badge.textContent = ch.state.replace('_', ' ');
    const publish = latency.get(ch.name);
    entry.card.querySelector('.info').textContent =
      `${ch.input} · restarts ${ch.restarts} · viewers ${viewers.get(ch.name) ?? 0}` +
      (publish !== undefined ? ` · publish latency ${(publish * 1000).toFixed(0)} ms` : '') +
      (ch.error ? ` · ${ch.error}` : '');
    const rows = ch.renditions.map((r) => {
      const fps = rates.get(`${ch.name}/${r.id}`);
      return el('tr', {}, el('td', {}, r.id),
        el('td', { class: 'num' }, r.realtime_ratio != null ? `${r.realtime_ratio.toFixed(2)}×` : '–'),
        el('td', { class: 'num' }, fps !== undefined ? fps.toFixed(1) : '–'));
    });
    entry.card.querySelector('tbody').replaceChildren(...rows);
  }
  for (const [name, entry] of channelCards) {
    if (!seen.has(name)) {
      if (entry.stop) entry.stop();
      entry.card.remove();
      channelCards.delete(name);
    }
  }
}

// ---- Jobs ----

const jobStreams = new Map(); // job id → AbortController of its event stream
const jobs = new Map(); // job id → last view (with progress from the stream)

// Follows a job's Server-Sent Events through fetch (EventSource cannot send the token).
async function followJob(id) {
  if (jobStreams.has(id)) return;
  const abort = new AbortController();
  jobStreams.set(id, abort);
  try {
    const r = await api(`/v1/jobs/${encodeURIComponent(id)}/events`, { signal: abort.signal });
    if (!r.ok) return;
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        onJobEvent(id, buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') console.warn('job events', id, e);
  } finally {
    jobStreams.delete(id);
  }
}

function onJobEvent(id, block) {
  let kind = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) kind = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join('\n'));
  const job = jobs.get(id) || { id };
  if (kind === 'state') Object.assign(job, payload);
  else if (kind === 'progress') Object.assign(job, { state: 'running', ...payload });
  jobs.set(id, job);
  renderJobs();
}

function renderJobs() {
  const list = [...jobs.values()].sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
  const rows = list.slice(0, 30).map((job) => {
    const percent = job.state === 'succeeded' ? 100 : (job.percent || 0);
    const progress = el('td', { class: 'num' });
    if (job.state === 'running' || job.state === 'queued') {
      progress.append(el('span', { class: 'bar' }, el('span', { style: `width:${percent.toFixed(1)}%` })),
        ` ${percent.toFixed(0)}%` + (job.fps ? ` · ${job.fps.toFixed(0)} fps` : '') +
        (job.eta_s != null ? ` · ${Math.round(job.eta_s)} s left` : ''));
    } else if (job.error) {
      progress.textContent = job.error.message || job.error.code || '';
    }
    const actions = el('td');
    if (!FINAL.has(job.state)) {
      actions.append(el('button', { type: 'button', onclick: () => act('DELETE', `/v1/jobs/${job.id}`) }, 'Cancel'));
    } else if (job.state !== 'succeeded') {
      actions.append(el('button', { type: 'button', onclick: () => act('POST', `/v1/jobs/${job.id}/retry`) }, 'Retry'));
    }
    if (job.state === 'succeeded' && job.playback) {
      actions.append(el('button', { type: 'button', class: 'play', onclick: () => playJob(job) }, 'Play'));
    }
    return el('tr', { 'data-job': job.id, 'data-state': job.state },
      el('td', { title: job.id }, job.id.slice(0, 8)),
      el('td', {}, job.input || ''),
      el('td', {}, el('span', { class: `badge ${job.state}` }, job.state || '')),
      progress, actions);
  });
  $('jobs').querySelector('tbody').replaceChildren(...rows);
}

async function act(method, path) {
  try {
    await json(path, { method });
    await refreshJobs();
  } catch (e) {
    status(`${method} ${path}: ${e.message}`);
  }
}

let stopJobPlayer = null;

function playJob(job) {
  if (stopJobPlayer) stopJobPlayer();
  $('job-player').hidden = false;
  $('job-player-id').textContent = job.id.slice(0, 8);
  const kind = playerKind();
  stopJobPlayer = attachPlayer($('job-video'), kind, kind === 'dash' ? job.playback.dash : job.playback.hls, job.id);
}

async function refreshJobs() {
  const page = await json('/v1/jobs?limit=30');
  for (const view of page.jobs) {
    const known = jobs.get(view.id);
    // A running job's stream is fresher than the list.
    if (!known || !jobStreams.has(view.id) || FINAL.has(view.state)) jobs.set(view.id, { ...known, ...view });
    if (!FINAL.has(view.state)) followJob(view.id);
  }
  renderJobs();
}

async function submitJob(event) {
  event.preventDefault();
  const form = event.target;
  const body = { input: form.input.value.trim(), codec: form.codec.value, priority: Number(form.priority.value || 0) };
  if (form.ladder.value.trim()) body.ladder = form.ladder.value.trim();
  $('job-form-error').textContent = '';
  const r = await api('/v1/jobs', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  if (!r.ok) {
    $('job-form-error').textContent = await problemText(r);
    return;
  }
  const job = await r.json();
  jobs.set(job.id, job);
  renderJobs();
  followJob(job.id);
}

// ---- Node ----

function renderNode(node) {
  $('node-name').textContent = `${node.name}${node.profile ? ` · ${node.profile}` : ''}`;
  const used = node.capacity > 0 ? (100 * node.used) / node.capacity : 0;
  const backends = node.backends.map((b) => el('tr', {},
    el('td', {}, b.name), el('td', {}, el('span', { class: `badge ${b.usable ? 'on_air' : 'failed'}` }, b.usable ? 'usable' : 'not usable')),
    el('td', { class: 'muted' }, b.reason || '')));
  $('node').replaceChildren(
    el('p', {}, `Capacity ${node.used.toFixed(2)} of ${node.capacity.toFixed(2)} units `,
      el('span', { class: 'bar' }, el('span', { style: `width:${Math.min(100, used).toFixed(1)}%` })),
      ` · NVENC sessions ${node.nvenc_sessions_open}${node.nvenc_sessions_cap != null ? ` of ${node.nvenc_sessions_cap}` : ''}`),
    el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Backend'), el('th', {}, ''), el('th', {}, 'Why (not)'))),
      el('tbody', {}, ...backends)));
}

// ---- Metrics and charts ----

// Prometheus text → [{ name, labels, value }].
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

let previous = null; // the last scrape, for rates
const series = { fps: new Map(), requests: new Map(), latency: new Map() };

function push(map, key, value) {
  if (!map.has(key)) map.set(key, []);
  const points = map.get(key);
  points.push(value);
  while (points.length > HISTORY) points.shift();
}

// Quantile q of a histogram's bucket deltas (upper bounds → counts), as Prometheus does it.
function quantile(q, buckets) {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) || 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let below = 0;
  let lower = 0;
  for (const le of bounds) {
    const count = buckets.get(le);
    if (count >= rank) {
      if (le === Infinity) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(count - below, 1e-9);
    }
    below = count;
    lower = le;
  }
  return lower;
}

// From two scrapes: encode fps per rung, requests/s by status, p99 latency, and each channel's
// mean segment publish latency over the interval; from the last, each channel's viewers.
function sample(now) {
  const rates = new Map();
  const publish = new Map();
  const viewers = new Map(
    now.metrics.filter((m) => m.name === 'encore_channel_viewers').map((m) => [m.labels.channel, m.value]));
  if (previous) {
    const seconds = (now.at - previous.at) / 1000;
    const before = new Map(previous.metrics.map((m) => [m.name + JSON.stringify(m.labels), m.value]));
    const delta = (m) => m.value - (before.get(m.name + JSON.stringify(m.labels)) ?? m.value);
    const byStatus = new Map();
    const buckets = new Map();
    const publishSums = new Map();
    for (const m of now.metrics) {
      if (m.name === 'encore_rung_frames_encoded_total') {
        rates.set(`${m.labels.channel}/${m.labels.rendition}`, delta(m) / seconds);
      } else if (m.name === 'encore_origin_requests_total') {
        byStatus.set(m.labels.status, (byStatus.get(m.labels.status) || 0) + delta(m) / seconds);
      } else if (m.name === 'encore_origin_request_duration_seconds_bucket') {
        const le = m.labels.le === '+Inf' ? Infinity : Number(m.labels.le);
        buckets.set(le, (buckets.get(le) || 0) + delta(m));
      } else if (m.name.startsWith('encore_segment_publish_latency_seconds_')) {
        const s = publishSums.get(m.labels.channel) || {};
        if (m.name.endsWith('_sum')) s.sum = delta(m);
        if (m.name.endsWith('_count')) s.count = delta(m);
        publishSums.set(m.labels.channel, s);
      }
    }
    for (const [key, fps] of rates) push(series.fps, key, fps);
    for (const [code, perSecond] of byStatus) push(series.requests, code, perSecond);
    const p99 = quantile(0.99, buckets);
    push(series.latency, 'p99', p99 === undefined ? 0 : p99 * 1000);
    for (const [channel, s] of publishSums) if (s.count > 0) publish.set(channel, s.sum / s.count);
  }
  previous = now;
  return { rates, publish, viewers };
}

function drawChart(svgId, legendId, map) {
  const svg = $(svgId);
  const [w, h, pad] = [400, 140, 24];
  let max = 0;
  for (const points of map.values()) for (const v of points) max = Math.max(max, v);
  max = max > 0 ? max * 1.1 : 1;
  const ns = 'http://www.w3.org/2000/svg';
  const parts = [];
  const axis = document.createElementNS(ns, 'text');
  axis.setAttribute('x', 2);
  axis.setAttribute('y', 10);
  axis.textContent = max.toPrecision(3);
  parts.push(axis);
  const legend = [];
  [...map.keys()].sort().forEach((key, i) => {
    const points = map.get(key);
    const colour = COLOURS[i % COLOURS.length];
    const step = (w - pad) / (HISTORY - 1);
    const offset = HISTORY - points.length;
    const d = points.map((v, j) => `${j ? 'L' : 'M'}${(pad + (offset + j) * step).toFixed(1)},${(h - 4 - (v / max) * (h - 16)).toFixed(1)}`).join('');
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    path.setAttribute('fill', 'none');
    path.setAttribute('stroke', colour);
    path.setAttribute('stroke-width', '1.5');
    parts.push(path);
    const last = points[points.length - 1];
    legend.push(el('span', {}, el('i', { style: `background:${colour}` }), `${key} ${last.toFixed(1)}`));
  });
  svg.replaceChildren(...parts);
  $(legendId).replaceChildren(...legend);
}

// ---- The loop ----

async function refresh() {
  try {
    const [channels, node, metricsText] = await Promise.all([
      json('/v1/channels'), json('/v1/node'), api('/metrics').then((r) => (r.ok ? r.text() : '')),
    ]);
    const { rates, publish, viewers } = sample({ at: Date.now(), metrics: parseMetrics(metricsText) });
    renderChannels(channels.channels, rates, publish, viewers);
    renderNode(node);
    await refreshJobs();
    drawChart('chart-fps', 'legend-fps', series.fps);
    drawChart('chart-requests', 'legend-requests', series.requests);
    drawChart('chart-latency', 'legend-latency', series.latency);
    status(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    status(`cannot reach the daemon: ${e.message}`);
  }
}

function start() {
  $('job-form').addEventListener('submit', (e) => submitJob(e).catch((err) => { $('job-form-error').textContent = err.message; }));
  $('job-player-close').addEventListener('click', () => {
    if (stopJobPlayer) stopJobPlayer();
    stopJobPlayer = null;
    $('job-player').hidden = true;
  });
  $('player-kind').addEventListener('change', () => refresh());
  const loop = async () => {
    await refresh();
    setTimeout(loop, POLL_MS);
  };
  loop();
}

start();
