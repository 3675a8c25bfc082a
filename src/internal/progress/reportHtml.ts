/**
 * Draws timelines as one self-contained HTML page: inline CSS and SVG, no script and nothing fetched, so
 * the file opens anywhere. Every text from a map (labels, worker names, failure reasons) is escaped.
 */
import {
  type Bar,
  idleGaps,
  lanesOf,
  largest,
  type Retry,
  summarise,
  throughput,
  type Timeline,
  wallOf
} from "./timeline.ts"

const WIDTH = 1000
const LEFT = 220
const LANE = 22
const AXIS = 24
/** Idle gaps shorter than this share of the wall time are not drawn. */
const IDLE_SHARE = 0.005

export const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c]!)

const fixed = (n: number) => (Math.round(n * 10) / 10).toString()

const ms = (n: number) => (n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${n.toFixed(n < 10 ? 2 : 0)} ms`)

/** The x of a time on the chart's scale. */
const scale = (wall: number) => (t: number) => LEFT + ((WIDTH - LEFT - 10) * t) / Math.max(wall, 1e-9)

const axis = (wall: number, y: number): string => {
  const x = scale(wall)
  const ticks = Array.from({ length: 6 }, (_, i) => (wall * i) / 5)
  return ticks.map((t, i) =>
    `<line class="tick" x1="${fixed(x(t))}" x2="${fixed(x(t))}" y1="0" y2="${y}"/>` +
    `<text class="time" x="${fixed(x(t))}" y="${y + 16}" text-anchor="${i === 5 ? "end" : "middle"}">${ms(t)}</text>`
  ).join("")
}

const barSvg = (bar: Bar, y: number, x: (t: number) => number): string => {
  const width = Math.max(1, x(bar.to) - x(bar.from))
  const what =
    `items ${bar.start}–${bar.start + bar.size - 1} (${bar.size}) on ${bar.worker}: ${ms(bar.to - bar.from)}` +
    (bar.failed > 0 ? `, ${bar.failed} failed` : "")
  return `<rect class="bar${bar.failed > 0 ? " failed" : ""}" data-size="${bar.size}" x="${fixed(x(bar.from))}" ` +
    `y="${y + 3}" width="${fixed(width)}" height="${LANE - 6}"><title>${escapeHtml(what)}</title></rect>`
}

const retrySvg = (retry: Retry, y: number, x: (t: number) => number): string => {
  const cx = x(retry.at)
  const what = `batch at item ${retry.start} (${retry.size}) runs again: ${retry.reason}`
  return `<path class="retry ${retry.reason}" d="M${fixed(cx)} ${y + 2}l5 8h-10z"><title>${
    escapeHtml(what)
  }</title></path>`
}

/** The Gantt chart: a lane per worker, its batches as bars, idle gaps shaded, retries marked. */
const gantt = (timeline: Timeline, lanes: Map<string, Array<Bar>>, wall: number): string => {
  const x = scale(wall)
  const height = lanes.size * LANE
  const rows = [...lanes].map(([lane, bars], i) => {
    const y = i * LANE
    const gaps = idleGaps(bars, wall * IDLE_SHARE).map((gap) =>
      `<rect class="idle" x="${fixed(x(gap.from))}" y="${y + 3}" width="${fixed(x(gap.to) - x(gap.from))}" ` +
      `height="${LANE - 6}"><title>idle ${ms(gap.to - gap.from)}</title></rect>`
    ).join("")
    return `<g class="lane" data-worker="${escapeHtml(lane)}"><text class="name" x="${LEFT - 8}" y="${
      y + 15
    }" text-anchor="end">${escapeHtml(lane)}</text>${gaps}${bars.map((bar) => barSvg(bar, y, x)).join("")}</g>`
  }).join("")
  const retries = timeline.retries.map((retry) => retrySvg(retry, height, x)).join("")
  return `<svg class="gantt" viewBox="0 0 ${WIDTH} ${height + AXIS + 14}" width="100%">${
    axis(wall, height + 12)
  }${rows}<g class="retries">${retries}</g></svg>`
}

/** Batch sizes over time (each batch a dot at its end) and items per second. */
const sizesAndThroughput = (timeline: Timeline, wall: number): string => {
  const x = scale(wall)
  const maxSize = largest(timeline.bars.map((bar) => bar.size), 1)
  const dots = timeline.bars.map((bar) =>
    `<circle class="size" cx="${fixed(x(bar.to))}" cy="${fixed(90 - (80 * bar.size) / maxSize)}" r="2"/>`
  ).join("")
  const rates = throughput(timeline, wall, 50)
  const maxRate = largest(rates, 1)
  const points = rates.map((rate, i) => `${fixed(x(((i + 0.5) * wall) / 50))},${fixed(90 - (80 * rate) / maxRate)}`)
  return `<h3>Batch sizes (up to ${maxSize}) and throughput (up to ${Math.round(maxRate)} items/s)</h3>` +
    `<svg class="sizes" viewBox="0 0 ${WIDTH} ${100 + AXIS}" width="100%">${axis(wall, 100)}` +
    `<text class="name" x="${LEFT - 8}" y="50" text-anchor="end">size · items/s</text>${dots}` +
    `<polyline class="throughput" points="${points.join(" ")}"/></svg>`
}

const summaryHtml = (timeline: Timeline, lanes: number): string => {
  const s = summarise(timeline, lanes)
  const cells: Array<[string, string]> = [
    ["items", `${s.items}${timeline.total === undefined ? "" : ` of ${timeline.total}`}`],
    ["wall time", ms(s.wall)],
    ["summed task time", ms(s.busy)],
    ["speedup", `${s.speedup.toFixed(2)}×`],
    ["worker utilisation", `${(s.utilisation * 100).toFixed(0)}%`],
    ["batches", String(timeline.bars.length)],
    ["failed items", String(s.failedItems)],
    ["retries", String(timeline.retries.length)]
  ]
  return `<dl class="summary">${
    cells.map(([k, v]) => `<div><dt>${k}</dt><dd data-key="${k}">${escapeHtml(v)}</dd></div>`).join("")
  }</dl>`
}

const section = (timeline: Timeline): string => {
  // A floor for the scale: a map that did nothing still draws.
  const wall = Math.max(wallOf(timeline), 1e-3)
  const lanes = lanesOf(timeline)
  const failure = timeline.ended?.failure
  return `<section class="map${failure === undefined ? "" : " failed"}" data-map="${timeline.mapId}">` +
    `<h2>${escapeHtml(timeline.label)} <small>${
      escapeHtml(timeline.backend)
    }, ${timeline.workers} workers</small></h2>` +
    (failure === undefined ? "" : `<p class="failure">Failed: ${escapeHtml(failure)}</p>`) +
    summaryHtml(timeline, lanes.size) + gantt(timeline, lanes, wall) + sizesAndThroughput(timeline, wall) +
    `</section>`
}

const STYLE =
  `body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin:28px 0 8px}
h3{font-size:13px;font-weight:normal;color:#555;margin:12px 0 0}small{color:#666;font-weight:normal}
.summary{display:flex;flex-wrap:wrap;gap:8px 24px;margin:8px 0}.summary dt{font-size:12px;color:#666}.summary dd{margin:0;font-weight:600}
.bar{fill:#3b7dd8}.bar.failed{fill:#d83b3b}.idle{fill:#eee;stroke:#ccc;stroke-dasharray:2 2}
.retry{fill:#e08a00}.retry.stalled{fill:#8a3bd8}.tick{stroke:#e4e4e4}.time,.name{font-size:11px;fill:#555}
.size{fill:#3b7dd8;opacity:.6}.throughput{fill:none;stroke:#2a9d4b;stroke-width:2}
.failure{color:#b00;font-weight:600}.legend span{display:inline-block;margin-right:16px}
.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}`

const LEGEND = `<p class="legend"><span><i style="background:#3b7dd8"></i>batch</span>` +
  `<span><i style="background:#d83b3b"></i>batch with failures</span><span><i style="background:#eee;border:1px dashed #ccc">` +
  `</i>idle</span><span><i style="background:#e08a00"></i>retried</span><span><i style="background:#8a3bd8"></i>` +
  `stalled (Remote)</span><span><i style="background:#2a9d4b"></i>items/s</span></p>`

/** The page for these timelines, the latest map last. `generated` is a date to show. */
export const renderReport = (timelines: ReadonlyArray<Timeline>, generated: string): string =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>effect-joblib report</title>` +
  `<meta name="viewport" content="width=device-width,initial-scale=1"><style>${STYLE}</style></head><body>` +
  `<h1>effect-joblib: ${timelines.length} map${timelines.length === 1 ? "" : "s"}</h1>` +
  `<p><small>Written ${escapeHtml(generated)}. Times are from each map's start; a bar is a batch's run on ` +
  `its worker (hover for details).</small></p>${LEGEND}${timelines.map(section).join("")}</body></html>\n`
