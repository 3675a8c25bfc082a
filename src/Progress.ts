/**
 * Progress of parallel maps, on every backend: typed events, joblib's
 * `verbose` lines through the Effect Logger, and a terminal progress bar.
 *
 * Maps report to every reporter in their context, and ignore events when
 * there is none. Reporters add up however their Layers are combined:
 * `Layer.mergeAll(layerBar(), layerEvents)`, `Layer.provideMerge` and nested
 * `Effect.provide` all show a bar and stream the events.
 *
 * @stability unstable
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { makeAdditive } from "./internal/additive.ts"
import { TaskReporter } from "./internal/parallel/report.ts"
import { renderReport } from "./internal/progress/reportHtml.ts"
import { record, type Timeline } from "./internal/progress/timeline.ts"
import { InvalidOptions } from "./ParallelError.ts"

/**
 * What every event says about its map at that moment.
 *
 * @category models
 * @since 0.2.0
 */
export interface Snapshot {
  /** Distinguishes maps running at the same time. */
  readonly mapId: number
  /** The task's name, or the function's. */
  readonly label: string
  /** Items finished, successfully or not. */
  readonly completed: number
  /** Items sent to workers so far. */
  readonly dispatched: number
  /** Batches sent to workers so far. */
  readonly batches: number
  /** The number of items, once known: at once for an array, when the input ends otherwise. */
  readonly total: number | undefined
  /** The dispatcher found no more input: every item has been dispatched. */
  readonly exhausted: boolean
  /** Milliseconds since the map started. */
  readonly elapsed: number
  /** Estimated milliseconds left, from the pace so far; undefined until the total and a first result are known. */
  readonly eta: number | undefined
}

/**
 * An event of a map.
 *
 * @category models
 * @since 0.2.0
 */
export type Event =
  | Snapshot & {
    readonly _tag: "Started"
    readonly workers: number
    readonly backend: string
    /** Batches in flight at most. */
    readonly preDispatch: number
  }
  | Snapshot & {
    readonly _tag: "BatchDispatched"
    readonly start: number
    readonly size: number
    readonly slot: number
  }
  | Snapshot & {
    readonly _tag: "BatchCompleted"
    readonly start: number
    readonly size: number
    /** Milliseconds the batch took in its worker. */
    readonly duration: number
    /** Items of the batch that failed. */
    readonly failed: number
    /**
     * The worker that ran it: `"threads worker 2"`, `"processes worker 5"`, a Remote worker's
     * `"<host> pid <pid> thread <n>"`, or `"slot <n>"` for a backend that does not say.
     */
    readonly worker: string
  }
  /**
   * A batch, or one item of it, runs again: its worker died and the Remote queue moved it to another
   * (`"stalled"`), its worker crashed and the map's `retry` runs it on a replacement (`"crashed"`), or `retry`
   * runs a failed item again (`"failed"`, `size` 1).
   */
  | Snapshot & {
    readonly _tag: "BatchRetried"
    readonly start: number
    readonly size: number
    readonly reason: "stalled" | "crashed" | "failed"
  }
  /** A running task reported progress of its own with {@link report}. */
  | Snapshot & { readonly _tag: "TaskProgress"; readonly index: number; readonly data: unknown }
  | Snapshot & { readonly _tag: "Failed"; readonly reason: string }
  | Snapshot & { readonly _tag: "Finished" }

/**
 * Receives the events of maps. Called synchronously, also from worker
 * message handlers, so it must be quick and must not throw.
 *
 * @category models
 * @since 0.2.0
 */
export type Reporter = (event: Event) => void

const silent: Reporter = () => {}

/**
 * The reporter maps send their events to; by default it ignores them.
 *
 * **Example** (Reporting to a custom function)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Parallel, Progress } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2, 3], (x) => x + 1).pipe(
 *   Effect.provideService(Progress.Progress, (event) => console.log(event._tag))
 * )
 * ```
 *
 * @category services
 * @since 0.2.0
 */
export const Progress: Context.Reference<Reporter> = Context.Reference<Reporter>("effect-joblib/Progress", {
  defaultValue: () => silent
})

/** Reporters added by Layers: each under a key of its own, so that merged Layers keep every one. */
const reporters = makeAdditive<Reporter>("effect-joblib/Progress/reporter")
const stack = reporters.layer

/**
 * The reporter a map sends its events to: every reporter added by a Layer, in
 * the order provided, after the one provided as {@link Progress} if any.
 *
 * **Example** (Sending an event by hand)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Progress } from "effect-joblib"
 *
 * const program = Effect.gen(function*() {
 *   const reporter = yield* Progress.current
 *   reporter({
 *     _tag: "Finished", mapId: 0, label: "by hand", completed: 0, dispatched: 0, batches: 0,
 *     total: 0, exhausted: true, elapsed: 0, eta: undefined
 *   })
 * }).pipe(Effect.provide(Progress.layerBar()))
 * ```
 *
 * @category accessors
 * @since 0.6.0
 */
export const current: Effect.Effect<Reporter> = Effect.gen(function*() {
  const provided = yield* Progress
  const all = provided === silent ? [...yield* reporters.entries] : [provided, ...yield* reporters.entries]
  if (all.length === 0) return silent
  if (all.length === 1) return all[0]!
  return (event: Event) => {
    for (const reporter of all) reporter(event)
  }
})

/**
 * Adds a reporter that runs `handler` for each event, with the services of
 * the Layer's construction (its Logger, for instance).
 *
 * **Example** (Logging completed batches)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Parallel, Progress } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2, 3], (x) => x + 1).pipe(
 *   Effect.provide(Progress.layer((event) =>
 *     event._tag === "BatchCompleted" ? Effect.log(`${event.completed} done`) : Effect.void
 *   ))
 * )
 * ```
 *
 * @category layers
 * @since 0.2.0
 */
export const layer = (handler: (event: Event) => Effect.Effect<void>): Layer.Layer<never> =>
  stack(Effect.map(Effect.context<never>(), (context) => (event: Event) => {
    Effect.runForkWith(context)(handler(event))
  }))

/**
 * Gives access to the events of every map run under {@link layerEvents}.
 *
 * @category services
 * @since 0.2.0
 */
export class Events extends Context.Service<Events, {
  /** Subscribes now; the Stream holds every event from this moment until the scope closes. */
  readonly subscribe: Effect.Effect<Stream.Stream<Event>, never, Scope.Scope>
}>()("effect-joblib/Progress/Events") {}

/**
 * Publishes every event to a hub that {@link Events} subscribes to.
 *
 * **Example** (Collecting the events of a map)
 *
 * ```ts
 * import { Effect, Fiber, Stream } from "effect"
 * import { Parallel, Progress } from "effect-joblib"
 *
 * const program = Effect.gen(function*() {
 *   const events = yield* (yield* Progress.Events).subscribe
 *   const tags = yield* events.pipe(
 *     Stream.takeUntil((event) => event._tag === "Finished"),
 *     Stream.map((event) => event._tag),
 *     Stream.runCollect,
 *     Effect.forkScoped
 *   )
 *   yield* Parallel.map([1, 2, 3], (x) => x + 1)
 *   return yield* Fiber.join(tags)
 * }).pipe(Effect.scoped, Effect.provide(Progress.layerEvents))
 * ```
 *
 * @category layers
 * @since 0.2.0
 */
export const layerEvents: Layer.Layer<Events> = Layer.unwrap(Effect.gen(function*() {
  const hub = yield* PubSub.unbounded<Event>()
  const events = Layer.succeed(Events)({
    subscribe: Effect.map(PubSub.subscribe(hub), Stream.fromSubscription)
  })
  return Layer.merge(events, stack(Effect.succeed((event: Event) => void PubSub.publishUnsafe(hub, event))))
}))

/**
 * Lets a running task report progress of its own: the map's reporters get a
 * `TaskProgress` event with the item's index, also from worker threads and
 * processes (where `data` must be structured-cloneable). Outside a map it does
 * nothing.
 *
 * **Example** (A task reporting halfway)
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Progress, Task } from "effect-joblib"
 *
 * export const Train = Task.make("Train", {
 *   payload: Schema.Number,
 *   success: Schema.Number,
 *   run: (epochs) =>
 *     Effect.gen(function*() {
 *       yield* Progress.report({ epoch: epochs / 2 })
 *       return epochs
 *     })
 * })
 * ```
 *
 * @category reporting
 * @since 0.2.0
 */
export const report = (data: unknown): Effect.Effect<void> =>
  Effect.gen(function*() {
    const reporter = yield* TaskReporter
    reporter(data)
  })

/** joblib's `short_format_time`. */
const shortTime = (seconds: number): string =>
  seconds > 60 ? `${(seconds / 60).toFixed(1).padStart(4)}min` : ` ${seconds.toFixed(1).padStart(5)}s`

/** joblib's `_verbosity_filter`: true for the batches whose line is skipped, further apart as the run goes on. */
const skipped = (batches: number, verbose: number): boolean => {
  if (verbose > 10 || batches === 0) return false
  const scale = 0.5 * (11 - verbose) ** 2
  return Math.floor(Math.sqrt((batches + 1) / scale)) === Math.floor(Math.sqrt(batches / scale))
}

/**
 * The lines joblib's `Parallel(verbose=level)` prints for these events, with
 * the same thinning rule, as a function from each event to its line (or
 * undefined). Used by the `verbose` option of `Parallel.map`.
 *
 * **Example** (The lines of a map)
 *
 * ```ts
 * import { Progress } from "effect-joblib"
 *
 * const lines = Progress.verboseLines(10)
 * ```
 *
 * @category reporting
 * @since 0.2.0
 */
export const verboseLines = (level: number): (event: Event) => string | undefined => {
  let prefix = "[Parallel]"
  let preDispatch = 0
  // joblib thins by the batches it has dispatched when a batch completes: pre_dispatch batches of one task
  // at first (its automatic batching starts at 1), and one more per completion, dispatched before the
  // next completion is reported. Counting the same way here keeps completions that arrive together, or
  // batches still waiting for a free worker, from changing which lines are printed.
  let completedBatches = 0
  return (event) => {
    switch (event._tag) {
      case "Started": {
        prefix = `[Parallel(workers=${event.workers})]`
        preDispatch = event.preDispatch
        return `${prefix}: Using backend ${event.backend} with ${event.workers} concurrent workers.`
      }
      case "Finished":
        return `${prefix}: Done ${String(event.completed).padStart(3)} out of ${
          String(event.completed).padStart(3)
        } | elapsed: ${shortTime(event.elapsed / 1000)} finished`
      case "BatchCompleted": {
        const elapsed = event.elapsed / 1000
        completedBatches++
        if (!event.exhausted) {
          const initialBatches = event.total === undefined ? preDispatch : Math.min(preDispatch, event.total)
          if (skipped(initialBatches + completedBatches - 1, level)) return undefined
          return `${prefix}: Done ${String(event.completed).padStart(3)} tasks      | elapsed: ${shortTime(elapsed)}`
        }
        const index = event.completed
        const total = event.dispatched
        if (index !== 0) {
          // As joblib: a line as soon as dispatching ends, then at a frequency set by the level.
          const cursor = total - index + 1 - preDispatch
          const frequency = Math.floor(total / level) + 1
          if (index + 1 === total || cursor % frequency !== 0) return undefined
        }
        const remaining = (elapsed / index) * (total - index)
        return `${prefix}: Done ${String(index).padStart(3)} out of ${String(total).padStart(3)} | elapsed: ${
          shortTime(elapsed)
        } remaining: ${shortTime(remaining)}`
      }
      default:
        return undefined
    }
  }
}

/** Formats milliseconds as a short duration for the bar. */
const clock = (millis: number): string => {
  const seconds = Math.round(millis / 1000)
  if (seconds < 60) return `${(millis / 1000).toFixed(1)}s`
  const minutes = Math.floor(seconds / 60)
  return minutes < 60
    ? `${minutes}m${String(seconds % 60).padStart(2, "0")}s`
    : `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`
}

/**
 * One line of the terminal bar: label, bar, count, rate and ETA, fitted to `columns`.
 *
 * **Example** (A line at 40 of 100)
 *
 * ```ts
 * import { Progress } from "effect-joblib"
 *
 * Progress.barLine({ label: "score", completed: 40, total: 100, elapsed: 2000, eta: 3000 }, 60)
 * ```
 *
 * @category reporting
 * @since 0.2.0
 */
export const barLine = (
  state: Pick<Snapshot, "label" | "completed" | "total" | "elapsed" | "eta">,
  columns: number
): string => {
  const rate = state.elapsed > 0 ? (state.completed * 1000) / state.elapsed : 0
  const stats = state.total === undefined
    ? ` ${state.completed} done  ${rate.toFixed(1)} it/s  ${clock(state.elapsed)}`
    : ` ${state.completed}/${state.total}  ${rate.toFixed(1)} it/s  ETA ${
      state.eta === undefined ? "?" : clock(state.eta)
    }`
  const label = state.label.length > 24 ? `${state.label.slice(0, 23)}…` : state.label
  const width = Math.max(0, Math.min(40, columns - label.length - stats.length - 4))
  if (state.total === undefined || width < 5) return `${label}${stats}`.slice(0, columns)
  const filled = state.total === 0 ? width : Math.round((width * state.completed) / state.total)
  return `${label} [${"█".repeat(filled)}${"░".repeat(width - filled)}]${stats}`
}

/**
 * Options of {@link layerBar}.
 *
 * @category models
 * @since 0.2.0
 */
export interface BarOptions {
  /** Where to draw. Default `process.stderr`. */
  readonly stream?: NodeJS.WriteStream | undefined
  /** Least milliseconds between redraws. Default 100. */
  readonly interval?: number | undefined
}

/**
 * Draws a progress bar (count, rate, ETA) for each map, on one terminal line.
 * It draws only when the stream is a TTY and `CI` is not set, so piped output
 * and CI logs stay clean.
 *
 * **Example** (A bar in a CLI)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Parallel, Progress } from "effect-joblib"
 *
 * const program = Parallel.map(Array.from({ length: 1000 }, (_, i) => i), (x) => x * x).pipe(
 *   Effect.provide(Progress.layerBar())
 * )
 * ```
 *
 * @category layers
 * @since 0.2.0
 */
export const layerBar = (options?: BarOptions): Layer.Layer<never> =>
  stack(Effect.sync(() => {
    const stream = options?.stream ?? process.stderr
    if (!stream.isTTY || process.env.CI) return silent
    const interval = options?.interval ?? 100
    let drawnAt = 0
    const draw = (event: Event, final: boolean) => {
      const now = performance.now()
      if (!final && now - drawnAt < interval) return
      drawnAt = now
      const line = barLine(event, stream.columns ?? 80)
      stream.write(`\r\x1b[2K${line}${final ? "\n" : ""}`)
    }
    return (event: Event) => {
      switch (event._tag) {
        case "Started":
          drawnAt = 0
          return draw(event, false)
        case "BatchCompleted":
        case "TaskProgress":
          return draw(event, false)
        case "Finished":
        case "Failed":
          return draw(event, true)
      }
    }
  }))

/**
 * Options of {@link layerReport}.
 *
 * @category models
 * @since 0.6.0
 */
export interface ReportOptions {
  /** How many maps the file keeps, the latest last. Default 20. */
  readonly maxMaps?: number | undefined
  /** Where the report's path is printed after each map, when it is a TTY and `CI` is not set. Default `process.stderr`. */
  readonly stream?: NodeJS.WriteStream | undefined
}

/** What a report file holds, shared by every `layerReport` of that file in this process: one file per program. */
const reports = new Map<
  string,
  { readonly running: Map<number, Timeline>; readonly ended: Array<Timeline>; last: Event | undefined }
>()

const reportOf = (file: string) => {
  let report = reports.get(file)
  if (report === undefined) reports.set(file, report = { running: new Map(), ended: [], last: undefined })
  return report
}

/** Writes `html` to `path` through a temporary file and a rename, so that a reader never sees half a report. */
const writeAtomically = (path: string, html: string) => {
  const temporary = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
  try {
    Fs.writeFileSync(temporary, html)
    Fs.renameSync(temporary, path)
  } catch (error) {
    Fs.rmSync(temporary, { force: true })
    throw error
  }
}

/**
 * Writes a map's timeline as one self-contained HTML file (Dask's `performance_report`) each time a map
 * ends: a Gantt chart of batches per worker over time (one lane per thread, process or Remote worker
 * thread, named by host and pid), idle gaps, batch sizes, failures, retries and stalled Remote batches,
 * throughput over time, and a summary (items, wall time, speedup over the summed task time, worker
 * utilisation). The file holds the latest maps of the program, has no script and fetches nothing, so it
 * opens anywhere. A TTY is told the file's path after each map. A directory that does not exist fails
 * the layer; a write that fails later is logged as an error and the map goes on.
 *
 * **Example** (A report of a map)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Parallel, Progress } from "effect-joblib"
 *
 * const program = Parallel.map(Array.from({ length: 1000 }, (_, i) => i), (x) => x * x).pipe(
 *   Effect.provide(Progress.layerReport("/tmp/squares-report.html"))
 * )
 * ```
 *
 * @category layers
 * @since 0.6.0
 */
export const layerReport = (path: string, options?: ReportOptions): Layer.Layer<never, InvalidOptions> =>
  stack(Effect.gen(function*() {
    const file = Path.resolve(path)
    const directory = Path.dirname(file)
    if (!Fs.existsSync(directory) || !Fs.statSync(directory).isDirectory()) {
      return yield* new InvalidOptions({
        option: "path",
        message: `Progress.layerReport: the directory of ${JSON.stringify(path)}, ${directory}, does not exist`
      })
    }
    const maxMaps = options?.maxMaps ?? 20
    if (!Number.isInteger(maxMaps) || maxMaps < 1) {
      return yield* new InvalidOptions({
        option: "maxMaps",
        message: `Progress.layerReport: option "maxMaps" must be a whole number of at least 1, got ${maxMaps}`
      })
    }
    const stream = options?.stream ?? process.stderr
    const tell = stream.isTTY === true && !process.env.CI
    const clock = yield* Clock.Clock
    const context = yield* Effect.context<never>()
    const shared = reportOf(file)
    return (event: Event) => {
      // The same event reaches every reporter: a file provided twice (nested, say) records it once.
      if (event === shared.last) return
      shared.last = event
      const timeline = record(shared.running, event)
      if (timeline === undefined) return
      shared.running.delete(timeline.mapId)
      const ended = shared.ended
      ended.push(timeline)
      while (ended.length > maxMaps) ended.shift()
      try {
        writeAtomically(file, renderReport(ended, new Date(clock.currentTimeMillisUnsafe()).toISOString()))
      } catch (error) {
        Effect.runForkWith(context)(
          Effect.logError(`Progress.layerReport could not write ${file}: ${(error as Error).message}`)
        )
        return
      }
      // After every reporter has seen the event: a progress bar first draws its last line.
      if (tell) process.nextTick(() => stream.write(`report: ${file}\n`))
    }
  }))
