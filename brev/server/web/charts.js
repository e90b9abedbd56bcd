// Per-GPU time series charts (uPlot, vendored): one chart per metric, one line per GPU,
// from GET .../instances/{name}/metrics (brev.api.GpuSeries).

import uPlot from "./vendor/uplot/uPlot.esm.js";

export const METRICS = [
  { key: "utilization_pct", title: "Utilization", unit: "%", range: [0, 100] },
  { key: "memory_used_mib", title: "Memory used", unit: "GiB", scale: (v) => v / 1024 },
  { key: "power_w", title: "Power", unit: "W" },
  { key: "temperature_c", title: "Temperature", unit: "°C" },
];

// Told apart by more than hue where it matters: the legend names each GPU too.
const COLOURS = ["#3b82f6", "#f97316", "#10b981", "#e11d48", "#a855f7", "#eab308", "#06b6d4",
  "#84cc16", "#6366f1", "#f43f5e", "#14b8a6", "#d946ef"];

// uPlot's columns: [x (unix seconds), y of GPU a, y of GPU b, ...] over the union of the
// GPUs' timestamps (one agent report times every GPU alike, so they line up), null where a
// GPU has no point.
export function columns(series, metric) {
  const times = new Set();
  for (const s of series) for (const p of s.points) times.add(Date.parse(p.at) / 1000);
  const xs = withGaps([...times].sort((a, b) => a - b));
  const index = new Map(xs.map((x, n) => [x, n]));
  const ys = series.map((s) => {
    const column = new Array(xs.length).fill(null);
    for (const p of s.points) {
      const value = p[metric.key];
      if (value !== null && value !== undefined) {
        column[index.get(Date.parse(p.at) / 1000)] = metric.scale ? metric.scale(value) : value;
      }
    }
    return column;
  });
  return [xs, ...ys];
}

// A stretch without points (the agent was away, the machine stopped) is drawn as a gap, not
// a straight line across it: an x with no values goes in the middle of every gap longer
// than three usual intervals.
function withGaps(xs) {
  if (xs.length < 3) return xs;
  const steps = xs.slice(1).map((x, n) => x - xs[n]).sort((a, b) => a - b);
  const limit = Math.max(35, 3 * steps[Math.floor(steps.length / 2)]);
  const out = [xs[0]];
  for (let n = 1; n < xs.length; n += 1) {
    if (xs[n] - xs[n - 1] > limit) out.push((xs[n] + xs[n - 1]) / 2);
    out.push(xs[n]);
  }
  return out;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function format(value, metric) {
  return `${value.toFixed(metric.unit === "GiB" ? 1 : 0)} ${metric.unit}`;
}

// The plot and its legend fit inside the panel: clientWidth counts the padding too.
function innerWidth(container) {
  const style = getComputedStyle(container);
  const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
  return Math.max(280, Math.floor(container.clientWidth - padding) - 4);
}

export function createChart(container, metric, gpuIndices, data) {
  const width = innerWidth(container);
  const axis = {
    stroke: cssVar("--muted"),
    grid: { stroke: cssVar("--border"), width: 1 },
    ticks: { stroke: cssVar("--border"), width: 1 },
  };
  const options = {
    width,
    height: 180,
    series: [
      {},
      ...gpuIndices.map((gpu, n) => ({
        label: `GPU ${gpu}`,
        stroke: COLOURS[n % COLOURS.length],
        width: 1.5,
        spanGaps: false,
        value: (u, v) => (v === null || v === undefined ? "—" : format(v, metric)),
      })),
    ],
    scales: { x: { time: true }, y: metric.range ? { range: metric.range } : {} },
    axes: [
      { ...axis },
      { ...axis, size: 50, values: (u, ticks) => ticks.map((t) => `${t}`) },
    ],
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
  };
  const plot = new uPlot(options, data, container);
  const observer = new ResizeObserver(() => {
    const next = innerWidth(container);
    if (Math.abs(next - plot.width) > 2) plot.setSize({ width: next, height: 180 });
  });
  observer.observe(container);
  return {
    plot,
    setData: (next) => plot.setData(next),
    destroy() {
      observer.disconnect();
      plot.destroy();
    },
  };
}
