// The recgraph dashboard: the store, the served model's evaluation, and live requests.
// Data from /v1/stats/store, /v1/model, /v1/stats/evaluation and /metrics; text via textContent only.
"use strict";

const POLL_MS = 2000;
const KEEP_SAMPLES = 90; // three minutes of live samples
const LATENCY_WINDOW = 5; // samples (10 s) a latency quantile is taken over
// the dashboard's own traffic is left out of the live figures
const OWN_ROUTES = /^(\/metrics|\/v1\/stats\/|\/dashboard|\/static|\/favicon\.ico)/;
const CURVE_METRICS = [["recall", "Recall@k"], ["ndcg", "nDCG@k"]];

async function fetchJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error((body && typeof body.detail === "string" && body.detail) || `HTTP ${response.status}`);
  return body;
}

function say(message, isError = false) {
  const status = $("dashboard-status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

// ------------------------------------------------------------------ the store
const BUCKET_NAMES = { 3600: "per hour", 86400: "per day", 604800: "per week", 2592000: "per 30 days", 31536000: "per year" };

function showCounts(counts) {
  const cards = $("store-counts");
  cards.replaceChildren();
  const main = ["accounts", "follows", "items", "interactions"];
  const kinds = Object.keys(counts).filter((key) => key.startsWith("interactions_") && counts[key]).sort();
  const extra = ["follows_removed", "edge_events"].filter((key) => counts[key]);
  for (const key of [...main, ...kinds, ...extra]) {
    const card = element("div", main.includes(key) ? "card" : "card minor");
    card.dataset.count = key;
    card.append(element("dt", null, key.replace("interactions_", "").replace("_", " ")), element("dd", null, (counts[key] || 0).toLocaleString()));
    cards.append(card);
  }
}

function showActivity(name, activity) {
  $(`${name}-bucket`).textContent = activity.points.length ? `(${BUCKET_NAMES[activity.bucket_seconds] || `per ${activity.bucket_seconds} s`})` : "";
  charts.lineChart($(`chart-${name}`), {
    series: [{ name, points: activity.points }],
    xTime: true,
    yLabel: "rows",
    empty: `No ${name} with a time.`,
  });
}

function showDegrees(name, degrees) {
  const bins = degrees.bins.map((b) => ({ label: b.low === b.high ? String(b.low) : `${charts.formatNumber(b.low)}–${charts.formatNumber(b.high)}`, value: b.nodes }));
  charts.barChart($(`degree-${name}`), { bars: bins, yLog: true, xLabel: "degree", empty: "None yet." });
  const parts = [`${degrees.nodes.toLocaleString()} nodes`, `mean ${degrees.mean.toFixed(1)}`, `max ${degrees.max.toLocaleString()}`];
  if (degrees.zero) parts.push(`${degrees.zero.toLocaleString()} with none`);
  $(`degree-${name}-note`).textContent = parts.join(" · ");
}

async function showStore() {
  const stats = await fetchJSON("/v1/stats/store");
  showCounts(stats.counts);
  showActivity("interactions", stats.activity.interactions);
  showActivity("follows", stats.activity.follows);
  for (const [name, degrees] of Object.entries(stats.degrees)) showDegrees(name, degrees);
  return stats;
}

// ------------------------------------------------------------------ the served model
function describeData(data) {
  if (!data) return "";
  const parts = [];
  for (const [question, snapshot] of Object.entries(data)) {
    if (!snapshot || typeof snapshot !== "object" || snapshot.rows === undefined) continue;
    let line = `${question}: ${snapshot.rows.toLocaleString()} rows, ${(snapshot.n_users || 0).toLocaleString()} × ${(snapshot.n_items || 0).toLocaleString()}`;
    if (snapshot.time_range) line += `, ${snapshot.time_range.start_utc} to ${snapshot.time_range.end_utc}`;
    parts.push(line);
  }
  return parts.length ? ` Trained on ${parts.join("; ")}.` : "";
}

function metricsTable(question, bySeries) {
  const ks = new Set();
  const metrics = new Set();
  for (const byMetric of Object.values(bySeries)) {
    for (const [metric, points] of Object.entries(byMetric)) {
      metrics.add(metric);
      for (const [k] of points) ks.add(k);
    }
  }
  const k = Math.max(...ks);
  const names = [...metrics];
  const table = element("table", "metrics");
  table.append(element("caption", null, `${question} at k=${k}`));
  const head = document.createElement("tr");
  head.append(element("th", null, "retriever"), ...names.map((m) => element("th", null, m)));
  table.append(head);
  for (const [series, byMetric] of Object.entries(bySeries)) {
    const row = document.createElement("tr");
    row.append(element("th", null, series));
    for (const metric of names) {
      const point = (byMetric[metric] || []).find((p) => p[0] === k);
      row.append(element("td", null, point ? point[1].toFixed(4) : "–"));
    }
    table.append(row);
  }
  return table;
}

function showEvaluation(evaluation) {
  const box = $("evaluation");
  box.replaceChildren();
  const questions = Object.entries(evaluation.curves);
  if (!questions.length) {
    box.append(element("p", "empty", `Version ${evaluation.version} was published without an evaluation in its manifest (recgraph quickstart publishes one).`));
    return;
  }
  for (const [question, bySeries] of questions) {
    const section = element("div", "question");
    section.dataset.question = question;
    section.append(element("h3", null, question.replace(/_/g, " ")));
    const grid = element("div", "grid2");
    for (const [metric, label] of CURVE_METRICS) {
      const series = Object.entries(bySeries)
        .filter(([, byMetric]) => byMetric[metric])
        .map(([name, byMetric]) => ({ name, points: byMetric[metric] }));
      if (!series.length) continue;
      const figure = element("figure");
      figure.append(element("figcaption", null, `${label}, ${question.replace(/_/g, " ")}`));
      const chart = element("div", "chart curve");
      chart.dataset.metric = metric;
      figure.append(chart);
      grid.append(figure);
      const ks = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
      requestAnimationFrame(() => charts.lineChart(chart, { series, xTicks: ks, xLabel: "k", yLabel: label, legend: true }));
    }
    section.append(grid, metricsTable(question, bySeries));
    box.append(section);
  }
}

async function showModel() {
  const [info, evaluation] = await Promise.all([fetchJSON("/v1/model"), fetchJSON("/v1/stats/evaluation")]);
  const questions = Object.entries(info.questions)
    .map(([name, q]) => `${name.replace(/_/g, " ")}: ${q.retrievers.join(" + ")} (fallback ${q.fallback.join(" → ")})`)
    .join(" · ");
  $("model-summary").textContent = `Version ${info.version}${evaluation.created_at ? `, published ${evaluation.created_at}` : ""}. ${questions}.${describeData(evaluation.data)}${evaluation.notes ? ` Notes: ${evaluation.notes}` : ""}`;
  showEvaluation(evaluation);
  return info;
}

// ------------------------------------------------------------------ live requests
function parseLabels(raw) {
  const labels = {};
  const pattern = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  let match;
  while ((match = pattern.exec(raw)) !== null) labels[match[1]] = match[2].replace(/\\(.)/g, "$1");
  return labels;
}

// Prometheus text -> {route: {count, status: {code: n}, buckets: [[le, cumulative]]}}
function parseMetrics(body) {
  const routes = {};
  const route = (name) => (routes[name] ||= { count: 0, status: {}, buckets: [] });
  for (const line of body.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^(\w+)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const [, name, rawLabels, rawValue] = match;
    const labels = parseLabels(rawLabels || "");
    const value = Number(rawValue);
    if (name === "recgraph_http_requests_total" && labels.route) {
      const entry = route(labels.route);
      entry.count += value;
      entry.status[labels.status] = (entry.status[labels.status] || 0) + value;
    } else if (name === "recgraph_http_request_duration_seconds_bucket" && labels.route) {
      route(labels.route).buckets.push([labels.le === "+Inf" ? Infinity : Number(labels.le), value]);
    }
  }
  for (const entry of Object.values(routes)) entry.buckets.sort((a, b) => a[0] - b[0]);
  return routes;
}

// The q-quantile of the requests between two cumulative histograms (as Prometheus estimates it).
function quantile(q, now, before) {
  const deltas = now.map(([le, count], i) => [le, count - ((before && before[i] && before[i][1]) || 0)]);
  const total = deltas.length ? deltas[deltas.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let previousLe = 0;
  let previousCount = 0;
  for (const [le, count] of deltas) {
    if (count >= rank) {
      if (le === Infinity) return previousLe;
      return previousLe + ((le - previousLe) * (rank - previousCount)) / Math.max(count - previousCount, 1e-9);
    }
    previousLe = le;
    previousCount = count;
  }
  return previousLe;
}

const samples = [];

function liveRoutes() {
  const names = new Set();
  for (const sample of samples) for (const name of Object.keys(sample.routes)) if (!OWN_ROUTES.test(name)) names.add(name);
  return [...names].sort();
}

function showLive() {
  if (samples.length < 2) return;
  const first = samples[0];
  const last = samples[samples.length - 1];
  const routes = liveRoutes();
  const rate = [];
  const latency = [];
  for (const name of routes) {
    const rates = [];
    const p95s = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1].routes[name];
      const b = samples[i].routes[name];
      const seconds = (samples[i].time - samples[i - 1].time) / 1000;
      const x = (samples[i].time - first.time) / 1000;
      rates.push([x, b ? (b.count - (a ? a.count : 0)) / seconds : 0]);
      const back = samples[Math.max(0, i - LATENCY_WINDOW)].routes[name];
      const p95 = b ? quantile(0.95, b.buckets, back && back.buckets) : null;
      if (p95 !== null) p95s.push([x, p95 * 1000]);
    }
    rate.push({ name, points: rates });
    latency.push({ name, points: p95s });
  }
  charts.lineChart($("chart-rate"), { series: rate, xLabel: "seconds since this page opened", yLabel: "req/s", legend: true, empty: "No requests yet." });
  charts.lineChart($("chart-latency"), { series: latency, xLabel: "seconds since this page opened", yLabel: "ms", legend: true, empty: "No requests yet." });
  const body = $("routes").tBodies[0];
  body.replaceChildren();
  const previous = samples[samples.length - 2];
  for (const name of routes) {
    const now = last.routes[name];
    if (!now) continue;
    const start = first.routes[name];
    const since = (key) => (now.status[key] || 0) - ((start && start.status[key]) || 0);
    const errors = (digit) => Object.keys(now.status).filter((s) => s.startsWith(digit)).reduce((n, s) => n + since(s), 0);
    const seconds = (last.time - previous.time) / 1000;
    const recent = (now.count - ((previous.routes[name] && previous.routes[name].count) || 0)) / seconds;
    const p50 = quantile(0.5, now.buckets, start && start.buckets);
    const p95 = quantile(0.95, now.buckets, start && start.buckets);
    const row = document.createElement("tr");
    row.dataset.route = name;
    row.append(
      element("th", null, name),
      element("td", null, (now.count - ((start && start.count) || 0)).toLocaleString()),
      element("td", null, recent.toFixed(1)),
      element("td", null, p50 === null ? "–" : (p50 * 1000).toFixed(1)),
      element("td", null, p95 === null ? "–" : (p95 * 1000).toFixed(1)),
      element("td", null, String(errors("4"))),
      element("td", null, String(errors("5"))),
    );
    body.append(row);
  }
}

async function pollMetrics() {
  try {
    const response = await fetch("/metrics");
    const body = await response.text();
    samples.push({ time: performance.now(), routes: parseMetrics(body) });
    if (samples.length > KEEP_SAMPLES) samples.shift();
    showLive();
  } catch (error) {
    say(`Cannot read /metrics: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("poll-seconds").textContent = String(POLL_MS / 1000);
  pollMetrics();
  setInterval(pollMetrics, POLL_MS);
  const problems = [];
  const [store, model] = await Promise.allSettled([showStore(), showModel()]);
  if (store.status === "rejected") problems.push(`store: ${store.reason.message}`);
  if (model.status === "rejected") problems.push(`model: ${model.reason.message}`);
  if (problems.length) say(`Could not load everything (${problems.join("; ")}).`, true);
  else say(`Store counted at ${new Date(store.value.computed_at * 1000).toLocaleTimeString()}; model ${model.value.version}.`);
  document.body.dataset.ready = "true";
});
