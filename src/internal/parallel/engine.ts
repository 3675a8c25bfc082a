/**
 * The dispatch loop behind `Parallel.map` and `Parallel.stream`: pulls input
 * lazily, cuts it into batches sized by a Schedule up to `preDispatch` batches
 * ahead, hands each to the first worker that frees up, and emits results in
 * input order or as they complete.
 */
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Pull from "effect/Pull"
import * as Queue from "effect/Queue"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type { Observation } from "../../Batching.ts"
import type { ParallelError } from "../../ParallelError.ts"
import type { Outcome } from "./outcome.ts"
import { makeReorder } from "./reorder.ts"
import { retryBatch, type RetryPolicy } from "./retry.ts"
import type { Runner, RunOptions, WorkerRef } from "./runner.ts"
import { makeSizing } from "./sizing.ts"
import { makeSlotPicker } from "./slots.ts"
import { type Input, makeSource } from "./source.ts"
import { makeTracing } from "./spans.ts"

export type { RetryPolicy } from "./retry.ts"
export { MAX_BATCH_BYTES, MAX_BATCH_ITEMS } from "./sizing.ts"
export type { Input } from "./source.ts"

/** Hooks into the dispatch loop, for progress reporting and tests. */
export interface Observer {
  readonly dispatched: (start: number, size: number, slot: number) => void
  /** `failed` items of the batch failed (after any retries); `worker` ran it (its slot, when no one said). */
  readonly completed: (start: number, size: number, duration: number, failed: number, worker: string) => void
  /** The input holds `total` items: known up front for an array, when the input ends otherwise. */
  readonly total?: ((total: number) => void) | undefined
  /** The dispatcher asked for more items and found none (joblib's iterator becoming None). */
  readonly exhausted?: (() => void) | undefined
  /** A running task reported `data` with `Progress.report`. */
  readonly progress?: ((index: number, data: unknown) => void) | undefined
  /**
   * A batch (or one item of it) runs again: its worker died and a Remote queue moved it to another
   * (`"stalled"`), its worker crashed and `retry` runs it on a replacement (`"crashed"`), or `retry` runs a
   * failed item again (`"failed"`).
   */
  readonly retried?: ((start: number, size: number, reason: "stalled" | "crashed" | "failed") => void) | undefined
}

export const CurrentObserver = Context.Reference<Observer | undefined>("effect-joblib/internal/Observer", {
  defaultValue: () => undefined
})

export interface EngineOptions {
  /** Slots (workers) this map may use. */
  readonly concurrency: number
  /** Batches in flight at most. */
  readonly preDispatch: number
  /**
   * What the user asked for, if anything. On a backend whose capacity changes during a map, the map follows it:
   * concurrency up to the capacity connected (within the concurrency asked for), and `preDispatch` twice that
   * (unless asked for).
   */
  readonly given?: { readonly concurrency: number | undefined } | undefined
  /** When set, `preDispatch` is this many batches per slot the map uses, following its concurrency as it changes. */
  readonly preDispatchPerWorker?: number | undefined
  readonly batchSize: Schedule.Schedule<number, Observation>
  /** Apply joblib's rule of splitting the tail of the input finely, for auto batching. */
  readonly splitTail: boolean
  readonly failFast: boolean
  readonly ordered: boolean
  /** Per-item limit in milliseconds, from the moment the item starts in its worker. */
  readonly timeout: number | undefined
  readonly retry: RetryPolicy | undefined
  readonly observer: Observer | undefined
}

/** Results of one batch, the first of which belongs to input index `start`. */
export interface Emitted<A, E> {
  readonly start: number
  readonly outcome: Outcome<A, E>
}

/** Where a run's results go: `emit` may suspend to apply backpressure; `fail` ends the run. */
interface Sink<A, E, Err> {
  readonly emit: (start: number, outcome: Outcome<A, E>) => Effect.Effect<void>
  readonly fail: (cause: Cause.Cause<Err>) => Effect.Effect<void>
}

/** The observers of a map: the context's (Progress reporters, tests) and the map's own. */
const makeNotifier = Effect.gen(function*() {
  const observers: Array<Observer> = []
  const fromContext = yield* CurrentObserver
  if (fromContext !== undefined) observers.push(fromContext)
  let totalKnown = false
  const notify = (f: (observer: Observer) => void) => {
    for (const observer of observers) f(observer)
  }
  return {
    add: (observer: Observer | undefined) => void (observer !== undefined && observers.push(observer)),
    notify,
    /** Tells the input's length once: up front for an array, when the input ends otherwise. */
    total: (total: number) => {
      if (totalKnown) return
      totalKnown = true
      notify((o) => o.total?.(total))
    },
    onProgress: () =>
      observers.some((o) => o.progress !== undefined)
        ? (index: number, data: unknown) => notify((o) => o.progress?.(index, data))
        : undefined,
    retried: () =>
      observers.some((o) => o.retried !== undefined)
        ? (start: number, size: number, reason: "stalled" | "crashed" | "failed") =>
          notify((o) => o.retried?.(start, size, reason))
        : undefined
  }
})

/**
 * The map's concurrency and pre-dispatch, now: fixed by the map's options, or (on a backend whose capacity
 * changes) following the capacity connected, within what was asked for.
 */
const makeLimits = <I, A, E>(runner: Runner<I, A, E>, options: EngineOptions) => {
  const capacity = runner.capacity
  const concurrency = capacity === undefined
    ? () => options.concurrency
    : () => Math.max(1, Math.min(options.given?.concurrency ?? runner.slots, runner.slots, capacity()))
  const followsCapacity = capacity !== undefined
  const perWorker = options.preDispatchPerWorker
  const given = perWorker === undefined
    ? () => options.preDispatch
    : () => Math.max(1, Math.ceil(perWorker * concurrency()))
  // One worker runs the items as they come, as joblib's n_jobs=1: nothing is pulled ahead of the running one.
  const preDispatch = () => (concurrency() === 1 ? 1 : given())
  return { concurrency, followsCapacity, preDispatch }
}

/** The dispatch loop. Returns when every batch has been emitted, or at the first failure. */
const drive = <I, A, E, EI, RI>(
  input: Input<I, EI, RI>,
  runner: Runner<I, A, E>,
  options: EngineOptions,
  sink: Sink<A, E, E | EI | ParallelError>
): Effect.Effect<void, never, RI | Scope.Scope> =>
  Effect.gen(function*() {
    const source = yield* makeSource(input)
    const observers = yield* makeNotifier
    observers.add(options.observer)
    if (source.length !== undefined) observers.total(source.length)
    const tracing = yield* makeTracing
    const runOptions: RunOptions = {
      // With retries every item runs, so that a failed one can be retried without losing the rest.
      failFast: options.failFast && options.retry === undefined,
      timeout: options.timeout,
      onProgress: observers.onProgress(),
      timings: tracing.traced
    }
    const sizing = yield* makeSizing(runner, options)
    const limits = makeLimits(runner, options)
    let preDispatch = limits.preDispatch()
    const permits = yield* Semaphore.make(preDispatch)
    const fibers = yield* FiberSet.make<void, never>()
    const slots = makeSlotPicker(runner, {
      concurrency: options.concurrency,
      followsCapacity: limits.followsCapacity,
      usable: limits.concurrency
    })
    // Set on the first failure; the dispatcher checks it, since a synchronous backend may not yield to let it be interrupted.
    let stopped = false
    // Completed when the run is over: every batch emitted, or a failure.
    const finished = Deferred.makeUnsafe<void>()
    const fail = (cause: Cause.Cause<E | EI | ParallelError>) =>
      Effect.suspend(() => {
        if (stopped) return Effect.void
        stopped = true
        // The sink records the failure before the driver is released to return.
        return Effect.andThen(sink.fail(cause), Effect.sync(() => Deferred.doneUnsafe(finished, Effect.void)))
      })
    const deliver = makeReorder(sink.emit, permits, options.ordered)
    const finish = (start: number, size: number, outcome: Outcome<A, E>, worker: WorkerRef) =>
      Effect.suspend(() => {
        const failed = outcome._tag === "Exits" ? outcome.exits.filter(Exit.isFailure).length : 0
        // Reported before a failure stops the map: a report shows the batch that failed.
        observers.notify((o) => o.completed(start, size, outcome.duration, failed, worker.name))
        if (options.failFast && failed > 0) {
          return fail((outcome as Extract<Outcome<A, E>, { _tag: "Exits" }>).exits.find(Exit.isFailure)!.cause)
        }
        return Effect.andThen(sizing.observe(size, outcome), deliver(start, outcome))
      })
    const retried = observers.retried()
    const runBatch = (start: number, items: Array<I>, slot: number) => {
      let worker: WorkerRef = { name: `slot ${slot + 1}` }
      const onRanBy = (ref: WorkerRef) => void (worker = ref)
      return tracing.withinBatchSpan(runOptions, start, () => worker, (spanned) => {
        slots.unreserve(slot)
        const batchOptions = retried === undefined
          ? { ...spanned, onRanBy }
          : { ...spanned, onRanBy, onMoved: () => retried(start, items.length, "stalled") }
        return options.retry === undefined
          ? runner.run(slot, items, start, batchOptions)
          : retryBatch(runner, slot, items, start, batchOptions, options.retry, retried)
      }).pipe(
        // A child of the map's span: a trace shows map → batch → task, with where each batch ran.
        Effect.withSpan(
          "Parallel.batch",
          { attributes: { "batch.start": start, "batch.size": items.length, "batch.slot": slot } },
          // Every batch passes here: a stack trace would say nothing the map's span does not, at a cost per batch.
          { captureStackTrace: false }
        ),
        Effect.matchCauseEffect({
          onFailure: fail,
          onSuccess: (outcome) => finish(start, items.length, outcome, worker)
        })
      )
    }

    // Pre-dispatch as joblib queues it: batches are formed up to `preDispatch` ahead and wait here, in input
    // order, assigned to no worker; each goes to the first worker that frees up, so that none waits behind a
    // running batch while another worker idles.
    const formed = yield* Queue.make<{ readonly start: number; readonly items: Array<I> }, Cause.Done>()
    let next = 0
    const produce = Effect.gen(function*() {
      while (!stopped) {
        if (preDispatch !== limits.preDispatch()) {
          preDispatch = limits.preDispatch()
          yield* permits.resize(preDispatch)
        }
        yield* permits.take(1)
        if (stopped) return
        const count = yield* sizing.nextBatch(source, next, preDispatch, limits.concurrency())
        if (source.done()) observers.total(next + source.buffered())
        const items = source.take(count)
        if (items.length === 0) {
          observers.notify((o) => o.exhausted?.())
          yield* permits.release(1)
          return
        }
        const start = next
        next += items.length
        yield* Queue.offer(formed, { start, items })
      }
    }).pipe(Effect.ensuring(Queue.end(formed)))
    const dispatch = Effect.gen(function*() {
      while (!stopped) {
        const batch = yield* Queue.take(formed).pipe(Pull.catchDone(() => Effect.succeed(undefined)))
        if (batch === undefined || stopped) return
        const slot = yield* slots.acquire
        if (stopped) return
        observers.notify((o) => o.dispatched(batch.start, batch.items.length, slot))
        yield* FiberSet.run(fibers, runBatch(batch.start, batch.items, slot))
      }
    })
    // In-flight batches left at a failure are interrupted when the caller's scope closes.
    yield* Effect.forkScoped(Effect.catchCause(produce, fail))
    yield* Effect.forkScoped(
      dispatch.pipe(
        Effect.catchCause(fail),
        Effect.andThen(FiberSet.awaitEmpty(fibers)),
        Effect.andThen(Effect.sync(() => Deferred.doneUnsafe(finished, Effect.void)))
      )
    )
    yield* Deferred.await(finished)
  })

/** Runs the map and emits each batch's results as a Stream element, with backpressure. */
export const run = <I, A, E, EI, RI>(
  input: Input<I, EI, RI>,
  runner: Runner<I, A, E>,
  options: EngineOptions
): Stream.Stream<Emitted<A, E>, E | EI | ParallelError, RI> =>
  Stream.callback<Emitted<A, E>, E | EI | ParallelError, RI>((queue) =>
    drive(input, runner, options, {
      emit: (start, outcome) => Effect.asVoid(Queue.offer(queue, { start, outcome })),
      fail: (cause) => Effect.asVoid(Queue.failCause(queue, cause))
    }).pipe(Effect.andThen(Queue.end(queue))), { bufferSize: 1 })

/**
 * Runs the map to the end, handing each batch to `onBatch` as it completes, without a queue between the
 * batches and the caller.
 */
export const forEachBatch = <I, A, E, EI, RI>(
  input: Input<I, EI, RI>,
  runner: Runner<I, A, E>,
  options: EngineOptions,
  onBatch: (start: number, outcome: Outcome<A, E>) => Effect.Effect<void>
): Effect.Effect<void, E | EI | ParallelError, RI | Scope.Scope> =>
  Effect.suspend(() => {
    let failure: Cause.Cause<E | EI | ParallelError> | undefined
    return drive(input, runner, options, {
      emit: onBatch,
      fail: (cause) => Effect.sync(() => void (failure = cause))
    }).pipe(
      Effect.andThen(Effect.suspend(() => (failure === undefined ? Effect.void : Effect.failCause(failure))))
    )
  })
