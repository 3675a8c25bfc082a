/**
 * A map's timeline, collected from its Progress events: which worker ran which batch and when, the batch
 * sizes, retries, and how the map ended. What `Progress.layerReport` draws.
 */
import type { Event } from "../../Progress.ts"

export interface Bar {
  readonly start: number
  readonly size: number
  readonly worker: string
  /** Milliseconds since the map started: the batch's run on its worker (its end less its duration). */
  readonly from: number
  readonly to: number
  readonly failed: number
}

export interface Retry {
  readonly at: number
  readonly start: number
  readonly size: number
  readonly reason: "stalled" | "crashed" | "failed"
}

export interface Timeline {
  readonly mapId: number
  readonly label: string
  backend: string
  workers: number
  readonly bars: Array<Bar>
  readonly retries: Array<Retry>
  completed: number
  total: number | undefined
  /** Wall time at the end, and how it ended. */
  ended: { readonly at: number; readonly failure: string | undefined } | undefined
}

const emptyTimeline = (event: Event): Timeline => ({
  mapId: event.mapId,
  label: event.label,
  backend: "",
  workers: 0,
  bars: [],
  retries: [],
  completed: 0,
  total: undefined,
  ended: undefined
})

/** Adds an event to its map's timeline; returns the timeline when the event ended the map. */
export const record = (timelines: Map<number, Timeline>, event: Event): Timeline | undefined => {
  let timeline = timelines.get(event.mapId)
  if (timeline === undefined) timelines.set(event.mapId, timeline = emptyTimeline(event))
  timeline.completed = event.completed
  timeline.total = event.total
  switch (event._tag) {
    case "Started":
      timeline.backend = event.backend
      timeline.workers = event.workers
      return undefined
    case "BatchCompleted":
      timeline.bars.push({
        start: event.start,
        size: event.size,
        worker: event.worker,
        from: Math.max(0, event.elapsed - event.duration),
        to: event.elapsed,
        failed: event.failed
      })
      return undefined
    case "BatchRetried":
      timeline.retries.push({ at: event.elapsed, start: event.start, size: event.size, reason: event.reason })
      return undefined
    case "Finished":
    case "Failed":
      timeline.ended = { at: event.elapsed, failure: event._tag === "Failed" ? event.reason : undefined }
      return timeline
    default:
      return undefined
  }
}

/** The largest of `values` (at least `floor`): a loop, since spreading 100k+ bars into `Math.max` overflows. */
export const largest = (values: Iterable<number>, floor: number): number => {
  let max = floor
  for (const value of values) if (value > max) max = value
  return max
}

/** How long the map ran: to its end, or to its last batch while it has not ended. */
export const wallOf = (timeline: Timeline): number =>
  largest(timeline.bars.map((bar) => bar.to), timeline.ended?.at ?? 0)

/** The batches of each worker that ran one (its lane), lanes in a stable order. */
export const lanesOf = (timeline: Timeline): Map<string, Array<Bar>> => {
  const lanes = new Map<string, Array<Bar>>()
  for (const bar of timeline.bars) {
    const bars = lanes.get(bar.worker)
    if (bars === undefined) lanes.set(bar.worker, [bar])
    else bars.push(bar)
  }
  const names = [...lanes.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))
  return new Map(names.map((name) => [name, lanes.get(name)!]))
}

export interface Summary {
  readonly items: number
  readonly wall: number
  /** Summed time the batches ran on their workers. */
  readonly busy: number
  readonly speedup: number
  /** Busy time over the lanes' wall time. */
  readonly utilisation: number
  readonly failedItems: number
}

export const summarise = (timeline: Timeline, lanes: number): Summary => {
  const wall = wallOf(timeline)
  const busy = timeline.bars.reduce((sum, bar) => sum + (bar.to - bar.from), 0)
  return {
    items: timeline.completed,
    wall,
    busy,
    speedup: wall > 0 ? busy / wall : 0,
    utilisation: wall > 0 ? busy / (Math.max(1, lanes) * wall) : 0,
    failedItems: timeline.bars.reduce((sum, bar) => sum + bar.failed, 0)
  }
}

/** Gaps of at least `min` ms between consecutive batches of one lane (and before its first). */
export const idleGaps = (bars: ReadonlyArray<Bar>, min: number): Array<{ from: number; to: number }> => {
  const sorted = [...bars].sort((a, b) => a.from - b.from)
  const gaps: Array<{ from: number; to: number }> = []
  let free = 0
  for (const bar of sorted) {
    if (bar.from - free >= min) gaps.push({ from: free, to: bar.from })
    free = Math.max(free, bar.to)
  }
  return gaps
}

/** Items completed per second over `buckets` equal slices of the wall time. */
export const throughput = (timeline: Timeline, wall: number, buckets: number): Array<number> => {
  const counts = Array.from({ length: buckets }, () => 0)
  if (wall <= 0) return counts
  for (const bar of timeline.bars) {
    counts[Math.min(buckets - 1, Math.floor((bar.to / wall) * buckets))]! += bar.size
  }
  const seconds = wall / 1000 / buckets
  return counts.map((count) => count / seconds)
}
