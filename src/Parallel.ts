/**
 * Typed parallel maps: joblib's `Parallel(n_jobs)(delayed(f)(x) for x in xs)`
 * as one Effect. The work is a {@link Task.Task} or an inline function; where
 * it runs is decided by the `Backend` Layer the application provides.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Backend } from "./Backend.ts"
import type { Prefer } from "./Backend.ts"
import * as Batching from "./Batching.ts"
import * as Options from "./internal/options.ts"
import * as Cpus from "./internal/parallel/cpus.ts"
import * as Engine from "./internal/parallel/engine.ts"
import { checkNotImportingTaskModule } from "./internal/parallel/guard.ts"
import { exitsOf } from "./internal/parallel/outcome.ts"
import { type Backend as BackendShape, engineOf } from "./internal/parallel/runner.ts"
import * as Internal from "./internal/parallel/work.ts"
import { InvalidOptions, type ParallelError, type TaskTimeout, type WorkerCrashed } from "./ParallelError.ts"
import * as Progress from "./Progress.ts"
import * as Task from "./Task.ts"

/**
 * What a map runs: a Task, or an inline function of the item and its index.
 * On worker backends an inline function must capture nothing from its
 * surroundings; it may return a Promise.
 *
 * @category models
 * @since 0.1.0
 */
export type Work<I, A, E> = TaskWork<I, A, E> | ((item: I, index: number) => A | PromiseLike<A>)

/**
 * A Task as a map's work: its members without its call signature (a Task is also a function, its own call),
 * so that an inline function beside it in {@link Work} gets its parameter's type from the map's input.
 *
 * @category models
 * @since 0.6.0
 */
export type TaskWork<I, A, E> = { readonly [K in keyof Task.Task<I, A, E>]: Task.Task<I, A, E>[K] }

/**
 * The items of a map: an Iterable, an AsyncIterable or a Stream. They are pulled lazily.
 *
 * @category models
 * @since 0.1.0
 */
export type Input<I, E = never, R = never> = Iterable<I> | AsyncIterable<I> | Stream.Stream<I, E, R>

/**
 * How failures are reported.
 * - `"failFast"` (default): the first failure fails the map and interrupts the work in flight.
 * - `"exit"`: every item gets an `Exit`, so one bad item does not lose the others.
 * - `"result"`: every item gets a `Result` of its value or typed error; defects still fail the map.
 *
 * @category models
 * @since 0.1.0
 */
export type Mode = "failFast" | "exit" | "result"

/**
 * Options of {@link map} and {@link stream}.
 *
 * @category models
 * @since 0.1.0
 */
export interface MapOptions<M extends Mode = Mode, E = any> {
  /**
   * joblib's n_jobs: how many workers this map uses at once. `-1` is every CPU,
   * `-2` all but one; `0` is an error. Defaults to the backend's size.
   */
  readonly concurrency?: number | undefined
  /** `"auto"` (default, joblib's rule), a fixed size, or a Schedule from `Batching`. */
  readonly batchSize?: "auto" | number | Batching.BatchSize | undefined
  /**
   * joblib's `pre_dispatch`: batches formed ahead of the results, running or waiting for a worker. They wait
   * centrally, assigned to no worker, and each goes to the first worker that frees up. Bounds how far the
   * input is read ahead. Default `2 * concurrency`; with one worker, items are pulled one batch at a time, as
   * joblib's `n_jobs=1` does. With automatic batching, at most this many items are pulled before the first
   * result. joblib's expressions work too: `"2*n_jobs"`, `"n_jobs"`, `"1.5*n_jobs"` (rounded up) follow
   * the map's concurrency, and `"all"` forms every batch at once.
   */
  readonly preDispatch?: PreDispatch | undefined
  readonly mode?: M | undefined
  /**
   * Per-task time limit, counted from the moment the task starts running in its worker (start to close;
   * joblib instead limits the wait for each result in the parent). A task over it is interrupted; a worker
   * that does not yield within the backend's `interruptGrace` is terminated and replaced. The task then
   * fails with `TaskTimeout`. In-process (sequential) synchronous code cannot be stopped: it is reported
   * as timed out once it returns. `Duration.infinity` is no limit; limits past Node's longest timer
   * (24.8 days) are kept too.
   */
  readonly timeout?: Duration.Input | undefined
  /**
   * Re-runs failed tasks as a Schedule allows: a task that failed with a typed error or `TaskTimeout`
   * (alone, on the same worker), and a whole batch whose worker crashed (`WorkerCrashed`, on a replacement).
   * `while` picks which failures to retry; by default all of them.
   */
  readonly retry?: Schedule.Schedule<unknown, RetryError<E>> | RetryOptions<E> | undefined
  /** joblib's `verbose`: progress lines through the Effect Logger, more often as it grows (above 10: every batch). */
  readonly verbose?: number | undefined
  /** Which implementation a hint-aware backend (`Backend.layerAuto`) should use; other backends ignore it. */
  readonly prefer?: Prefer | undefined
  /**
   * Move the input's big typed arrays and ArrayBuffers into thread workers instead of copying them, as
   * piscina's `transferList` does: afterwards the caller's arrays are detached (empty). For callers that
   * do not need their arrays after the map. A buffer that several items of an array input share is still
   * copied once into shared memory; a stream that sends one buffer in two batches fails with
   * `InvalidOptions`. Default false: the caller's arrays stay intact. Other backends ignore it.
   */
  readonly transfer?: boolean | undefined
}

/**
 * joblib's `pre_dispatch`: a count of batches, a multiple of the map's concurrency (`"2*n_jobs"`,
 * `"n_jobs"`), or `"all"`.
 *
 * **Example** (joblib's pre_dispatch='3*n_jobs')
 *
 * ```ts
 * import { Parallel } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2, 3], (x) => x + 1, { preDispatch: "3*n_jobs" })
 * ```
 *
 * @category models
 * @since 0.6.0
 */
export type PreDispatch = number | "all" | "n_jobs" | `${number}*n_jobs`

const PreDispatchSchema = Schema.Union([
  Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  Schema.Literals(["all", "n_jobs"]),
  Schema.TemplateLiteral([Schema.Number, "*n_jobs"]).check(
    Schema.makeFilter((expression: string) =>
      Number.parseFloat(expression) > 0 || "a multiple of n_jobs is positive, as \"2*n_jobs\""
    )
  )
])

/** Batches formed ahead for `"all"`: every one. */
const ALL = Number.MAX_SAFE_INTEGER

/**
 * The failures `retry` may re-run.
 *
 * @category models
 * @since 0.2.0
 */
export type RetryError<E> = E | TaskTimeout | WorkerCrashed

/**
 * A retry policy with a filter.
 *
 * @category models
 * @since 0.2.0
 */
export interface RetryOptions<E> {
  readonly schedule: Schedule.Schedule<unknown, RetryError<E>>
  readonly while?: ((error: RetryError<E>) => boolean) | undefined
}

/**
 * Options of {@link stream}: those of {@link map} plus `ordered`.
 *
 * @category models
 * @since 0.1.0
 */
export interface StreamOptions<M extends Mode = Mode, O extends boolean = boolean, E = any> extends MapOptions<M, E> {
  /** `true` (default) emits in input order; `false` emits as batches complete, each result with its index. */
  readonly ordered?: O | undefined
}

/**
 * The value a map yields per item, by mode.
 *
 * @category models
 * @since 0.1.0
 */
export type Out<A, E, M extends Mode> = M extends "exit" ? Exit.Exit<A, E | TaskTimeout>
  : M extends "result" ? Result.Result<A, E | TaskTimeout>
  : A

/**
 * The typed errors a map fails with, by mode: the task's own unless every item is reported.
 *
 * @category models
 * @since 0.1.0
 */
export type Err<E, M extends Mode> = M extends "failFast" ? E : never

/**
 * A result of an unordered stream, with the index of its input.
 *
 * @category models
 * @since 0.1.0
 */
export interface Indexed<A> {
  readonly index: number
  readonly value: A
}

const OptionsSchema = Schema.Struct({
  concurrency: Schema.optional(Options.Jobs),
  batchSize: Schema.optional(Schema.Union([
    Schema.Literal("auto"),
    Schema.Int.check(Schema.makeFilter((n: number) => n >= 1 || "a batch holds at least 1 item")),
    Schema.declare((u): u is Batching.BatchSize => Schedule.isSchedule(u), {
      expected: "a Schedule from Batching"
    })
  ])),
  preDispatch: Schema.optional(PreDispatchSchema),
  mode: Schema.optional(Schema.Literals(["failFast", "exit", "result"])),
  ordered: Schema.optional(Schema.Boolean),
  timeout: Schema.optional(Options.PositiveDuration),
  retry: Schema.optional(Schema.Union([
    Schema.declare((u): u is Schedule.Schedule<unknown, unknown> => Schedule.isSchedule(u), {
      expected: "a Schedule"
    }),
    Schema.Struct({
      schedule: Schema.declare((u): u is Schedule.Schedule<unknown, unknown> => Schedule.isSchedule(u), {
        expected: "a Schedule"
      }),
      while: Schema.optional(Schema.declare((u): u is (error: unknown) => boolean => typeof u === "function", {
        expected: "a predicate"
      }))
    })
  ])),
  verbose: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  prefer: Schema.optional(Schema.Literals(["threads", "processes"])),
  transfer: Schema.optional(Schema.Boolean)
})

const always = () => true

/** A count of batches, or a multiple of the concurrency that follows it as the map's concurrency changes. */
const preDispatchOf = (given: PreDispatch | undefined, concurrency: number) => {
  if (typeof given === "number") return { preDispatch: given, preDispatchPerWorker: undefined }
  if (given === "all") return { preDispatch: ALL, preDispatchPerWorker: undefined }
  const perWorker = given === undefined ? 2 : given === "n_jobs" ? 1 : Number.parseFloat(given)
  return { preDispatch: Math.max(1, Math.ceil(perWorker * concurrency)), preDispatchPerWorker: perWorker }
}

const resolve = Effect.fnUntraced(function*(where: string, options: StreamOptions | undefined, backend: BackendShape) {
  const parsed = yield* Options.parse(OptionsSchema, where, options)
  const requested = parsed.concurrency === undefined
    ? backend.workers
    : yield* Options.resolveJobs("concurrency", parsed.concurrency)
  const concurrency = Math.max(1, Math.min(requested, backend.workers))
  const batchSize = parsed.batchSize ?? "auto"
  const mode = parsed.mode ?? "failFast"
  return {
    concurrency,
    ...preDispatchOf(parsed.preDispatch, concurrency),
    given: { concurrency: parsed.concurrency === undefined ? undefined : requested },
    batchSize: batchSize === "auto"
      ? Batching.auto
      : typeof batchSize === "number"
      ? Batching.fixed(batchSize)
      : batchSize,
    splitTail: batchSize === "auto",
    failFast: mode === "failFast",
    ordered: parsed.ordered ?? true,
    mode,
    timeout: Options.limitMillis(parsed.timeout),
    retry: parsed.retry === undefined
      ? undefined
      : Schedule.isSchedule(parsed.retry)
      ? { schedule: parsed.retry, while: always }
      : { schedule: parsed.retry.schedule, while: parsed.retry.while ?? always },
    verbose: parsed.verbose ?? 0
  }
})

/** The backend for a map: the provided one, or the one a hint-aware backend picks for `prefer`. */
const backendFor = (options: StreamOptions | undefined): Effect.Effect<BackendShape, InvalidOptions> =>
  Effect.gen(function*() {
    const backend = engineOf(yield* Backend)
    return options?.prefer !== undefined && backend.select !== undefined
      ? yield* backend.select(options.prefer)
      : backend
  })

const tasksCompleted = Metric.counter("effect_joblib_tasks_completed", {
  description: "Tasks finished by Parallel.map and Parallel.stream, successfully or not"
})
const taskDuration = Metric.histogram("effect_joblib_task_duration_ms", {
  description: "Milliseconds per task in a worker (each batch's time over its size)",
  boundaries: Metric.exponentialBoundaries({ start: 0.01, factor: 4, count: 14 })
})
const batchesCompleted = Metric.counter("effect_joblib_batches_completed", {
  description: "Batches finished by Parallel.map and Parallel.stream"
})
const batchesRetried = Metric.counter("effect_joblib_batches_retried", {
  description: "Batches (or items) run again: moved off a lost Remote worker, after a crash, or by retry"
})
const mapWorkers = Metric.gauge("effect_joblib_workers", {
  description: "Workers of the latest map to start: its concurrency on its backend"
})
const workerRestarts = Metric.counter("effect_joblib_worker_restarts", {
  description: "Workers started to replace one that crashed, timed out, or outgrew its memory limit"
})

let nextMapId = 1

/** Follows one map: counts, progress events, verbose lines and metrics. */
const track = (
  label: string,
  backend: BackendShape,
  resolved: Effect.Success<ReturnType<typeof resolve>>,
  restarts: () => number,
  reporter: Progress.Reporter,
  context: Context.Context<never>
) => {
  const mapId = nextMapId++
  const began = performance.now()
  const restartsBefore = restarts()
  let completed = 0
  let dispatched = 0
  let batches = 0
  let total: number | undefined
  let exhausted = false
  const lines = resolved.verbose > 0 ? Progress.verboseLines(resolved.verbose) : undefined
  const log = Effect.runForkWith(context)
  const snapshot = (): Progress.Snapshot => {
    const elapsed = performance.now() - began
    return {
      mapId,
      label,
      completed,
      dispatched,
      batches,
      total,
      exhausted,
      elapsed,
      eta: total !== undefined && completed > 0 ? (elapsed / completed) * (total - completed) : undefined
    }
  }
  const emit = (event: Progress.Event) => {
    reporter(event)
    const line = lines?.(event)
    if (line !== undefined) log(Effect.logInfo(line))
  }
  const observer: Engine.Observer = {
    dispatched: (start, size, slot) => {
      dispatched += size
      batches++
      emit({ ...snapshot(), _tag: "BatchDispatched", start, size, slot })
    },
    completed: (start, size, duration, failed, worker) => {
      completed += size
      tasksCompleted.updateUnsafe(size, context)
      batchesCompleted.updateUnsafe(1, context)
      taskDuration.updateUnsafe(duration / size, context)
      emit({ ...snapshot(), _tag: "BatchCompleted", start, size, duration, failed, worker })
    },
    total: (n) => void (total = n),
    exhausted: () => void (exhausted = true),
    progress: (index, data) => emit({ ...snapshot(), _tag: "TaskProgress", index, data }),
    retried: (start, size, reason) => {
      batchesRetried.updateUnsafe(1, context)
      emit({ ...snapshot(), _tag: "BatchRetried", start, size, reason })
    }
  }
  return {
    observer,
    started: Effect.sync(() => {
      mapWorkers.updateUnsafe(resolved.concurrency, context)
      emit({
        ...snapshot(),
        _tag: "Started",
        workers: resolved.concurrency,
        backend: backend.name,
        preDispatch: resolved.preDispatch
      })
    }),
    finished: (exit: Exit.Exit<unknown, unknown>) =>
      Effect.sync(() => {
        workerRestarts.updateUnsafe(restarts() - restartsBefore, context)
        emit(
          Exit.isSuccess(exit)
            ? { ...snapshot(), _tag: "Finished" }
            : { ...snapshot(), _tag: "Failed", reason: Cause.pretty(exit.cause).split("\n")[0]! }
        )
      })
  }
}

/** Prepares a map: its backend, options, runner and tracking. */
const setUp = <I, A, E>(
  where: string,
  items: Input<I, any, any>,
  work: Work<I, A, E>,
  options: StreamOptions | undefined
) =>
  Effect.gen(function*() {
    yield* checkNotImportingTaskModule(`runs ${where}`)
    const backend = yield* backendFor(options)
    const resolved = yield* resolve(where, options, backend)
    const runner = yield* backend.prepare(
      toWork(work),
      Array.isArray(items) ? items as ReadonlyArray<I> : undefined,
      options?.transfer === true ? { transfer: true } : undefined
    )
    const tracker = track(
      label(work),
      backend,
      resolved,
      runner.restarts,
      yield* Progress.current,
      yield* Effect.context()
    )
    yield* Effect.annotateCurrentSpan({ backend: backend.name, workers: resolved.concurrency })
    yield* tracker.started
    return { resolved, runner, tracker, engine: { ...resolved, observer: tracker.observer } }
  })

const toWork = <I, A, E>(work: Work<I, A, E>): Internal.Work<I, A, E> =>
  Task.isTask(work)
    ? Internal.fromTask(work as Task.Task<I, A, E>)
    : Internal.fromFunction(work as (item: I) => A) as any

const label = <I, A, E>(work: Work<I, A, E>) => (Task.isTask(work) ? work.name : work.name || "<anonymous>")

const toOut = <A, E>(mode: Mode, exit: Exit.Exit<A, E>): Effect.Effect<unknown> => {
  if (mode === "exit") return Effect.succeed(exit)
  if (Exit.isSuccess(exit)) return Effect.succeed(mode === "result" ? Result.succeed(exit.value) : exit.value)
  if (mode === "result") {
    const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    if (failure !== undefined) return Effect.succeed(Result.fail(failure.error))
  }
  return Effect.failCause(exit.cause as Cause.Cause<never>)
}

const isInput = (u: unknown): boolean => !Task.isTask(u) && typeof u !== "function"

/**
 * Runs `work` over every item on the current backend and collects the
 * results in input order. The input is pulled lazily; batches are sized by
 * `batchSize` and at most `preDispatch` are in flight.
 *
 * A typed failure of the work fails the map with that error (decoded through
 * the task's error Schema when it ran in a worker); a thrown exception becomes
 * a defect that carries the worker's stack. The first failure stops dispatch
 * and interrupts the batches in flight.
 *
 * **Example** (The joblib one-liner)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const program = Parallel.map([1, 4, 9, 16], (x) => Math.sqrt(x)).pipe(
 *   Effect.provide(Backend.layerThreads({ workers: 2 }))
 * )
 * Effect.runPromise(program).then(console.log) // [1, 2, 3, 4]
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const map: {
  /**
   * Runs `work` over every item on the current backend and collects the results in input order.
   *
   * **Example** (Data-last)
   *
   * ```ts
   * import { pipe } from "effect"
   * import { Parallel } from "effect-joblib"
   *
   * const program = pipe([1, 2, 3], Parallel.map((x: number) => x * 2))
   * ```
   */
  <I, A, E = never, M extends Mode = "failFast">(
    work: Work<I, A, E>,
    options?: MapOptions<M, NoInfer<E>>
  ): <EI = never, RI = never>(
    items: Input<I, EI, RI>
  ) => Effect.Effect<Array<Out<A, E, M>>, Err<E, M> | EI | ParallelError, RI>
  /**
   * Runs `work` over every item on the current backend and collects the results in input order.
   *
   * **Example** (Data-first)
   *
   * ```ts
   * import { Parallel } from "effect-joblib"
   *
   * const program = Parallel.map([1, 2, 3], (x) => x * 2)
   * ```
   */
  <I, A, E = never, EI = never, RI = never, M extends Mode = "failFast">(
    items: Input<I, EI, RI>,
    work: Work<I, A, E>,
    options?: MapOptions<M, NoInfer<E>>
  ): Effect.Effect<Array<Out<A, E, M>>, Err<E, M> | EI | ParallelError, RI>
} = dual(
  (args) => isInput(args[0]),
  <I, A, E, EI, RI>(items: Input<I, EI, RI>, work: Work<I, A, E>, options?: MapOptions) =>
    Effect.gen(function*() {
      const { engine, resolved, runner, tracker } = yield* setUp("Parallel.map", items, work, {
        ...options,
        ordered: false
      })
      // Batches arrive out of order. With the length known, each is copied into place and dropped as it
      // arrives, so the peak holds the output and the batches in flight, not every batch and then a copy.
      const length = Array.isArray(items) ? items.length : undefined
      const out: Array<unknown> = []
      if (length !== undefined) out.length = length
      const parts: Array<{ readonly start: number; readonly values: ReadonlyArray<unknown> }> = []
      yield* Engine.forEachBatch(items, runner, engine, (start, outcome) =>
        Effect.gen(function*() {
          const values = outcome._tag === "Values" && resolved.mode === "failFast"
            ? outcome.values
            : yield* Effect.forEach(exitsOf(outcome), (exit) => toOut(resolved.mode, exit))
          if (length === undefined) parts.push({ start, values })
          else for (let i = 0; i < values.length; i++) out[start + i] = values[i]
        })).pipe(Effect.onExit((exit) => tracker.finished(exit)))
      if (length !== undefined) return out
      parts.sort((a, b) => a.start - b.start)
      for (const part of parts) for (const value of part.values) out.push(value)
      return out
    }).pipe(
      Effect.scoped,
      Effect.withSpan("Parallel.map", { attributes: { work: label(work) } })
    )
)

/**
 * Like {@link map}, but emits results as a Stream, so that huge or infinite
 * inputs run in bounded memory. In order by default; with `ordered: false`
 * results come as batches complete, each with its input index (joblib's
 * `return_as="generator_unordered"`).
 *
 * **Example** (An infinite input, taken lazily)
 *
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Parallel } from "effect-joblib"
 *
 * const firstTen = Parallel.stream(Stream.iterate(0, (n) => n + 1), (n) => n * n).pipe(
 *   Stream.take(10),
 *   Stream.runCollect
 * )
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const stream: {
  /**
   * Like {@link map}, but emits results as a Stream.
   *
   * **Example** (Data-last)
   *
   * ```ts
   * import { pipe } from "effect"
   * import { Parallel } from "effect-joblib"
   *
   * const results = pipe([1, 2, 3], Parallel.stream((x: number) => x + 1))
   * ```
   */
  <I, A, E = never, M extends Mode = "failFast", O extends boolean = true>(
    work: Work<I, A, E>,
    options?: StreamOptions<M, O, NoInfer<E>>
  ): <EI = never, RI = never>(
    items: Input<I, EI, RI>
  ) => Stream.Stream<
    O extends false ? Indexed<Out<A, E, M>> : Out<A, E, M>,
    Err<E, M> | EI | ParallelError,
    RI
  >
  /**
   * Like {@link map}, but emits results as a Stream.
   *
   * **Example** (Data-first, as completed)
   *
   * ```ts
   * import { Parallel } from "effect-joblib"
   *
   * const results = Parallel.stream([3, 1, 2], (x) => x * 10, { ordered: false })
   * ```
   */
  <I, A, E = never, EI = never, RI = never, M extends Mode = "failFast", O extends boolean = true>(
    items: Input<I, EI, RI>,
    work: Work<I, A, E>,
    options?: StreamOptions<M, O, NoInfer<E>>
  ): Stream.Stream<
    O extends false ? Indexed<Out<A, E, M>> : Out<A, E, M>,
    Err<E, M> | EI | ParallelError,
    RI
  >
} = dual(
  (args) => isInput(args[0]),
  <I, A, E, EI, RI>(items: Input<I, EI, RI>, work: Work<I, A, E>, options?: StreamOptions) =>
    Stream.unwrap(Effect.gen(function*() {
      const { engine, resolved, runner, tracker } = yield* setUp("Parallel.stream", items, work, options)
      const indexed = (start: number, values: ReadonlyArray<unknown>): ReadonlyArray<unknown> =>
        resolved.ordered ? values : values.map((value, i) => ({ index: start + i, value }))
      const wrap: ((value: unknown) => unknown) | undefined = resolved.mode === "exit"
        ? (value) => Exit.succeed(value)
        : resolved.mode === "result"
        ? (value) => Result.succeed(value)
        : undefined
      return Engine.run(items, runner, engine).pipe(
        Stream.onExit((exit) => tracker.finished(exit)),
        Stream.flatMap(({ start, outcome }) => {
          // A batch of successes is one chunk: no Exit, tuple or effect per item.
          if (outcome._tag === "Values") {
            const values: ReadonlyArray<unknown> = outcome.values
            return Stream.fromArray(indexed(start, wrap === undefined ? values : values.map(wrap)))
          }
          return Stream.fromArray<Exit.Exit<unknown, unknown>>(outcome.exits).pipe(
            Stream.mapEffect((exit, i) =>
              resolved.ordered
                ? toOut(resolved.mode, exit)
                : Effect.map(toOut(resolved.mode, exit), (value) => ({ index: start + i, value }))
            )
          )
        })
      )
    })).pipe(Stream.withSpan("Parallel.stream", { attributes: { work: label(work) } }))
)

/**
 * Validates map options without running anything; handy for configuration code.
 *
 * **Example** (Rejecting a batch size of 0)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Parallel } from "effect-joblib"
 *
 * const checked = Parallel.validateOptions({ batchSize: 0 }) // fails with InvalidOptions
 * ```
 *
 * @category utilities
 * @since 0.1.0
 */
export const validateOptions = (options: StreamOptions): Effect.Effect<void, InvalidOptions> =>
  Effect.gen(function*() {
    yield* resolve("Parallel", options, engineOf(yield* Backend))
  })

/**
 * The CPUs this process may use, as joblib's `cpu_count()`: the machine's, capped by a cgroup CPU quota (a
 * container's limit) and, inside a worker, by the share of the CPUs that worker was given.
 *
 * **Example** (Sizing a pool by hand)
 *
 * ```ts
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const layer = Backend.layerThreads({ workers: Math.max(1, Parallel.cpuCount() - 1) })
 * ```
 *
 * @category utilities
 * @since 0.6.0
 */
export const cpuCount = (): number => Cpus.available()

/**
 * How many workers a map asking for `concurrency` would use on the provided backend, as joblib's
 * `effective_n_jobs`: n_jobs rules (`-1` every CPU, `-2` all but one), capped by the backend's size. Without
 * `concurrency`, the backend's size; `0` is an `InvalidOptions`.
 *
 * **Example** (What n_jobs=-1 gives here)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const workers = Parallel.effectiveConcurrency(-1).pipe(Effect.provide(Backend.layerThreads()))
 * ```
 *
 * @category utilities
 * @since 0.6.0
 */
export const effectiveConcurrency = (concurrency?: number): Effect.Effect<number, InvalidOptions> =>
  Effect.gen(function*() {
    const resolved = yield* resolve("Parallel.effectiveConcurrency", { concurrency }, engineOf(yield* Backend))
    return resolved.concurrency
  })

/**
 * The results of {@link all}, position by position: a tuple of calls gives a tuple, an array a union.
 *
 * @category models
 * @since 0.6.0
 */
export type AllOut<Calls extends ReadonlyArray<Task.Call<any, any, any>>, M extends Mode> = {
  -readonly [K in keyof Calls]: Calls[K] extends Task.Call<any, infer A, infer E> ? Out<A, E, M> : never
}

/**
 * The typed errors of the tasks that {@link all} calls.
 *
 * @category models
 * @since 0.6.0
 */
export type CallError<Calls extends ReadonlyArray<Task.Call<any, any, any>>> = Calls[number] extends
  Task.Call<any, any, infer E> ? E : never

/**
 * Runs calls of several Tasks, each with its own payload, as joblib's
 * `Parallel()(delayed(f)(a, b) for …)` with different functions in one call, and
 * collects their results in input order, typed per position as `Effect.all`'s.
 *
 * The calls of each Task run as one {@link map} of that Task, all at once on the
 * provided backend: the same batching (each Task's batch size learned on its
 * own), progress (one map per Task), failure modes and options. The first
 * failure fails the whole call and interrupts the rest.
 *
 * **Example** (Fitting and scoring in one call)
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Parallel, Task } from "effect-joblib"
 *
 * export const Fit = Task.make("Fit", {
 *   payload: Schema.Tuple([Schema.Number, Schema.Number]),
 *   success: Schema.Number,
 *   run: ([x, y]) => x * y
 * })
 * export const Label = Task.make("Label", { payload: Schema.Number, success: Schema.String, run: (n) => `#${n}` })
 *
 * // [number, string, number]
 * const program = Parallel.all([Fit(2, 3), Label(7), Fit(4, 5)])
 * ```
 *
 * @category combinators
 * @since 0.6.0
 */
export const all = <
  const Calls extends ReadonlyArray<Task.Call<any, any, any>>,
  M extends Mode = "failFast"
>(
  calls: Calls,
  options?: MapOptions<M, NoInfer<CallError<Calls>>>
): Effect.Effect<AllOut<Calls, M>, Err<CallError<Calls>, M> | ParallelError> =>
  Effect.gen(function*() {
    const groups = new Map<
      Task.Task<any, any, any>,
      { readonly at: Array<number>; readonly payloads: Array<unknown> }
    >()
    for (const [i, call] of Array.from(calls as ReadonlyArray<unknown>).entries()) {
      if (!Task.isCall(call)) {
        return yield* new InvalidOptions({
          option: "calls",
          message: `Parallel.all: item ${i} is not a call of a Task (as SquareRoot(4)), got ${
            call === null ? "null" : typeof call
          }`
        })
      }
      const group = groups.get(call.task) ?? groups.set(call.task, { at: [], payloads: [] }).get(call.task)!
      group.at.push(i)
      group.payloads.push(call.payload)
    }
    const out: Array<unknown> = []
    out.length = calls.length
    yield* Effect.forEach(
      groups,
      ([task, { at, payloads }]) =>
        Effect.map(map(payloads, task, options as MapOptions<M, any>), (values) => {
          for (let j = 0; j < at.length; j++) out[at[j]!] = values[j]
        }),
      { concurrency: "unbounded", discard: true }
    )
    return out as AllOut<Calls, M>
  }) as Effect.Effect<AllOut<Calls, M>, Err<CallError<Calls>, M> | ParallelError>
