/**
 * Where `Parallel.map` runs its batches. A backend is a service provided by a
 * Layer, so library code never hard-codes one: applications and tests choose
 * it. With none provided, maps run sequentially in the calling fiber (joblib's
 * `n_jobs=None`).
 *
 * `threads` needs Node (worker_threads) and runs worker code under Node's type
 * stripping.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import { spawn } from "node:child_process"
import { Worker } from "node:worker_threads"
import * as Options from "./internal/options.ts"
import * as Cpus from "./internal/parallel/cpus.ts"
import { checkNotImportingTaskModule } from "./internal/parallel/guard.ts"
import { withHugePages } from "./internal/parallel/hugePages.ts"
import { decode, exitsOf, makeSettled, timedOut } from "./internal/parallel/outcome.ts"
import { type RawOutcome, Slot, type Spawn } from "./internal/parallel/pool.ts"
import { TaskReporter } from "./internal/parallel/report.ts"
import { countBuffers, MovedTwice, shareAll, Sharer } from "./internal/parallel/share.ts"
import { identity, inlineEffect, type Local, type Work } from "./internal/parallel/work.ts"
import { isThenable, Status, workerSource } from "./internal/parallel/workerRuntime.js"
import { InvalidOptions, type ParallelError, type TaskModuleError, type TaskTimeout } from "./ParallelError.ts"

/**
 * The outcome of one batch and how long it took in milliseconds. When every
 * item succeeded it holds their `values`; otherwise an `Exit` per item that ran,
 * in batch order. In fail-fast mode a batch stops at its first failure, so
 * `exits` may be shorter than the batch. An item that overran the map's
 * `timeout` fails with `TaskTimeout`. When the map asked for `timings`, they
 * hold each finished item's start and end in epoch milliseconds, in pairs.
 *
 * @category models
 * @since 0.1.0
 */
export type Outcome<A, E> =
  | {
    readonly _tag: "Values"
    readonly values: ReadonlyArray<A>
    readonly duration: number
    readonly timings?: ReadonlyArray<number> | undefined
  }
  | {
    readonly _tag: "Exits"
    readonly exits: ReadonlyArray<Exit.Exit<A, E | TaskTimeout>>
    readonly duration: number
    readonly timings?: ReadonlyArray<number> | undefined
  }

/**
 * How one batch runs.
 *
 * @category models
 * @since 0.2.0
 */
export interface RunOptions {
  /** Stop the batch at its first failure. */
  readonly failFast: boolean
  /** Per-item limit in milliseconds, counted from the moment the item starts. */
  readonly timeout: number | undefined
  /** Receives what a running task reports with `Progress.report`, with the item's input index. */
  readonly onProgress: ((index: number, data: unknown) => void) | undefined
  /** Report when each item started and ended (`Outcome.timings`), for a tracer's task spans. */
  readonly timings?: boolean | undefined
  /**
   * The batch's span: a Task's own spans become its children, and its logs carry `traceId` and `spanId`,
   * in whichever process or machine it runs.
   */
  readonly parent?: { readonly traceId: string; readonly spanId: string } | undefined
}

/**
 * A backend prepared for one map: its slots and a way to run a batch on one of them.
 *
 * @category models
 * @since 0.1.0
 */
export interface Runner<I, A, E> {
  readonly slots: number
  /** Batches sent to a slot and not yet finished, by every map sharing the backend. */
  readonly outstanding: (slot: number) => number
  /** Completes when the next batch of any map sharing the backend finishes. */
  readonly settled: Effect.Effect<void>
  /**
   * Batch-size policy state kept across maps of the same work on this backend, by policy, so that a warm
   * pool starts where the last map left off (joblib keeps its auto batch size within `with Parallel()`).
   */
  readonly batchState: WeakMap<object, unknown> | undefined
  /** Workers started so far to replace others (crashed, timed out, or over their memory limit). */
  readonly restarts: () => number
  /**
   * The least work (milliseconds) worth a batch's round trip: auto batching never splits the tail of the
   * input below it. Default 10; a backend with a costlier round trip (a queue on a server) asks for more.
   */
  readonly minBatchMillis?: number | undefined
  readonly run: (
    slot: number,
    items: ReadonlyArray<I>,
    /** Input index of the first item. */
    start: number,
    options: RunOptions
  ) => Effect.Effect<Outcome<A, E>, ParallelError>
}

/**
 * What a map tells its backend when it prepares: whether the input's buffers may be moved.
 *
 * @category models
 * @since 0.5.0
 */
export interface PrepareOptions {
  readonly transfer?: boolean | undefined
}

/**
 * The backend service.
 *
 * @category models
 * @since 0.1.0
 */
export interface Backend {
  readonly name: string
  /** How many batches it runs at once. */
  readonly workers: number
  /**
   * Present on a hint-aware backend ({@link auto}): the backend to use for a map's `prefer` hint.
   * Backends without it ignore the hint, so that an explicitly provided Layer always wins.
   */
  readonly select?: ((prefer: Prefer) => Effect.Effect<Backend, InvalidOptions>) | undefined
  /** Checks that the work can run here (for example that a function can be shipped) before any dispatch. */
  readonly prepare: <I, A, E>(
    work: Work<I, A, E>,
    /** The whole input, when it is an array: lets a backend plan how to move big buffers. */
    items?: ReadonlyArray<I> | undefined,
    /** `transfer`: the map's items may be moved (detached) rather than copied. */
    options?: PrepareOptions | undefined
  ) => Effect.Effect<Runner<I, A, E>, ParallelError, Scope.Scope>
}

/**
 * The backend a map uses; sequential unless a Layer provides another.
 *
 * **Example** (Choosing a backend by providing a Layer)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const program = Parallel.map([1, 4, 9], (x) => Math.sqrt(x))
 * const inTests = program // sequential: no Layer needed
 * const inProduction = program.pipe(Effect.provide(Backend.layerThreads({ workers: -1 })))
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export const Backend: Context.Reference<Backend> = Context.Reference<Backend>("effect-joblib/Backend", {
  defaultValue: () => makeSequential(1)
})

/**
 * Which implementation a map would rather run on, for a hint-aware backend.
 *
 * @category models
 * @since 0.2.0
 */
export type Prefer = "threads" | "processes"

/** Applies a per-item timeout to an effect; the item counts as timed out if it overran, even synchronously. */
const withTimeout = <A, E>(
  effect: Effect.Effect<A, E>,
  index: number,
  timeout: number | undefined
): Effect.Effect<Exit.Exit<A, E | TaskTimeout>> => {
  if (timeout === undefined) return Effect.exit(effect)
  const began = performance.now()
  return Effect.map(Effect.exit(Effect.timeoutOption(effect, timeout)), (exit): Exit.Exit<A, E | TaskTimeout> => {
    if (Exit.isFailure(exit)) return Exit.failCause(exit.cause)
    const elapsed = performance.now() - began
    const option = exit.value
    return option._tag === "None" || elapsed > timeout
      ? Exit.fail(timedOut(index, timeout, elapsed))
      : Exit.succeed(option.value)
  })
}

const runLocal = <I, A, E>(
  local: Local<I, A, E>,
  label: string,
  items: ReadonlyArray<I>,
  start: number,
  options: RunOptions
) =>
  Effect.gen(function*() {
    const { failFast, timeout, onProgress } = options
    const started = performance.now()
    const values: Array<A> = []
    const timings = options.timings === true ? [] as Array<number> : undefined
    let exits: Array<Exit.Exit<A, E | TaskTimeout>> | undefined
    for (let i = 0; i < items.length; i++) {
      const index = start + i
      let exit: Exit.Exit<A, E | TaskTimeout>
      let out: A | PromiseLike<A> | Effect.Effect<A, E, any>
      let threw = false
      const began = performance.now()
      const startedAt = timings === undefined ? 0 : performance.timeOrigin + began
      try {
        out = local.run(items[i]!, index)
      } catch (defect) {
        out = Effect.die(defect)
        threw = true
      }
      if (Effect.isEffect(out)) {
        if (local.inline && !threw) return yield* Effect.fail(inlineEffect(label))
        const provided = options.parent === undefined
          ? local.provide(out)
          : Effect.annotateLogs(local.provide(out), { traceId: options.parent.traceId, spanId: options.parent.spanId })
        exit = yield* withTimeout(
          onProgress === undefined
            ? provided
            : Effect.provideService(provided, TaskReporter, (data) => onProgress(index, data)),
          index,
          timeout
        )
      } else if (isThenable(out)) {
        exit = yield* withTimeout(Effect.promise(() => out as PromiseLike<A>), index, timeout)
      } else {
        const elapsed = performance.now() - began
        exit = timeout !== undefined && elapsed > timeout
          ? Exit.fail(timedOut(index, timeout, elapsed))
          : Exit.succeed(out)
      }
      timings?.push(startedAt, performance.timeOrigin + performance.now())
      if (exits === undefined) {
        if (Exit.isSuccess(exit)) {
          values.push(exit.value)
          continue
        }
        exits = values.map((value) => Exit.succeed(value))
      }
      exits.push(exit)
      if (failFast && Exit.isFailure(exit)) break
    }
    const duration = performance.now() - started
    return exits === undefined
      ? { _tag: "Values" as const, values, duration, timings }
      : { _tag: "Exits" as const, exits, duration, timings }
  })

const makeSequential = (concurrency: number): Backend => {
  const settled = makeSettled()
  const outstanding = Array.from({ length: concurrency }, () => 0)
  // Each slot runs one batch at a time, like a worker would.
  const locks = Array.from({ length: concurrency }, () => Semaphore.makeUnsafe(1))
  return {
    name: "sequential",
    workers: concurrency,
    prepare: <I, A, E>(work: Work<I, A, E>) =>
      Effect.map(work.local, (local): Runner<I, A, E> => ({
        slots: concurrency,
        outstanding: (slot) => outstanding[slot]!,
        settled: settled.wait,
        batchState: undefined,
        restarts: () => 0,
        run: (slot, items, start, options) =>
          Effect.suspend(() => {
            outstanding[slot]!++
            return runLocal(local, work.label, items, start, options).pipe(
              locks[slot]!.withPermits(1),
              Effect.ensuring(Effect.sync(() => {
                outstanding[slot]!--
                settled.notify()
              }))
            )
          })
      }))
  }
}

/**
 * One batch, as a custom backend ({@link make}) sees it.
 *
 * @category models
 * @since 0.5.0
 */
export interface Batch {
  /** What runs: a Task's name, or the function's. */
  readonly label: string
  /** Input index of the first item. */
  readonly start: number
  /** The items, as the map received them. */
  readonly items: ReadonlyArray<unknown>
  /**
   * Runs the batch in this process with the map's options (timeout, fail-fast, progress), as the
   * sequential backend does.
   */
  readonly runHere: Effect.Effect<Outcome<unknown, unknown>, ParallelError>
}

/**
 * What {@link make} needs: a name, how many batches run at once, and how one runs.
 *
 * @category models
 * @since 0.5.0
 */
export interface MakeOptions {
  readonly name: string
  /** How many batches it runs at once: a map's default concurrency. */
  readonly workers: number
  /**
   * Runs one batch on `slot` (0 to `workers - 1`); a slot gets one batch at a time. Wrap `batch.runHere`
   * (under a rate limit, in a span, on another runtime), or fail with a `ParallelError`, such as
   * `WorkerCrashed` for a batch that a map's `retry` should run again.
   */
  readonly runBatch: (batch: Batch, slot: number) => Effect.Effect<Outcome<unknown, unknown>, ParallelError>
}

const MakeOptionsSchema = Schema.Struct({
  name: Schema.String.check(Schema.isMinLength(1)),
  workers: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  runBatch: Schema.declare((u): u is MakeOptions["runBatch"] => typeof u === "function", { expected: "a function" })
})

/** A batch outcome from code outside the library: the shape the engine relies on, or a defect saying what broke. */
const checkedOutcome = (name: string, size: number, outcome: unknown) => {
  const o = outcome as Outcome<unknown, unknown> | undefined
  const ok = o !== null && typeof o === "object" && typeof o.duration === "number" &&
    (o._tag === "Values" ?
      Array.isArray(o.values) && o.values.length === size
      : o._tag === "Exits" && Array.isArray(o.exits) && o.exits.length <= size && o.exits.every(Exit.isExit))
  return ok
    ? Effect.succeed(o)
    : Effect.die(
      new Error(
        `Backend "${name}": runBatch returned something that is not a batch Outcome of ${size} items ` +
          `({ _tag: "Values", values, duration } or { _tag: "Exits", exits, duration })`
      )
    )
}

/**
 * A custom backend, joblib's `register_parallel_backend`: maps dispatch batches to it exactly as to the
 * built-in ones (batching, pre-dispatch, ordering, fail-fast, retries, progress), and it decides how each
 * batch runs.
 *
 * **Example** (A backend that runs each batch under a global rate limit)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const limited = Backend.make({
 *   name: "rate-limited",
 *   workers: 4,
 *   runBatch: (batch) => Effect.andThen(Effect.sleep("10 millis"), batch.runHere)
 * })
 * const program = Parallel.map([1, 2, 3], (x) => x * 2).pipe(Effect.provide(limited))
 * ```
 *
 * @category constructors
 * @since 0.5.0
 */
export const make = (options: MakeOptions): Layer.Layer<never, InvalidOptions> =>
  Layer.effect(Backend)(Effect.map(Options.parse(MakeOptionsSchema, "Backend.make", options), (parsed) => {
    const settled = makeSettled()
    const outstanding = Array.from({ length: parsed.workers }, () => 0)
    const locks = Array.from({ length: parsed.workers }, () => Semaphore.makeUnsafe(1))
    const backend: Backend = {
      name: parsed.name,
      workers: parsed.workers,
      prepare: <I, A, E>(work: Work<I, A, E>) =>
        Effect.map(work.local, (local): Runner<I, A, E> => ({
          slots: parsed.workers,
          outstanding: (slot) => outstanding[slot]!,
          settled: settled.wait,
          batchState: undefined,
          restarts: () => 0,
          run: (slot, items, start, runOptions) =>
            Effect.suspend(() => {
              outstanding[slot]!++
              const batch: Batch = {
                label: work.label,
                start,
                items,
                runHere: runLocal(local, work.label, items, start, runOptions) as Effect.Effect<
                  Outcome<unknown, unknown>,
                  ParallelError
                >
              }
              return Effect.suspend(() => options.runBatch(batch, slot)).pipe(
                Effect.flatMap((outcome) => checkedOutcome(parsed.name, items.length, outcome)),
                locks[slot]!.withPermits(1),
                Effect.ensuring(Effect.sync(() => {
                  outstanding[slot]!--
                  settled.notify()
                }))
              ) as Effect.Effect<Outcome<A, E>, ParallelError>
            })
        }))
    }
    return backend
  }))

const SequentialOptions = Schema.Struct({
  concurrency: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)))
})

/**
 * Runs every batch in the calling process. With `concurrency` above 1 it runs
 * that many batches at once on fibers, which suits I/O-bound effects (joblib's
 * threading backend, `require="sharedmem"`). Any function runs, closures included.
 *
 * **Example** (Sequential in tests)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const offset = 10
 * const program = Parallel.map([1, 2, 3], (x) => x + offset).pipe(
 *   Effect.provide(Backend.layerSequential({ concurrency: 4 }))
 * )
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerSequential = (
  options?: { readonly concurrency?: number | undefined }
): Layer.Layer<never, InvalidOptions> =>
  Layer.effect(Backend)(
    Effect.map(
      Options.parse(SequentialOptions, "Backend.layerSequential", options),
      (parsed) => makeSequential(parsed.concurrency ?? 1)
    )
  )
/**
 * Options shared by {@link threads} and {@link processes}.
 *
 * @category models
 * @since 0.2.0
 */
export interface PoolOptions {
  /**
   * Worker count with joblib's n_jobs rules: -1 is every CPU (cgroup quotas respected), -2 all but one.
   * Inside a worker the count is capped by the CPU budget that worker was given.
   */
  readonly workers?: number | undefined
  /** Arrays and buffers from this many bytes are shared instead of copied per task (joblib's `max_nbytes`). Default 1 MB. */
  readonly maxBytes?: number | undefined
  /**
   * How long a cancelled or timed-out task may take to stop before its worker is terminated and replaced.
   * Default 100 millis: cooperative tasks stop well within it, and a stuck one costs little more.
   */
  readonly interruptGrace?: Duration.Input | undefined
  /**
   * Recycle a worker between batches once it holds more than this many megabytes: its heap for a
   * thread, its resident set for a process (loky recycles at 300 MB). Default: never.
   */
  readonly memoryLimitMb?: number | undefined
  readonly execArgv?: ReadonlyArray<string> | undefined
  /**
   * What becomes of what workers write to stderr. `"forward"` (the default) writes it to this process's
   * stderr as it comes; `"capture"` keeps it to itself. Either way a `WorkerCrashed` carries the end of
   * the crashed worker's stderr, such as an uncaught exception's stack or V8's out-of-memory report.
   */
  readonly stderr?: "forward" | "capture" | undefined
  /**
   * Extra environment variables of each worker. Workers also get `UV_THREADPOOL_SIZE`, `OMP_NUM_THREADS`
   * and similar set to `max(1, cpus / workers)`, and `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (huge pages for
   * big allocations), unless set here or already set in this process.
   */
  readonly env?: Readonly<Record<string, string>> | undefined
}

/**
 * Options of {@link threads}.
 *
 * @category models
 * @since 0.1.0
 */
export interface ThreadsOptions extends PoolOptions {
  /** `resourceLimits` of each worker thread. */
  readonly resourceLimits?: {
    readonly maxOldGenerationSizeMb?: number | undefined
    readonly maxYoungGenerationSizeMb?: number | undefined
    readonly stackSizeMb?: number | undefined
  } | undefined
}

/**
 * Options of {@link processes}.
 *
 * @category models
 * @since 0.2.0
 */
export interface ProcessesOptions extends PoolOptions {}

const PoolOptionsFields = {
  workers: Schema.optional(Options.Jobs),
  maxBytes: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  interruptGrace: Schema.optional(Options.DurationInput),
  memoryLimitMb: Schema.optional(Options.Positive),
  execArgv: Schema.optional(Schema.Array(Schema.String)),
  stderr: Schema.optional(Schema.Literals(["forward", "capture"])),
  env: Schema.optional(Schema.Record(Schema.String, Schema.String))
}

const ThreadsOptionsSchema = Schema.Struct({
  ...PoolOptionsFields,
  resourceLimits: Schema.optional(Schema.Struct({
    maxOldGenerationSizeMb: Schema.optional(Options.Positive),
    maxYoungGenerationSizeMb: Schema.optional(Options.Positive),
    stackSizeMb: Schema.optional(Options.Positive)
  }))
})

const ProcessesOptionsSchema = Schema.Struct(PoolOptionsFields)

// Workers start from source text rather than a file of this package, so that they start the same way
// from an installed package, a single-file bundle or a test runner.
const threadSource = workerSource("startThread")
const processSource = workerSource("startProcess")
const SOURCE_VARIABLE = "EFFECT_JOBLIB_WORKER_SOURCE"
const processBootstrap = `new Function(process.env.${SOURCE_VARIABLE})()`

/** Options of this process that would make a worker process run something else, or nothing. */
const NOT_INHERITED = new Set(["-e", "--eval", "-p", "--print", "-c", "--check", "-i", "--interactive", "--test"])
const TAKES_VALUE = new Set(["-e", "--eval", "-p", "--print"])

/** The Node options a worker process inherits from this one (as `fork` would), less any entry point. */
const inheritedExecArgv = (): Array<string> => {
  const out: Array<string> = []
  const argv = process.execArgv
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const name = flag.split("=", 1)[0]!
    if (
      NOT_INHERITED.has(name) || name.startsWith("--watch") || name.startsWith("--test-") || name === "--input-type"
    ) {
      if (TAKES_VALUE.has(flag)) i++
      continue
    }
    out.push(flag)
  }
  return out
}

/** Native thread pools that a worker should size to its share of the CPUs, as joblib does for BLAS. */
const NATIVE_THREAD_VARIABLES = [
  "UV_THREADPOOL_SIZE",
  "OMP_NUM_THREADS",
  "OPENBLAS_NUM_THREADS",
  "MKL_NUM_THREADS",
  "VECLIB_MAXIMUM_THREADS",
  "NUMEXPR_NUM_THREADS",
  "BLIS_NUM_THREADS"
]

/**
 * The environment of a worker: glibc's huge pages for big allocations, its CPU budget for nested maps,
 * native thread pool sizes, then the user's.
 */
const workerEnv = (workers: number, user: Readonly<Record<string, string>> | undefined) => {
  const share = String(Math.max(1, Math.floor(Cpus.available() / workers)))
  const env: Record<string, string | undefined> = withHugePages({ ...process.env })
  for (const name of NATIVE_THREAD_VARIABLES) env[name] ??= share
  env[Cpus.BUDGET_VARIABLE] = share
  return { ...env, ...user }
}

interface PoolConfig {
  readonly name: string
  readonly workers: number
  readonly maxBytes: number
  readonly grace: number
  readonly memoryLimit: number | undefined
  /** Workers share no memory with this process: reused buffers are sent once per worker and referred to. */
  readonly isolated: boolean
  readonly forwardStderr: boolean
  readonly spawn: Spawn
}

/** Parses the options every pool has, resolving the worker count against the CPU budget. */
const resolvePool = Effect.fnUntraced(function*(
  parsed: { readonly workers?: number | undefined } & Omit<PoolOptions, "workers">
) {
  const requested = yield* Options.resolveJobs("workers", parsed.workers ?? -1)
  // Inside a worker, a nested pool gets no more workers than that worker's share of the CPUs.
  const budget = Cpus.budget()
  const workers = budget === undefined ? requested : Math.min(requested, budget)
  return {
    workers,
    maxBytes: parsed.maxBytes ?? 1024 * 1024,
    grace: Duration.toMillis(Duration.fromInputUnsafe(parsed.interruptGrace ?? 100)),
    memoryLimit: parsed.memoryLimitMb === undefined ? undefined : parsed.memoryLimitMb * 1024 * 1024,
    forwardStderr: parsed.stderr !== "capture",
    env: workerEnv(workers, parsed.env)
  }
})

/** Builds a pool backend on top of a spawn function. */
const makePool = Effect.fnUntraced(function*(config: PoolConfig) {
  const settled = makeSettled()
  const batchStates = new Map<number, WeakMap<object, unknown>>()
  const slots = Array.from(
    { length: config.workers },
    (_, i) =>
      new Slot(i, config.spawn, {
        grace: config.grace,
        forwardStderr: config.forwardStderr,
        memoryLimit: config.memoryLimit,
        onSettle: settled.notify
      })
  )
  yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all(slots.map((slot) => slot.close()))))
  yield* Effect.promise(() => Promise.all(slots.map((slot) => slot.warm())))
  const backend: Backend = {
    name: config.name,
    workers: config.workers,
    prepare: <I, A, E>(work: Work<I, A, E>, items?: ReadonlyArray<I>, options?: PrepareOptions) =>
      Effect.gen(function*() {
        const { key, spec } = yield* work.ship
        const counts = work.mayShare && items !== undefined ? countBuffers(items, config.maxBytes) : undefined
        const sharer = new Sharer(config.maxBytes, counts, config.isolated, options?.transfer === true)
        if (config.isolated) {
          // Buffers sent once per process for this map are dropped when it ends.
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              const ids = sharer.referenced()
              if (ids.length > 0) { for (const slot of slots) slot.release(ids) }
            })
          )
        }
        const runOnce = (slot: Slot, items: ReadonlyArray<I>, start: number, options: RunOptions) =>
          Effect.suspend((): Effect.Effect<RawOutcome, ParallelError> => {
            let encoded: ReadonlyArray<unknown> = items
            if (work.encodeItem !== identity) {
              // Pushed, not preallocated: structured clone copies packed arrays much faster than holey ones.
              const out: Array<unknown> = []
              for (let i = 0; i < items.length; i++) out.push(work.encodeItem(items[i]!))
              encoded = out
            }
            if (work.mayShare) {
              try {
                encoded = shareAll(sharer, encoded)
              } catch (error) {
                if (!(error instanceof MovedTwice)) throw error
                return Effect.fail(new InvalidOptions({ option: "transfer", message: error.message }))
              }
            }
            const onProgress = options.onProgress
            return slot.run({
              key,
              spec,
              items: encoded,
              start,
              failFast: options.failFast,
              timeout: options.timeout,
              refs: sharer.takeRefs(),
              transfer: sharer.takeTransfer(),
              timings: options.timings,
              parent: options.parent,
              onProgress: onProgress === undefined ? undefined : (index, data) => onProgress(start + index, data)
            })
          })
        const run = (
          slot: Slot,
          items: ReadonlyArray<I>,
          start: number,
          options: RunOptions
        ): Effect.Effect<Outcome<A, E>, ParallelError> =>
          Effect.flatMap(runOnce(slot, items, start, options), (raw) => {
            if (raw.status?.includes(Status.InlineEffect)) return Effect.fail(inlineEffect(work.label))
            const outcome = decode(
              work,
              raw,
              start,
              items.length,
              options.timeout,
              `${config.name} worker ${slot.workerId}`
            )
            const stoppedAt = raw.stoppedAt
            if (stoppedAt === undefined || options.failFast || stoppedAt + 1 >= items.length) {
              return Effect.succeed(outcome)
            }
            // The worker was replaced at a stuck item: the items after it run on the replacement.
            const next = stoppedAt + 1
            return Effect.map(run(slot, items.slice(next), start + next, options), (rest): Outcome<A, E> => ({
              _tag: "Exits" as const,
              exits: [...exitsOf(outcome), ...exitsOf(rest)],
              duration: outcome.duration + rest.duration
              // No timings: the stuck item's end died with its worker, so they would not line up with the items.
            }))
          })
        return {
          slots: slots.length,
          outstanding: (slot) => slots[slot]!.outstanding,
          settled: settled.wait,
          batchState: batchStates.get(key) ?? batchStates.set(key, new WeakMap()).get(key),
          restarts: () => slots.reduce((sum, slot) => sum + Math.max(0, slot.spawned - 1), 0),
          run: (index, items, start, options) => run(slots[index]!, items, start, options)
        } satisfies Runner<I, A, E>
      })
  }
  return backend
})

const makeThreads = Effect.fnUntraced(function*(options: ThreadsOptions | undefined) {
  const parsed = yield* Options.parse(ThreadsOptionsSchema, "Backend.layerThreads", options)
  const pool = yield* resolvePool(parsed)
  let count = 0
  return yield* makePool({
    ...pool,
    name: "threads",
    isolated: false,
    spawn: (control, handlers) => {
      const worker = new Worker(
        threadSource,
        {
          eval: true,
          workerData: { control, threshold: pool.maxBytes },
          resourceLimits: parsed.resourceLimits,
          execArgv: parsed.execArgv ? [...parsed.execArgv] : undefined,
          env: pool.env,
          stderr: true,
          name: `effect-joblib-${++count}`
        } as ConstructorParameters<typeof Worker>[1]
      )
      worker.stderr.on("data", handlers.onStderr)
      worker.on("message", handlers.onMessage)
      worker.on("error", handlers.onError)
      worker.on("exit", (code) => handlers.onExit(code, undefined))
      return {
        id: worker.threadId,
        post: (message, transfer) => worker.postMessage(message, transfer as Array<ArrayBuffer> | undefined),
        terminate: () => worker.terminate().then(() => undefined)
      }
    }
  })
})

const makeProcesses = Effect.fnUntraced(function*(options: ProcessesOptions | undefined) {
  const parsed = yield* Options.parse(ProcessesOptionsSchema, "Backend.layerProcesses", options)
  const pool = yield* resolvePool(parsed)
  return yield* makePool({
    ...pool,
    name: "processes",
    isolated: true,
    spawn: (_control, handlers) => {
      const execArgv = parsed.execArgv ? [...parsed.execArgv] : inheritedExecArgv()
      const child = spawn(process.execPath, [...execArgv, "--eval", processBootstrap], {
        serialization: "advanced",
        env: { ...pool.env, EFFECT_JOBLIB_THRESHOLD: String(pool.maxBytes), [SOURCE_VARIABLE]: processSource },
        stdio: ["ignore", "inherit", "pipe", "ipc"]
      })
      child.stderr!.on("data", handlers.onStderr)
      child.on("message", (message) => handlers.onMessage(message as never))
      child.on("error", handlers.onError)
      child.on("exit", (code, signal) => {
        const report = () => handlers.onExit(code ?? undefined, signal ?? undefined)
        // A crash report is read whole once stderr ends; a grandchild holding the pipe open delays it little.
        const stderr = child.stderr!
        if (stderr.readableEnded) return report()
        const timer = setTimeout(report, 200)
        stderr.once("end", () => {
          clearTimeout(timer)
          report()
        })
      })
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      return {
        id: child.pid ?? -1,
        // A failed send means the channel closed: the exit handler reports the worker as crashed.
        post: (message) => void child.send(message, () => {}),
        terminate: () => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
          return exited
        }
      }
    }
  })
})

/**
 * A pool of worker threads that lives as long as the Layer's scope, so that
 * repeated maps reuse warm workers (joblib's `with Parallel(...)`). Tasks run
 * by importing their module in the worker; inline functions are shipped by
 * source when they capture nothing.
 *
 * **Example** (A pool of all CPUs)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const program = Effect.gen(function*() {
 *   const roots = yield* Parallel.map([1, 4, 9], (x) => Math.sqrt(x))
 *   const squares = yield* Parallel.map(roots, (x) => x * x) // same warm workers
 *   return squares
 * }).pipe(Effect.provide(Backend.layerThreads({ workers: -1 })))
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerThreads = (options?: ThreadsOptions): Layer.Layer<never, InvalidOptions | TaskModuleError> =>
  Layer.effect(Backend)(
    Effect.andThen(checkNotImportingTaskModule("builds Backend.layerThreads"), makeThreads(options))
  )

/**
 * A pool of child processes (Node started with IPC and the "advanced" serialization
 * so that typed arrays travel as raw bytes), with the same semantics as
 * {@link threads}. A process that segfaults, exits or runs out of memory
 * fails only its batch with `WorkerCrashed` and is replaced. A buffer that
 * several items use is sent to each process once and referred to after.
 * Workers ignore SIGINT and exit when this process goes away, so Ctrl-C
 * leaves none behind.
 *
 * **Example** (Isolating native or crash-prone work)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2, 3], (x) => x * 2).pipe(
 *   Effect.provide(Backend.layerProcesses({ workers: 2 }))
 * )
 * ```
 *
 * @category layers
 * @since 0.2.0
 */
export const layerProcesses = (options?: ProcessesOptions): Layer.Layer<never, InvalidOptions | TaskModuleError> =>
  Layer.effect(Backend)(
    Effect.andThen(checkNotImportingTaskModule("builds Backend.layerProcesses"), makeProcesses(options))
  )

/**
 * Options of {@link auto}.
 *
 * @category models
 * @since 0.2.0
 */
export interface AutoOptions {
  /** The implementation for maps without a `prefer` hint. Default `"threads"`. */
  readonly prefer?: Prefer | undefined
  readonly threads?: ThreadsOptions | undefined
  readonly processes?: ProcessesOptions | undefined
}

/**
 * A hint-aware backend: each map runs on threads or processes by its `prefer`
 * option (joblib's `prefer=`), and each pool starts the first time a map asks
 * for it. Hints only choose within this backend: when the application
 * provides `threads` or `processes` explicitly, maps run there whatever they
 * prefer, as joblib lets an explicit backend win.
 *
 * **Example** (A library hinting, the application deciding)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * // Library code: would rather isolate this work in processes.
 * const risky = Parallel.map([1, 2, 3], (x) => x + 1, { prefer: "processes" })
 * // The application: honours hints here; with Backend.layerThreads() it would run on threads.
 * const program = risky.pipe(Effect.provide(Backend.layerAuto()))
 * ```
 *
 * @category layers
 * @since 0.2.0
 */
export const layerAuto = (options?: AutoOptions): Layer.Layer<never, InvalidOptions | TaskModuleError> =>
  Layer.effect(Backend)(Effect.gen(function*() {
    yield* checkNotImportingTaskModule("builds Backend.layerAuto")
    const scope = yield* Effect.scope
    const pools = {
      threads: yield* Effect.cached(Scope.provide(makeThreads(options?.threads), scope)),
      processes: yield* Effect.cached(Scope.provide(makeProcesses(options?.processes), scope))
    }
    const fallback = options?.prefer ?? "threads"
    const workers = yield* Options.resolveJobs(
      "workers",
      (fallback === "threads" ? options?.threads : options?.processes)?.workers ?? -1
    )
    const select = (prefer: Prefer) => pools[prefer]
    return {
      name: "auto",
      workers,
      select,
      prepare: (work, items, options) =>
        Effect.flatMap(select(fallback), (backend) => backend.prepare(work, items, options))
    } satisfies Backend
  }))

/**
 * Renamed {@link layerSequential}, as Effect names its Layer constructors.
 *
 * @category layers
 * @since 0.1.0
 * @deprecated since 0.5.0; use {@link layerSequential}.
 */
export const sequential = layerSequential

/**
 * Renamed {@link layerThreads}.
 *
 * @category layers
 * @since 0.1.0
 * @deprecated since 0.5.0; use {@link layerThreads}.
 */
export const threads = layerThreads

/**
 * Renamed {@link layerProcesses}.
 *
 * @category layers
 * @since 0.2.0
 * @deprecated since 0.5.0; use {@link layerProcesses}.
 */
export const processes = layerProcesses

/**
 * Renamed {@link layerAuto}.
 *
 * @category layers
 * @since 0.2.0
 * @deprecated since 0.5.0; use {@link layerAuto}.
 */
export const auto = layerAuto
