// Small SVG charts for the dashboard: lines and bars, linear or log axes. No library, no build.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#0b5cad", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#6e7781"];

function svgNode(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceTicks(low, high, count = 5) {
  if (!(high > low)) return [low];
  const step0 = (high - low) / count;
  const power = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= step0) || step0;
  const ticks = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

function logTicks(low, high) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(low)); e <= Math.ceil(Math.log10(high)); e++) ticks.push(Math.pow(10, e));
  return ticks;
}

function formatNumber(value) {
  if (value === 0) return "0";
  const size = Math.abs(value);
  if (size >= 1e6) return `${+(value / 1e6).toPrecision(3)}M`;
  if (size >= 1e3) return `${+(value / 1e3).toPrecision(3)}k`;
  if (size < 0.01) return value.toExponential(0);
  return String(+value.toPrecision(3));
}

function formatDate(seconds, span) {
  const date = new Date(seconds * 1000);
  const iso = date.toISOString();
  if (span < 2 * 86400) return iso.slice(11, 16);
  if (span < 400 * 86400) return iso.slice(0, 10);
  return iso.slice(0, 7);
}

function scale(low, high, from, to, log) {
  if (log) {
    const a = Math.log10(low);
    const b = Math.log10(high);
    return (v) => from + ((Math.log10(Math.max(v, low)) - a) / (b - a || 1)) * (to - from);
  }
  return (v) => from + ((v - low) / (high - low || 1)) * (to - from);
}

// A line chart. options: {series: [{name, points: [[x, y], ...]}], xLabel, yLabel,
// xTime, yLog, xTicks (exact tick values), yMin, format(y), height}
function lineChart(container, options) {
  const width = Math.max(container.clientWidth || 0, 320);
  const height = options.height || 230;
  const margin = { top: 24, right: 14, bottom: 42, left: 52 };
  const series = options.series.filter((s) => s.points.length);
  container.replaceChildren();
  container.dataset.series = String(series.length);
  container.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
  if (!series.length) {
    container.append(Object.assign(document.createElement("p"), { className: "empty", textContent: options.empty || "No data yet." }));
    return;
  }
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  let [xLow, xHigh] = [Math.min(...xs), Math.max(...xs)];
  if (xLow === xHigh) [xLow, xHigh] = [xLow - 1, xHigh + 1];
  const positive = ys.filter((y) => y > 0);
  const yLog = options.yLog && positive.length > 0;
  let yLow = yLog ? Math.min(...positive) : Math.min(options.yMin ?? 0, ...ys);
  let yHigh = Math.max(...ys);
  if (yHigh === yLow) yHigh = yLow + (yLog ? 10 : 1);
  const x = scale(xLow, xHigh, margin.left, width - margin.right, false);
  const y = scale(yLow, yHigh, height - margin.bottom, margin.top, yLog);
  const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  svg.append(svgNode("title", {}, options.title || options.yLabel || "chart"));
  const format = options.format || formatNumber;
  for (const tick of yLog ? logTicks(yLow, yHigh) : niceTicks(yLow, yHigh)) {
    if (tick < yLow * 0.999 || tick > yHigh * 1.001) continue;
    svg.append(svgNode("line", { x1: margin.left, x2: width - margin.right, y1: y(tick), y2: y(tick), class: "grid" }));
    svg.append(svgNode("text", { x: margin.left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, format(tick)));
  }
  const xTicks = options.xTicks || niceTicks(xLow, xHigh, Math.max(2, Math.floor(width / 110)));
  for (const tick of xTicks) {
    if (tick < xLow || tick > xHigh) continue;
    const label = options.xTime ? formatDate(tick, xHigh - xLow) : formatNumber(tick);
    svg.append(svgNode("text", { x: x(tick), y: height - margin.bottom + 16, class: "tick", "text-anchor": "middle" }, label));
  }
  svg.append(svgNode("line", { x1: margin.left, x2: width - margin.right, y1: height - margin.bottom, y2: height - margin.bottom, class: "axis" }));
  if (options.xLabel) svg.append(svgNode("text", { x: (margin.left + width - margin.right) / 2, y: height - 6, class: "label", "text-anchor": "middle" }, options.xLabel));
  if (options.yLabel) svg.append(svgNode("text", { x: 6, y: 12, class: "label" }, options.yLabel));
  series.forEach((s, index) => {
    const color = s.color || PALETTE[index % PALETTE.length];
    const path = s.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    svg.append(svgNode("path", { d: path, fill: "none", stroke: color, "stroke-width": 2, class: "line", "data-name": s.name }));
    if (s.points.length <= 60) {
      for (const p of s.points) {
        const dot = svgNode("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, fill: color, class: "dot" });
        dot.append(svgNode("title", {}, `${s.name}: ${options.xTime ? formatDate(p[0], 0) : formatNumber(p[0])} → ${format(p[1])}`));
        svg.append(dot);
      }
    }
  });
  container.append(svg);
  if (series.length > 1 || options.legend) container.append(legend(series));
}

// A bar chart. options: {bars: [{label, value}], yLog, yLabel, xLabel, height}
function barChart(container, options) {
  const width = Math.max(container.clientWidth || 0, 320);
  const height = options.height || 200;
  const margin = { top: 24, right: 10, bottom: 42, left: 52 };
  const bars = options.bars;
  container.replaceChildren();
  container.dataset.bars = String(bars.length);
  if (!bars.length) {
    container.append(Object.assign(document.createElement("p"), { className: "empty", textContent: options.empty || "No data yet." }));
    return;
  }
  const values = bars.map((b) => b.value);
  const yLog = options.yLog && values.some((v) => v > 0);
  const low = yLog ? Math.max(Math.min(...values.filter((v) => v > 0)) / 2, 0.5) : 0;
  const high = Math.max(...values, low + 1);
  const y = scale(low, high, height - margin.bottom, margin.top, yLog);
  const band = (width - margin.left - margin.right) / bars.length;
  const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  svg.append(svgNode("title", {}, options.title || options.yLabel || "chart"));
  for (const tick of yLog ? logTicks(low, high) : niceTicks(low, high)) {
    if (tick < low || tick > high * 1.001) continue;
    svg.append(svgNode("line", { x1: margin.left, x2: width - margin.right, y1: y(tick), y2: y(tick), class: "grid" }));
    svg.append(svgNode("text", { x: margin.left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, formatNumber(tick)));
  }
  const every = Math.ceil(bars.length / Math.max(1, Math.floor((width - margin.left) / 46)));
  bars.forEach((bar, i) => {
    const top = bar.value > 0 ? y(bar.value) : height - margin.bottom;
    const rect = svgNode("rect", {
      x: margin.left + i * band + 1, y: top, width: Math.max(band - 2, 1),
      height: height - margin.bottom - top, class: "bar", fill: options.color || PALETTE[0],
    });
    rect.append(svgNode("title", {}, `${bar.label}: ${bar.value.toLocaleString()}`));
    svg.append(rect);
    if (i % every === 0) {
      svg.append(svgNode("text", { x: margin.left + (i + 0.5) * band, y: height - margin.bottom + 16, class: "tick", "text-anchor": "middle" }, bar.label));
    }
  });
  svg.append(svgNode("line", { x1: margin.left, x2: width - margin.right, y1: height - margin.bottom, y2: height - margin.bottom, class: "axis" }));
  if (options.xLabel) svg.append(svgNode("text", { x: (margin.left + width - margin.right) / 2, y: height - 6, class: "label", "text-anchor": "middle" }, options.xLabel));
  if (options.yLabel) svg.append(svgNode("text", { x: 6, y: 12, class: "label" }, options.yLabel));
  container.append(svg);
}

function legend(series) {
  const list = document.createElement("ul");
  list.className = "legend";
  series.forEach((s, index) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = s.color || PALETTE[index % PALETTE.length];
    item.append(swatch, s.name);
    list.append(item);
  });
  return list;
}

window.charts = { lineChart, barChart, formatNumber, PALETTE };
