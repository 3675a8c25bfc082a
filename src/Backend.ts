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
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import { Worker } from "node:worker_threads"
import { isThenable } from "./internal/buffers.js"
import * as Options from "./internal/options.ts"
import { type RawOutcome, Slot, type Spawn } from "./internal/pool.ts"
import { type SerializedDefect, Status } from "./internal/protocol.ts"
import { countBuffers, Sharer } from "./internal/share.ts"
import { identity, type Local, type Work } from "./internal/work.ts"
import type { InvalidOptions, ParallelError } from "./ParallelError.ts"

/**
 * The outcome of one batch and how long it took in milliseconds. When every
 * item succeeded it holds their `values`; otherwise an `Exit` per item that ran,
 * in batch order. In fail-fast mode a batch stops at its first failure, so
 * `exits` may be shorter than the batch.
 *
 * @category models
 * @since 0.1.0
 */
export type Outcome<A, E> =
  | { readonly _tag: "Values"; readonly values: ReadonlyArray<A>; readonly duration: number }
  | { readonly _tag: "Exits"; readonly exits: ReadonlyArray<Exit.Exit<A, E>>; readonly duration: number }

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
  readonly run: (
    slot: number,
    items: ReadonlyArray<I>,
    /** Input index of the first item. */
    start: number,
    failFast: boolean
  ) => Effect.Effect<Outcome<A, E>, ParallelError>
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
  /** Checks that the work can run here (for example that a function can be shipped) before any dispatch. */
  readonly prepare: <I, A, E>(
    work: Work<I, A, E>,
    /** The whole input, when it is an array: lets a backend plan how to move big buffers. */
    items?: ReadonlyArray<I> | undefined
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
 * const inProduction = program.pipe(Effect.provide(Backend.threads({ workers: -1 })))
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export const Backend: Context.Reference<Backend> = Context.Reference<Backend>("effect-joblib/Backend", {
  defaultValue: () => makeSequential(1)
})

const runLocal = <I, A, E>(local: Local<I, A, E>, items: ReadonlyArray<I>, start: number, failFast: boolean) =>
  Effect.gen(function*() {
    const started = performance.now()
    const values: Array<A> = []
    let exits: Array<Exit.Exit<A, E>> | undefined
    for (let i = 0; i < items.length; i++) {
      let exit: Exit.Exit<A, E>
      let out: A | PromiseLike<A> | Effect.Effect<A, E, any>
      try {
        out = local.run(items[i]!, start + i)
      } catch (defect) {
        out = Effect.die(defect)
      }
      if (Effect.isEffect(out)) exit = yield* Effect.exit(local.provide(out))
      else if (isThenable(out)) exit = yield* Effect.exit(Effect.promise(() => out as PromiseLike<A>))
      else exit = Exit.succeed(out)
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
      ? { _tag: "Values" as const, values, duration }
      : { _tag: "Exits" as const, exits, duration }
  })

/** A signal that fires whenever a batch settles, for dispatchers waiting for a free slot. */
const makeSettled = () => {
  let next = Deferred.makeUnsafe<void>()
  return {
    wait: Effect.suspend(() => Deferred.await(next)),
    notify: () => {
      const current = next
      next = Deferred.makeUnsafe<void>()
      Deferred.doneUnsafe(current, Effect.void)
    }
  }
}

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
        run: (slot, items, start, failFast) =>
          Effect.suspend(() => {
            outstanding[slot]!++
            return runLocal(local, items, start, failFast).pipe(
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
 *   Effect.provide(Backend.sequential({ concurrency: 4 }))
 * )
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const sequential = (
  options?: { readonly concurrency?: number | undefined }
): Layer.Layer<never, InvalidOptions> =>
  Layer.effect(Backend)(
    Effect.map(
      Options.parse(SequentialOptions, "Backend.sequential", options),
      (parsed) => makeSequential(parsed.concurrency ?? 1)
    )
  )

/**
 * Options of {@link threads}.
 *
 * @category models
 * @since 0.1.0
 */
export interface ThreadsOptions {
  /** Worker count with joblib's n_jobs rules: -1 is every CPU (cgroup quotas respected), -2 all but one. */
  readonly workers?: number | undefined
  /** Arrays and buffers from this many bytes are shared instead of copied per task (joblib's `max_nbytes`). Default 1 MB. */
  readonly maxBytes?: number | undefined
  /** How long a cancelled batch may take to stop before its worker is terminated. Default 500 millis. */
  readonly interruptGrace?: Duration.Input | undefined
  /** `resourceLimits` of each worker thread. */
  readonly resourceLimits?: {
    readonly maxOldGenerationSizeMb?: number | undefined
    readonly maxYoungGenerationSizeMb?: number | undefined
    readonly stackSizeMb?: number | undefined
  } | undefined
  readonly execArgv?: ReadonlyArray<string> | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
}

const ThreadsOptionsSchema = Schema.Struct({
  workers: Schema.optional(Options.Jobs),
  maxBytes: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  interruptGrace: Schema.optional(Schema.Any),
  resourceLimits: Schema.optional(Schema.Struct({
    maxOldGenerationSizeMb: Schema.optional(Schema.Number.check(Schema.isGreaterThan(0))),
    maxYoungGenerationSizeMb: Schema.optional(Schema.Number.check(Schema.isGreaterThan(0))),
    stackSizeMb: Schema.optional(Schema.Number.check(Schema.isGreaterThan(0)))
  })),
  execArgv: Schema.optional(Schema.Array(Schema.String)),
  env: Schema.optional(Schema.Record(Schema.String, Schema.String))
})

/** Shares the big buffers of a batch; returns the batch itself when it holds none. */
const shareAll = (sharer: Sharer, items: ReadonlyArray<unknown>): ReadonlyArray<unknown> => {
  let out: Array<unknown> | undefined
  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    if (item === null || typeof item !== "object") continue
    const shared = sharer.share(item)
    if (shared !== item) (out ??= items.slice())[i] = shared
  }
  return out ?? items
}

const threadEntry = new URL("./internal/threadWorker.js", import.meta.url)

const reviveDefect = (defect: SerializedDefect, worker: string): Error => {
  const error = new Error(defect.message)
  error.name = defect.name
  error.stack = `${defect.stack ?? `${defect.name}: ${defect.message}`}\n    at <${worker}>`
  return error
}

/** Builds a pool backend on top of a spawn function. */
const makePool = Effect.fnUntraced(function*(options: {
  readonly name: string
  readonly workers: number
  readonly maxBytes: number
  readonly grace: number
  readonly spawn: Spawn
}) {
  const settled = makeSettled()
  const batchStates = new Map<number, WeakMap<object, unknown>>()
  const slots = Array.from(
    { length: options.workers },
    (_, i) => new Slot(i, options.spawn, options.grace, settled.notify)
  )
  yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all(slots.map((slot) => slot.close()))))
  yield* Effect.promise(() => Promise.all(slots.map((slot) => slot.warm())))
  const backend: Backend = {
    name: options.name,
    workers: options.workers,
    prepare: <I, A, E>(work: Work<I, A, E>, items?: ReadonlyArray<I>) =>
      Effect.map(work.ship, ({ key, spec }): Runner<I, A, E> => {
        const counts = work.mayShare && items !== undefined ? countBuffers(items, options.maxBytes) : undefined
        const sharer = new Sharer(options.maxBytes, counts)
        const decode = (raw: RawOutcome, slot: Slot, count: number): Outcome<A, E> => {
          if (raw.status === undefined && !raw.interrupted) {
            const values = work.decodeSuccess === identity
              ? raw.values as ReadonlyArray<A>
              : raw.values.map(work.decodeSuccess)
            return { _tag: "Values", values, duration: raw.duration }
          }
          const exits: Array<Exit.Exit<A, E>> = []
          for (let i = 0; i < raw.values.length; i++) {
            const status = raw.status === undefined ? Status.Success : raw.status[i]
            const value = raw.values[i]
            exits.push(
              status === Status.Success
                ? Exit.succeed(work.decodeSuccess(value))
                : status === Status.Failure
                ? Exit.fail(work.decodeFailure(value))
                : Exit.die(reviveDefect(value as SerializedDefect, `${options.name} worker ${slot.workerId}`))
            )
          }
          // A task that interrupted itself stopped its batch: that item and the rest are interrupted, never dropped.
          if (raw.interrupted) {
            for (let i = exits.length; i < count; i++) exits.push(Exit.failCause(Cause.interrupt()))
          }
          return { _tag: "Exits", exits, duration: raw.duration }
        }
        return {
          slots: slots.length,
          outstanding: (slot) => slots[slot]!.outstanding,
          settled: settled.wait,
          batchState: batchStates.get(key) ?? batchStates.set(key, new WeakMap()).get(key),
          run: (index, items, start, failFast) => {
            const slot = slots[index]!
            return Effect.suspend(() => {
              let encoded: ReadonlyArray<unknown> = items
              if (work.encodeItem !== identity) {
                // Pushed, not preallocated: structured clone copies packed arrays much faster than holey ones.
                const out: Array<unknown> = []
                for (let i = 0; i < items.length; i++) out.push(work.encodeItem(items[i]!))
                encoded = out
              }
              if (work.mayShare) encoded = shareAll(sharer, encoded)
              const transfer = sharer.takeTransfer()
              return Effect.map(
                slot.run(key, spec, encoded, start, failFast, transfer),
                (raw) => decode(raw, slot, items.length)
              )
            })
          }
        }
      })
  }
  return backend
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
 * }).pipe(Effect.provide(Backend.threads({ workers: -1 })))
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const threads = (options?: ThreadsOptions): Layer.Layer<never, InvalidOptions> =>
  Layer.effect(Backend)(Effect.gen(function*() {
    const parsed = yield* Options.parse(ThreadsOptionsSchema, "Backend.threads", options)
    const workers = yield* Options.resolveJobs("workers", parsed.workers ?? -1)
    const maxBytes = parsed.maxBytes ?? 1024 * 1024
    const grace = Duration.toMillis(Duration.fromInputUnsafe(parsed.interruptGrace ?? 500))
    let count = 0
    return yield* makePool({
      name: "threads",
      workers,
      maxBytes,
      grace,
      spawn: (control, handlers) => {
        const worker = new Worker(
          threadEntry,
          {
            workerData: { control, threshold: maxBytes },
            resourceLimits: parsed.resourceLimits,
            execArgv: parsed.execArgv ? [...parsed.execArgv] : undefined,
            env: parsed.env ? { ...process.env, ...parsed.env } : undefined,
            name: `effect-joblib-${++count}`
          } as ConstructorParameters<typeof Worker>[1]
        )
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
  }))
