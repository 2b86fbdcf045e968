// The Lifeboat console: one page over the agent's own endpoints (GET /status,
// /history, /plan; POST /backup, /replicate, /drill). No framework, no build
// step: every value is put into the page as text, never as markup.
'use strict';

const STATUS_EVERY_MS = 2000;
const HISTORY_EVERY_MS = 30000;
const CHART_HOURS = 24;

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : String(c));
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// --- formatting

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 90) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} d`;
}
function ago(iso) {
  if (!iso) return 'never';
  return `${duration(Math.max(0, (Date.now() - Date.parse(iso)) / 1000))} ago`;
}
function until(iso) {
  if (!iso) return '—';
  const s = (Date.parse(iso) - Date.now()) / 1000;
  return s <= 0 ? 'due' : `in ${duration(s)}`;
}
function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}
/** green within the target, amber up to twice it, red beyond; grey before the first snapshot. */
function rpoColour(ageS, targetS) {
  if (ageS === null || ageS === undefined) return 'grey';
  if (!targetS || ageS <= targetS) return 'green';
  return ageS <= 2 * targetS ? 'amber' : 'red';
}

// --- talking to the agent

class SignInNeeded extends Error {}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method === 'POST') headers['X-Lifeboat-Request'] = 'console';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) throw new SignInNeeded();
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(data.code ? `${data.error} [${data.code}]` : data.error ?? `HTTP ${res.status}`);
  return data;
}

function toast(text, error) {
  const t = h('div', { class: error ? 'toast error' : 'toast', role: error ? 'alert' : 'status' }, text);
  $('toasts').append(t);
  setTimeout(() => t.remove(), error ? 15000 : 6000);
}

/** Asks in a dialog; resolves true when the person confirms. */
function confirmAction(text) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

/** A button that asks first, then runs the action, disabled while it runs. */
function actionButton(label, question, run, describe) {
  const b = h('button', { type: 'button' }, label);
  b.addEventListener('click', async () => {
    if (!(await confirmAction(question))) return;
    b.disabled = true;
    try {
      const result = await run();
      toast(describe(result));
      await refresh();
      await refreshHistory();
    } catch (err) {
      if (err instanceof SignInNeeded) showSignIn();
      else toast(err.message, true);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

// --- rendering

let last = null;
let history = {};

function render(st) {
  last = st;
  $('host').textContent = st.agent.host;
  $('agent').textContent = [
    st.agent.version ? `Lifeboat ${st.agent.version}` : null,
    st.agent.uptime_s !== null ? `up ${duration(st.agent.uptime_s)}` : null,
    st.engine.reachable ? `Docker ${st.engine.version ?? ''} reachable` : `Docker engine unreachable${st.engine.last_error ? `: ${st.engine.last_error}` : ''}`,
    st.agent.jobs?.running ? `running: ${st.agent.jobs.running}` : null,
    `updated ${new Date().toLocaleTimeString()}`,
  ].filter(Boolean).join(' · ');
  renderVerdict(st);
  renderVolumes(st);
  renderPeers(st);
  renderReplicas(st);
  renderCharts(st);
}

function renderVerdict(st) {
  const problems = [];
  if (st.engine.reachable === false) problems.push('the Docker engine is unreachable');
  const colours = st.volumes.map((v) => rpoColour(v.last_snapshot?.age_s, v.rpo_target_s));
  const red = colours.filter((c) => c === 'red').length;
  const failing = st.volumes.filter((v) => v.last_error).length;
  if (red) problems.push(`${red} volume${red === 1 ? '' : 's'} far past the RPO target`);
  if (failing) problems.push(`${failing} volume${failing === 1 ? '' : 's'} failing to back up`);
  for (const p of st.peers) if (p.failures >= 3) problems.push(`peer ${p.name} unreachable`);
  for (const t of st.targets) if (t.failures >= 3) problems.push(`target ${t.name} unreachable`);
  for (const d of st.drills.last) if (!d.ok) problems.push(`drill of ${d.source} failed`);
  for (const m of st.missing) problems.push(`volume ${m} missing`);
  const v = $('verdict');
  if (problems.length > 0) {
    v.className = 'bad';
    v.textContent = `Needs attention: ${problems.join('; ')}`;
  } else if (colours.includes('amber')) {
    v.className = 'warn';
    v.textContent = 'Protected, with a volume past its RPO target';
  } else {
    v.className = 'ok';
    v.textContent = st.volumes.length === 0 ? 'Running; no volume tracked yet' : `All ${st.volumes.length} volume${st.volumes.length === 1 ? '' : 's'} within their RPO target`;
  }
}

function renderVolumes(st) {
  const body = $('volumes').querySelector('tbody');
  body.replaceChildren(...st.volumes.map((v) => {
    const age = v.last_snapshot?.age_s ?? null;
    const colour = rpoColour(age, v.rpo_target_s);
    const lb = v.last_backup;
    const state = v.running ? 'backing up…' : v.last_error ? `failed ${ago(v.last_error.time)}: ${v.last_error.message}` : null;
    return h('tr', { 'data-volume': v.name },
      h('td', {}, h('span', { class: `dot ${colour}`, title: colour }), v.name, state ? h('div', { class: v.last_error && !v.running ? 'bad wrap' : 'muted' }, state) : null),
      h('td', { class: 'num', 'data-rpo': colour }, `${age === null ? 'none yet' : duration(age)} / ${duration(v.rpo_target_s)}`),
      h('td', { class: 'num' }, v.last_snapshot ? h('span', { title: v.last_snapshot.id }, `${ago(lb?.time ?? v.last_snapshot.time)} · ${v.last_snapshot.id.slice(0, 8)}`) : 'never'),
      h('td', { class: 'num' }, lb ? duration(lb.duration_ms / 1000) : '—'),
      h('td', { class: 'num' }, lb?.frozen_ms ? duration(lb.frozen_ms / 1000) : lb ? 'not frozen' : '—'),
      h('td', { class: 'num' }, lb ? bytes(lb.bytes_total) : '—'),
      h('td', { class: 'num' }, lb ? bytes(lb.bytes_new) : '—'),
      h('td', { class: 'num' }, v.continuous ? 'continuous' : until(v.next_run)),
      h('td', {}, actionButton('Back up now', `Back up volume ${v.name} now?`, () => call('POST', `/backup?volume=${encodeURIComponent(v.name)}`),
        (r) => r.outcome === 'success' ? `Volume ${v.name} backed up: snapshot ${r.snapshot.id.slice(0, 8)}` : `Backup of ${v.name}: ${r.outcome}${r.error ? ` (${r.error.message})` : ''}`)),
    );
  }));
  $('volumes-empty').hidden = st.volumes.length > 0;
}

function renderPeers(st) {
  $('peers').querySelector('tbody').replaceChildren(...st.peers.filter((p) => p.push).map((p) => h('tr', { 'data-peer': p.name },
    h('td', {}, h('span', { class: `dot ${p.failures >= 3 ? 'red' : p.failures > 0 ? 'amber' : 'green'}` }), p.name, h('div', { class: 'muted' }, p.address)),
    h('td', {}, p.state, p.next_retry ? ` (retry ${until(p.next_retry)})` : ''),
    h('td', { class: 'num' }, duration(p.lag_s)),
    h('td', { class: 'num' }, p.pending ?? '—'),
    h('td', { class: 'num' }, bytes(p.bytes_sent_total)),
    h('td', { class: 'num' }, ago(p.last_success)),
    h('td', { class: p.last_error ? 'bad wrap' : 'muted' }, p.last_error ?? '—'),
    h('td', {}, actionButton('Replicate now', `Push to peer ${p.name} now?`, () => call('POST', `/replicate?peer=${encodeURIComponent(p.name)}`),
      (outcomes) => outcomes.map((o) => o.ok
        ? `Replicated to ${o.peer}: ${o.report.snapshots} new snapshot${o.report.snapshots === 1 ? '' : 's'}, ${bytes(o.report.bytes_sent)} sent`
        : `Push to ${o.peer} failed: ${o.error.message} [${o.error.code}]`).join('; '))),
  )));
  $('targets').querySelector('tbody').replaceChildren(...st.targets.map((t) => h('tr', { 'data-target': t.name },
    h('td', {}, h('span', { class: `dot ${t.failures >= 3 ? 'red' : t.failures > 0 ? 'amber' : 'green'}` }), t.name, h('div', { class: 'muted' }, t.location)),
    h('td', {}, t.state),
    h('td', { class: 'num' }, ago(t.last_attempt)),
    h('td', { class: 'num' }, t.last_push ? bytes(t.last_push.bytes) : '—'),
    h('td', { class: 'num' }, ago(t.last_success)),
    h('td', { class: t.last_error ? 'bad wrap' : 'muted' }, t.last_error ?? '—'),
  )));
  $('peers').hidden = !st.peers.some((p) => p.push);
  $('targets').hidden = st.targets.length === 0;
  $('peers-empty').hidden = st.peers.some((p) => p.push) || st.targets.length > 0;
}

function renderReplicas(st) {
  const held = st.peers.filter((p) => p.replica);
  const lastDrill = new Map(st.drills.last.map((d) => [d.source, d]));
  $('replicas').querySelector('tbody').replaceChildren(...held.map((p) => {
    const d = lastDrill.get(p.name);
    const past = st.drills.history?.[p.name] ?? [];
    return h('tr', { 'data-source': p.name },
      h('td', {}, p.name),
      h('td', { class: 'num' }, p.replica.snapshots),
      h('td', { class: 'num' }, ago(p.replica.newest)),
      h('td', { class: 'num' }, ago(p.replica.last_received)),
      h('td', { class: d ? (d.ok ? 'ok' : 'bad wrap') : 'muted' }, d ? `${d.ok ? 'passed' : 'FAILED'} ${ago(d.at)}${d.duration_ms ? ` in ${duration(d.duration_ms / 1000)}` : ''}${d.error ? `: ${d.error}` : ''}` : 'never drilled'),
      h('td', {}, past.map((r) => h('span', { class: `chip ${r.ok ? 'pass' : 'fail'}`, title: `${r.at}: ${r.ok ? 'passed' : `failed${r.error ? `: ${r.error}` : ''}`}` }))),
      h('td', {},
        h('button', { type: 'button', onclick: () => showPlan(p.name) }, 'Recovery plan'), ' ',
        actionButton('Run drill', `Run a DR drill of ${p.name} now? Its containers are started in isolation on this engine, checked and removed.`,
          () => call('POST', `/drill?source=${encodeURIComponent(p.name)}`),
          (records) => records.map((r) => `Drill of ${r.source}: ${r.ok ? 'passed' : `FAILED${r.error ? `: ${r.error}` : ''}`}`).join('; ') || 'Nothing to drill')),
    );
  }));
  $('replicas').hidden = held.length === 0;
  $('replicas-empty').hidden = held.length > 0;
  $('drill-schedule').textContent = st.drills.schedule ? `Drills run on "${st.drills.schedule}", next ${until(st.drills.next_run)}.` : 'No drill schedule ([drill] schedule).';
}

async function showPlan(source) {
  $('plan').hidden = false;
  $('plan-title').textContent = `Recovery plan for ${source} (dry run)`;
  $('plan-body').replaceChildren(h('p', { class: 'muted' }, 'Checking…'));
  try {
    const r = await call('GET', `/plan?source=${encodeURIComponent(source)}`);
    // the report's own list names every blocker once, with what it blocks
    const blockers = r.blockers;
    const parts = [
      h('p', { class: blockers.length ? 'bad' : 'ok' }, blockers.length ? `${blockers.length} blocker${blockers.length === 1 ? '' : 's'}: not everything can be recovered here` : `Recoverable here: ${r.containers.length} container${r.containers.length === 1 ? '' : 's'}, ${r.volumes.length} volume${r.volumes.length === 1 ? '' : 's'}${r.at ? `, data as of ${new Date(r.at).toLocaleString()}` : ''}`),
      h('ul', { class: 'plan bad' }, blockers.map((b) => h('li', {}, b))),
      h('ul', { class: 'plan' },
        r.containers.map((c) => h('li', {}, `container ${c.name} → ${c.target}: ${c.action}${c.start ? ', started' : ''}`)),
        r.volumes.map((v) => h('li', {}, `volume ${v.name} → ${v.target}: ${v.action} from snapshot ${v.snapshot.slice(0, 8)} (${ago(v.time)})`)),
        r.images.map((i) => h('li', {}, `image ${i.tags[0] ?? i.id.slice(0, 19)} (${i.platform}): from ${i.source}`)),
      ),
      h('ul', { class: 'plan warn' }, r.warnings.map((w) => h('li', {}, w))),
    ];
    $('plan-body').replaceChildren(...parts.filter((p) => p.childElementCount > 0 || p.tagName === 'P'));
  } catch (err) {
    if (err instanceof SignInNeeded) return showSignIn();
    $('plan-body').replaceChildren(h('p', { class: 'bad' }, err.message));
  }
}

/** Per volume: the recovery point's age over the last day (a sawtooth against the target) and what each backup added. */
function renderCharts(st) {
  const now = Date.now();
  const from = now - CHART_HOURS * 3600_000;
  const W = 380, H1 = 90, H2 = 36, PAD = 28;
  const x = (t) => PAD + ((t - from) / (now - from)) * (W - PAD - 4);
  $('charts').replaceChildren(...st.volumes.map((v) => {
    const points = (history[v.name] ?? []).filter((p) => Date.parse(p.time) >= from - 7 * 86400_000).sort((a, b) => a.time.localeCompare(b.time));
    const svg = s('svg', { viewBox: `0 0 ${W} ${H1 + H2 + 22}`, role: 'img', 'aria-label': `recovery point age and backup size of ${v.name}` });
    // the age of the newest recovery point at each moment: it grows until the next snapshot, then drops to that snapshot's age
    const times = points.map((p) => Date.parse(p.time));
    const line = [];
    let maxAge = v.rpo_target_s ?? 1;
    const ageAt = (t) => {
      let newest = null;
      for (const s2 of times) if (s2 <= t) newest = s2;
      return newest === null ? null : (t - newest) / 1000;
    };
    const events = [from, ...times.filter((t) => t > from), now];
    for (let i = 0; i < events.length; i++) {
      const t = events[i];
      const before = i > 0 ? ageAt(t - 1) : null;
      const atT = ageAt(t);
      if (before !== null && i > 0) line.push([t, before]);
      if (atT !== null) line.push([t, atT]);
    }
    for (const [, a] of line) maxAge = Math.max(maxAge, a);
    const y = (a) => 4 + (1 - a / maxAge) * (H1 - 8);
    svg.append(s('line', { class: 'axis', x1: PAD, y1: H1, x2: W, y2: H1 }));
    svg.append(s('text', { x: 0, y: 12 }, duration(maxAge)));
    svg.append(s('text', { x: 0, y: H1 }, '0'));
    if (v.rpo_target_s) svg.append(s('line', { class: 'target', x1: PAD, x2: W, y1: y(v.rpo_target_s), y2: y(v.rpo_target_s) }));
    if (line.length > 1) svg.append(s('polyline', { class: 'rpo', points: line.map(([t, a]) => `${x(t).toFixed(1)},${y(a).toFixed(1)}`).join(' ') }));
    const sizes = points.filter((p) => Date.parse(p.time) >= from);
    const maxBytes = Math.max(1, ...sizes.map((p) => p.bytes_new));
    for (const p of sizes) {
      const hgt = Math.max(1, (p.bytes_new / maxBytes) * H2);
      svg.append(s('rect', { class: 'bar', x: x(Date.parse(p.time)) - 1, y: H1 + 6 + H2 - hgt, width: 2, height: hgt }));
    }
    svg.append(s('text', { x: 0, y: H1 + 20 }, bytes(maxBytes)));
    svg.append(s('text', { x: PAD, y: H1 + H2 + 20 }, `${CHART_HOURS} h ago`));
    svg.append(s('text', { x: W - 24, y: H1 + H2 + 20 }, 'now'));
    return h('figure', { 'data-chart': v.name }, h('figcaption', {}, v.name, h('span', { class: 'muted' }, ` · RPO over ${CHART_HOURS} h (dashed: target) · added per backup`)), svg);
  }));
}

// --- the loop

function showSignIn() {
  $('console').hidden = true;
  $('sign-in').hidden = false;
  $('verdict').textContent = 'Sign in to see this agent';
  $('verdict').className = 'muted';
  $('token').focus();
}

let protectedAgent = false;

async function refresh() {
  try {
    const st = await call('GET', '/status');
    $('sign-in').hidden = true;
    $('console').hidden = false;
    $('sign-out').hidden = !protectedAgent;
    render(st);
  } catch (err) {
    if (err instanceof SignInNeeded) {
      protectedAgent = true;
      showSignIn();
    } else {
      $('verdict').className = 'bad';
      $('verdict').textContent = `The agent does not answer: ${err.message}`;
    }
  }
}

async function refreshHistory() {
  try {
    history = (await call('GET', `/history?hours=${CHART_HOURS}`)).volumes;
    if (last) renderCharts(last);
  } catch {
    // the charts wait for the next round; the status line says whether the agent answers
  }
}

$('sign-in').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('sign-in-error').textContent = '';
  try {
    await call('POST', '/login', { token: $('token').value });
    $('token').value = '';
    await refresh();
    await refreshHistory();
  } catch (err) {
    $('sign-in-error').textContent = err instanceof SignInNeeded ? 'Wrong token' : err.message;
  }
});
$('sign-out').addEventListener('click', async () => {
  await call('POST', '/logout').catch(() => {});
  showSignIn();
});

refresh().then(refreshHistory);
setInterval(refresh, STATUS_EVERY_MS);
setInterval(refreshHistory, HISTORY_EVERY_MS);
