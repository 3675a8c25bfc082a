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
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Options from "./internal/options.ts"
import { checkNotImportingTaskModule } from "./internal/parallel/guard.ts"
import { type LocalBatch, makeInProcess } from "./internal/parallel/local.ts"
import * as Pools from "./internal/parallel/pools.ts"
import type * as Engine from "./internal/parallel/runner.ts"
import type { InvalidOptions, ParallelError, TaskModuleError, TaskTimeout } from "./ParallelError.ts"

/**
 * The outcome of one batch and how long it took in milliseconds. When every
 * item succeeded it holds their `values`; otherwise an `Exit` per item that ran,
 * in batch order. In fail-fast mode a batch stops at its first failure, so
 * `exits` may be shorter than the batch. An item that overran the map's
 * `timeout` fails with `TaskTimeout`. When the map asked for `timings`, they
 * hold each finished item's start and end in epoch milliseconds, in pairs.
 *
 * **Example** (A custom backend's outcome of a batch that all succeeded)
 *
 * ```ts
 * import type { Backend } from "effect-joblib"
 *
 * const outcome: Backend.Outcome<number, never> = { _tag: "Values", values: [1, 2], duration: 0.5 }
 * ```
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
 * The backend service: a name and how many batches it runs at once. Its engine
 * side is internal and not part of this type: build one with a layer
 * constructor or {@link make}.
 *
 * **Example** (Reading which backend a map would use)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend } from "effect-joblib"
 *
 * const describe = Backend.Backend.useSync((backend) => `${backend.name} × ${backend.workers}`)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Backend {
  readonly name: string
  /** How many batches it runs at once. */
  readonly workers: number
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
  defaultValue: () => makeInProcess("sequential", 1)
})

/**
 * Which implementation a map would rather run on, for a hint-aware backend.
 *
 * **Example** (A map's hint)
 *
 * ```ts
 * import type { Backend } from "effect-joblib"
 *
 * const prefer: Backend.Prefer = "processes"
 * ```
 *
 * @category models
 * @since 0.2.0
 */
export type Prefer = "threads" | "processes"

/**
 * One batch, as a custom backend ({@link make}) sees it.
 *
 * @category models
 * @since 0.5.0
 */
export interface Batch extends LocalBatch {}

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
  Layer.effect(Backend)(
    Effect.map(Options.parse(MakeOptionsSchema, "Backend.make", options), (parsed) =>
      makeInProcess(parsed.name, parsed.workers, (batch, slot) =>
        Effect.flatMap(
          Effect.suspend(() =>
            parsed.runBatch(batch, slot)
          ),
          (outcome) => checkedOutcome(parsed.name, batch.items.length, outcome)
        )))
  )

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
      (parsed) => makeInProcess("sequential", parsed.concurrency ?? 1)
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
  /**
   * Arrays and buffers from this many bytes are shared instead of copied per task (joblib's `max_nbytes`): a
   * count, or a size as joblib writes it, `"1M"` (K, M and G are powers of 1024). `null` shares none, as
   * joblib's `max_nbytes=None`. Default `"1M"`.
   */
  readonly maxBytes?: number | `${number}${"K" | "M" | "G"}` | null | undefined
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
  /**
   * Start every worker when the Layer is built. Default false: a worker starts with the first batch sent to
   * it, so a pool costs nothing until a map needs it, and a small map starts only the workers it uses.
   */
  readonly warm?: boolean | undefined
  /**
   * Stop a worker once it has been idle this long; the next batch for it starts another. Default 5 minutes
   * (loky's); `Duration.infinity` keeps workers for the life of the Layer.
   */
  readonly idleTimeout?: Duration.Input | undefined
  /**
   * Allow more than 4 workers per CPU this process may use. Without it such a count is an `InvalidOptions`
   * naming the CPU count: thousands of threads on a small machine are a mistake more often than a plan.
   */
  readonly oversubscribe?: boolean | undefined
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

const makeThreads = (options: ThreadsOptions | undefined) =>
  Options.parse(Pools.ThreadsOptions, "Backend.layerThreads", options).pipe(
    Effect.flatMap((parsed) => Pools.makeThreads(parsed)),
    Effect.map((pool) => pool.backend)
  )

const makeProcesses = (options: ProcessesOptions | undefined) =>
  Options.parse(Pools.ProcessesOptions, "Backend.layerProcesses", options).pipe(
    Effect.flatMap((parsed) => Pools.makeProcesses(parsed)),
    Effect.map((pool) => pool.backend)
  )

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
    } satisfies Engine.Backend
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
