/**
 * The dispatch loop behind `Parallel.map` and `Parallel.stream`: pulls input
 * lazily, cuts it into batches sized by a Schedule, keeps at most `preDispatch`
 * batches in flight, and emits results in input order or as they complete.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Pull from "effect/Pull"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import type { Observation } from "../../Batching.ts"
import type { ParallelError, TaskTimeout } from "../../ParallelError.ts"
import type { Outcome } from "./outcome.ts"
import type { Runner, RunOptions } from "./runner.ts"
import { estimateBytes } from "./sizeEstimate.ts"
import { leastBusy } from "./slots.ts"

/** A lazy, buffered puller over any input. */
export interface Source<I, E> {
  /** The input's length, when known up front. */
  readonly length?: number | undefined
  /** Pulls until `n` items are buffered or the input ends. */
  readonly fill: (n: number) => Effect.Effect<void, E>
  readonly buffered: () => number
  readonly done: () => boolean
  readonly take: (n: number) => Array<I>
  /** The next buffered item, if any. */
  readonly peek: () => I | undefined
}

/** `pull(n)` returns some items (at most `n` where it can tell), or undefined at the end. */
const bufferedSource = <I, E>(pull: (n: number) => Effect.Effect<ReadonlyArray<I> | undefined, E>): Source<I, E> => {
  // Pulled chunks are kept as they come and copied once, into the batch that takes them.
  const chunks: Array<ReadonlyArray<I>> = []
  let head = 0
  let offset = 0
  let count = 0
  let ended = false
  const fill = (n: number): Effect.Effect<void, E> =>
    Effect.whileLoop({
      while: () => !ended && count < n,
      body: () => pull(n - count),
      step: (chunk) => {
        if (chunk === undefined) ended = true
        else if (chunk.length > 0) {
          chunks.push(chunk)
          count += chunk.length
        }
      }
    })
  return {
    fill,
    buffered: () => count,
    done: () => ended,
    peek: () => (head < chunks.length ? chunks[head]![offset] : undefined),
    take: (n) => {
      const out: Array<I> = []
      while (out.length < n && head < chunks.length) {
        const chunk = chunks[head]!
        const end = Math.min(chunk.length, offset + n - out.length)
        for (let i = offset; i < end; i++) out.push(chunk[i]!)
        offset = end
        if (offset === chunk.length) {
          chunks[head++] = undefined!
          offset = 0
        }
      }
      if (head === chunks.length || head >= 1024) {
        chunks.splice(0, head)
        head = 0
      }
      count -= out.length
      return out
    }
  }
}

const arraySource = <I>(array: ReadonlyArray<I>): Source<I, never> => {
  let offset = 0
  return {
    length: array.length,
    fill: () => Effect.void,
    buffered: () => array.length - offset,
    done: () => true,
    peek: () => array[offset],
    take: (n) => {
      const out = array.slice(offset, offset + n)
      offset += out.length
      return out
    }
  }
}

export type Input<I, E, R> = Iterable<I> | AsyncIterable<I> | Stream.Stream<I, E, R>

export const makeSource = <I, E, R>(input: Input<I, E, R>): Effect.Effect<Source<I, E>, never, R | Scope.Scope> => {
  if (Array.isArray(input)) return Effect.succeed(arraySource(input as ReadonlyArray<I>))
  if (Stream.isStream(input)) {
    return Effect.map(
      Stream.toPull(input as Stream.Stream<I, E, R>),
      (pull) =>
        bufferedSource<I, E>(() =>
          pull.pipe(Pull.catchDone(() => Effect.succeed(undefined))) as Effect.Effect<ReadonlyArray<I> | undefined, E>
        )
    )
  }
  if (Symbol.asyncIterator in (input as object)) {
    return Effect.acquireRelease(
      Effect.sync(() => (input as AsyncIterable<I>)[Symbol.asyncIterator]()),
      (iterator) => Effect.promise(async () => void (await iterator.return?.())).pipe(Effect.ignore)
    ).pipe(
      Effect.map((iterator) =>
        bufferedSource<I, E>(() =>
          Effect.map(Effect.promise(() => iterator.next()), (next) => (next.done ? undefined : [next.value]))
        )
      )
    )
  }
  return Effect.acquireRelease(
    Effect.sync(() => (input as Iterable<I>)[Symbol.iterator]()),
    (iterator) => Effect.sync(() => iterator.return?.())
  ).pipe(Effect.map((iterator) =>
    bufferedSource<I, E>((n) =>
      Effect.sync(() => {
        // Exactly as many as asked for: a generator is never run ahead of dispatch.
        const chunk: Array<I> = []
        for (let i = 0; i < n; i++) {
          const next = iterator.next()
          if (next.done) return chunk.length > 0 ? chunk : undefined
          chunk.push(next.value)
        }
        return chunk
      })
    )
  ))
}

/** Hooks into the dispatch loop, for progress reporting and tests. */
export interface Observer {
  readonly dispatched: (start: number, size: number, slot: number) => void
  /** `failed` items of the batch failed (after any retries). */
  readonly completed: (start: number, size: number, duration: number, failed: number) => void
  /** The input holds `total` items: known up front for an array, when the input ends otherwise. */
  readonly total?: ((total: number) => void) | undefined
  /** The dispatcher asked for more items and found none (joblib's iterator becoming None). */
  readonly exhausted?: (() => void) | undefined
  /** A running task reported `data` with `Progress.report`. */
  readonly progress?: ((index: number, data: unknown) => void) | undefined
}

/** Re-runs failed tasks: a whole batch whose worker crashed, or single items that failed with a typed error. */
export interface RetryPolicy {
  readonly schedule: Schedule.Schedule<unknown, unknown>
  readonly while: (error: unknown) => boolean
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
  readonly given?: { readonly concurrency: number | undefined; readonly preDispatch: boolean } | undefined
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

/** A tail batch should run at least this long, or its round trip costs more than the balance it buys. */
const MIN_TAIL_MILLIS = 10

/** Tasks below `minBatchMillis / RAMP_ITEMS` jump to the backend's least batch instead of ramping. */
const RAMP_ITEMS = 100

/** Batches longer than this are not pipelined behind one another on a worker. */
const PIPELINE_MAX_MILLIS = 5

/**
 * The most items one batch holds, whatever the batching policy asks: tiny tasks would otherwise grow
 * batches to millions of items, and a stream's memory with them. At this size a batch of the tiniest task
 * (about 20 ns) still runs for over a millisecond, long enough that its round trip stays a small part.
 */
export const MAX_BATCH_ITEMS = 65_536

/**
 * The most bytes one batch carries, input or output, by {@link estimateBytes}: a batch is copied whole to
 * its worker and back, and a stream holds a few batches at a time, so this bounds its memory whatever
 * the items weigh.
 */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024

/** Results of one batch, the first of which belongs to input index `start`. */
export interface Emitted<A, E> {
  readonly start: number
  readonly outcome: Outcome<A, E>
}

export const sizeOf = <A, E>(outcome: Outcome<A, E>): number =>
  outcome._tag === "Values" ? outcome.values.length : outcome.exits.length

/** Where a run's results go: `emit` may suspend to apply backpressure; `fail` ends the run. */
interface Sink<A, E, Err> {
  readonly emit: (start: number, outcome: Outcome<A, E>) => Effect.Effect<void>
  readonly fail: (cause: Cause.Cause<Err>) => Effect.Effect<void>
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
    const observers = [yield* CurrentObserver, options.observer].filter((o): o is Observer => o !== undefined)
    const notify = (f: (observer: Observer) => void) => {
      for (const observer of observers) f(observer)
    }
    let totalKnown = false
    const noteTotal = (total: number) => {
      if (totalKnown) return
      totalKnown = true
      notify((o) => o.total?.(total))
    }
    if (source.length !== undefined) noteTotal(source.length)
    const onProgress = observers.some((o) => o.progress !== undefined)
      ? (index: number, data: unknown) => notify((o) => o.progress?.(index, data))
      : undefined
    // Task spans cost two clock reads an item: taken only when a tracer other than Effect's default listens.
    const tracer = yield* Tracer.Tracer
    const traced = tracer !== Tracer.nativeTracer
    const runOptions: RunOptions = {
      // With retries every item runs, so that a failed one can be retried without losing the rest.
      failFast: options.failFast && options.retry === undefined,
      timeout: options.timeout,
      onProgress,
      timings: traced
    }
    /** One span per task, a child of its batch's, placed where the worker says the task ran. */
    const taskSpans = (batch: Tracer.Span, start: number, outcome: Outcome<A, E>) => {
      const timings = outcome.timings
      if (timings === undefined) return
      const parent = Option.some(batch)
      const exits = outcome._tag === "Exits" ? outcome.exits : undefined
      for (let i = 0; 2 * i + 1 < timings.length; i++) {
        const span = tracer.span({
          name: "Parallel.task",
          parent,
          annotations: Context.empty(),
          links: [],
          startTime: BigInt(Math.round(timings[2 * i]! * 1e6)),
          kind: "internal",
          root: false,
          sampled: batch.sampled
        })
        span.attribute("task.index", start + i)
        span.end(BigInt(Math.round(timings[2 * i + 1]! * 1e6)), exits?.[i] ?? Exit.void)
      }
    }
    /**
     * Runs a batch under its span, read once: its tasks' own spans and logs join the trace wherever they
     * run, and its tasks' spans are placed below it afterwards.
     */
    const runBatchOnce = (slot: number, items: Array<I>, start: number) =>
      Effect.flatMap(Effect.option(Effect.currentSpan), (span) => {
        const batchOptions: RunOptions = span._tag === "None"
          ? runOptions
          : { ...runOptions, parent: { traceId: span.value.traceId, spanId: span.value.spanId } }
        // The runner counts the batch from here on.
        reserved[slot]!--
        const ran = options.retry === undefined
          ? runner.run(slot, items, start, batchOptions)
          : retryBatch(runner, slot, items, start, batchOptions, options.retry)
        return traced && span._tag === "Some"
          ? Effect.tap(ran, (outcome) => Effect.sync(() => taskSpans(span.value, start, outcome)))
          : ran
      })
    type Step = Effect.Success<ReturnType<typeof Schedule.toStep<number, Observation, never, never>>>
    // What a warm backend remembers of the last map of the same work: the policy's state, the run time per
    // item and per batch.
    let warm = runner.batchState?.get(options.batchSize) as
      | { step: Step; perItemMillis: number; batchMillis: number }
      | undefined
    if (warm === undefined) {
      warm = { step: yield* Schedule.toStep(options.batchSize), perItemMillis: 0, batchMillis: 0 }
      runner.batchState?.set(options.batchSize, warm)
    }
    const { step } = warm
    const nextSize = (observation: Observation, current: number) =>
      step(0, observation).pipe(
        Effect.map(([size]) => Math.max(1, Math.min(MAX_BATCH_ITEMS, Math.floor(size)))),
        Pull.catchDone(() => Effect.succeed(current)),
        Effect.orDie
      )
    let size = yield* nextSize({ size: 0, duration: 0 }, 1)
    let tailSize: number | undefined
    // Smoothed run time per item, from finished batches.
    let perItemMillis = warm.perItemMillis
    const startedWarm = perItemMillis > 0
    // Slots this map may use now: a backend's changing capacity, or the map's concurrency.
    const capacity = runner.capacity
    const concurrency = capacity === undefined
      ? () => options.concurrency
      : () => Math.max(1, Math.min(options.given?.concurrency ?? runner.slots, runner.slots, capacity()))
    let preDispatch = capacity === undefined || options.given?.preDispatch ? options.preDispatch : 2 * concurrency()
    const permits = yield* Semaphore.make(preDispatch)
    const fibers = yield* FiberSet.make<void, never>()
    // Slots this map uses: the least busy ones when it starts (all of them when capacity decides how many).
    const slots = Array.from({ length: runner.slots }, (_, i) => i)
      .sort((a, b) => runner.outstanding(a) - runner.outstanding(b))
      .slice(0, capacity === undefined ? Math.min(options.concurrency, runner.slots) : runner.slots)
    // Smoothed batch duration. Short batches are pipelined (two per worker) to hide the round trip;
    // long ones go one per worker, so that no batch waits behind another while a worker idles.
    let batchMillis = warm.batchMillis
    let anyFinished = false
    // Estimated bytes per item: of the next input, and of the last batch's first result.
    let inputBytes = 8
    let outputBytes = 8
    // Batches given a slot whose fiber has not started yet: until it starts, the runner does not count them.
    const reserved = Array.from({ length: runner.slots }, () => 0)
    const busy = (slot: number) => runner.outstanding(slot) + reserved[slot]!
    const acquireSlot: Effect.Effect<number> = Effect.suspend(() => {
      const best = slots[leastBusy(Math.min(slots.length, concurrency()), (i) => busy(slots[i]!))]!
      // Until a batch has finished, how long one takes is unknown: one per worker, so that nothing queues
      // behind a batch that turns out long while another worker idles.
      const capacity = batchMillis === 0 || batchMillis > PIPELINE_MAX_MILLIS ? 1 : 2
      if (busy(best) >= capacity) return Effect.andThen(runner.settled, acquireSlot)
      reserved[best]!++
      return Effect.succeed(best)
    })

    const pending = new Map<number, Outcome<A, E>>()
    let expected = 0
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
    const deliver = (start: number, outcome: Outcome<A, E>) =>
      Effect.gen(function*() {
        if (!options.ordered) {
          yield* sink.emit(start, outcome)
          yield* permits.release(1)
          return
        }
        pending.set(start, outcome)
        // Permits come back only as results leave in order, so buffered results stay bounded too.
        while (pending.has(expected)) {
          const ready = pending.get(expected)!
          pending.delete(expected)
          yield* sink.emit(expected, ready)
          expected += sizeOf(ready)
          yield* permits.release(1)
        }
      })

    const runBatch = (start: number, items: Array<I>, slot: number) =>
      runBatchOnce(slot, items, start).pipe(
        // A child of the map's span: a trace shows map → batch → task, with where each batch ran.
        Effect.withSpan(
          "Parallel.batch",
          { attributes: { "batch.start": start, "batch.size": items.length, "batch.slot": slot } },
          // Every batch passes here: a stack trace would say nothing the map's span does not, at a cost per batch.
          { captureStackTrace: false }
        ),
        Effect.matchCauseEffect({
          onFailure: fail,
          onSuccess: (outcome) =>
            Effect.gen(function*() {
              if (options.failFast && outcome._tag === "Exits") {
                const failed = outcome.exits.find(Exit.isFailure)
                if (failed !== undefined) return yield* fail(failed.cause)
              }
              const sized = yield* nextSize({ size: items.length, duration: outcome.duration }, size)
              const failed = outcome._tag === "Exits" ? outcome.exits.filter(Exit.isFailure).length : 0
              notify((o) => o.completed(start, items.length, outcome.duration, failed))
              const perItem = outcome.duration / items.length
              perItemMillis = perItemMillis === 0 ? perItem : 0.8 * perItemMillis + 0.2 * perItem
              warm.perItemMillis = perItemMillis
              batchMillis = batchMillis === 0 ? outcome.duration : 0.8 * batchMillis + 0.2 * outcome.duration
              warm.batchMillis = batchMillis
              // A backend whose round trip is costly (a queue on a server) names the least work worth a batch.
              // For tasks so small that a hundred of them would not fill it, automatic batching grows straight
              // to it rather than doubling from one item; longer tasks ramp as joblib's, so that a long one
              // does not hold many short ones in its batch.
              const floor = options.splitTail ? runner.minBatchMillis : undefined
              size = floor === undefined || perItemMillis <= 0 || perItemMillis * RAMP_ITEMS >= floor
                ? sized
                : Math.max(sized, Math.min(MAX_BATCH_ITEMS, Math.ceil(floor / perItemMillis)))
              const target = options.splitTail ? runner.targetBatchMillis : undefined
              if (target !== undefined && perItemMillis > 0) {
                size = Math.max(size, Math.min(MAX_BATCH_ITEMS, Math.floor(target / perItemMillis)))
              }
              anyFinished = true
              if (outcome._tag === "Values" && outcome.values.length > 0) {
                outputBytes = Math.max(1, estimateBytes(outcome.values[0]))
              }
              yield* deliver(start, outcome)
            })
        })
      )

    let next = 0
    const dispatch = Effect.gen(function*() {
      while (!stopped) {
        if (capacity !== undefined && !options.given?.preDispatch && preDispatch !== 2 * concurrency()) {
          preDispatch = 2 * concurrency()
          yield* permits.resize(preDispatch)
        }
        yield* permits.take(1)
        if (stopped) return
        // Pull scheduling: a batch is formed only once a worker can start it, so it takes the batch size
        // that the batches finished meanwhile taught, and waits nowhere but here.
        const slot = yield* acquireSlot
        if (stopped) return
        // joblib's pre_dispatch with automatic batching: until a batch has finished, at most preDispatch items
        // are pulled in all (its batches start at one item, so its count of batches and of items agree).
        // A warm backend already knows its batch size: its first batches are not cut.
        const pullCap = anyFinished || !options.splitTail || startedWarm ? Infinity : preDispatch - next
        const fill = (n: number) => source.fill(Math.max(1, Math.min(n, pullCap)))
        yield* fill(1)
        const first = source.peek()
        if (first !== undefined) inputBytes = Math.max(1, estimateBytes(first))
        const byteCap = Math.max(1, Math.floor(MAX_BATCH_BYTES / Math.max(inputBytes, outputBytes)))
        let batch = Math.min(tailSize ?? size, byteCap)
        if (options.splitTail && tailSize === undefined) {
          const lookahead = Math.min(size, byteCap) * concurrency()
          yield* fill(lookahead)
          if (source.done() && source.buffered() < lookahead) {
            // joblib: near the end, split what is left finely so that every worker stays busy.
            // Unlike joblib, never below what keeps a batch worth its round trip (the runner's
            // minBatchMillis), nor above an even share per worker.
            const left = source.buffered()
            const evenShare = Math.ceil(left / concurrency())
            if (perItemMillis === 0) {
              // No batch has finished yet, so what a batch is worth is unknown: an even share for now.
              batch = Math.min(batch, evenShare)
            } else {
              const minMillis = runner.minBatchMillis ?? MIN_TAIL_MILLIS
              const worthwhile = Math.ceil(minMillis / perItemMillis)
              tailSize = Math.max(
                1,
                Math.min(evenShare, byteCap, Math.max(Math.floor(left / (10 * concurrency())), worthwhile))
              )
              batch = Math.min(batch, tailSize)
            }
          }
        } else {
          yield* fill(batch)
        }
        if (source.done()) noteTotal(next + source.buffered())
        const items = source.take(Math.min(batch, Math.max(1, pullCap)))
        if (items.length === 0) {
          reserved[slot]!--
          notify((o) => o.exhausted?.())
          yield* permits.release(1)
          return
        }
        const start = next
        next += items.length
        notify((o) => o.dispatched(start, items.length, slot))
        yield* FiberSet.run(fibers, runBatch(start, items, slot))
      }
    })
    // In-flight batches left at a failure are interrupted when the caller's scope closes.
    yield* Effect.forkScoped(
      dispatch.pipe(
        Effect.catchCause(fail),
        Effect.andThen(FiberSet.awaitEmpty(fibers)),
        Effect.andThen(Effect.sync(() => Deferred.doneUnsafe(finished, Effect.void)))
      )
    )
    yield* Deferred.await(finished)
  })

/** The typed error of a failed exit, if it failed with one. */
const typedError = (exit: Exit.Exit<unknown, unknown>) => {
  if (Exit.isSuccess(exit)) return undefined
  const reason = exit.cause.reasons.find(Cause.isFailReason)
  return reason === undefined ? undefined : { error: reason.error }
}

/**
 * Runs a batch with retries: the whole batch again while its worker crashes, then each item that failed
 * with a typed error (or a timeout) on its own, as the policy allows. Items still failing keep their last exit.
 */
const retryBatch = <I, A, E>(
  runner: Runner<I, A, E>,
  slot: number,
  items: ReadonlyArray<I>,
  start: number,
  runOptions: RunOptions,
  policy: RetryPolicy
): Effect.Effect<Outcome<A, E>, ParallelError> =>
  runner.run(slot, items, start, runOptions).pipe(
    Effect.retry({
      schedule: policy.schedule,
      while: (error: ParallelError) => error._tag === "WorkerCrashed" && policy.while(error)
    }),
    Effect.flatMap((outcome): Effect.Effect<Outcome<A, E>, ParallelError> => {
      if (outcome._tag === "Values") return Effect.succeed(outcome)
      type Attempt = Exit.Exit<A, E | TaskTimeout>
      const retryItem = (i: number, exit: Attempt): Effect.Effect<Attempt, ParallelError> => {
        // The batch's own run was the first attempt: the schedule sees that failure before any re-run.
        let first = true
        const rerun = runner.run(slot, [items[i]!], start + i, runOptions).pipe(
          Effect.map((single): Attempt =>
            single._tag === "Values" ? Exit.succeed(single.values[0]!) : single.exits[0] ?? exit
          )
        )
        return Effect.suspend(() => {
          if (!first) return rerun
          first = false
          return Effect.succeed(exit)
        }).pipe(
          // A typed failure fails this attempt, so that the schedule decides whether to try again.
          Effect.flatMap((next) =>
            typedError(next) === undefined
              ? Effect.succeed(next)
              : Effect.fail<{ failure: Attempt } | ParallelError>({ failure: next })
          ),
          Effect.retry({
            schedule: policy.schedule,
            while: (failed: { failure: Attempt } | ParallelError) =>
              "failure" in failed
                ? policy.while(typedError(failed.failure)!.error)
                : failed._tag === "WorkerCrashed" && policy.while(failed)
          }),
          Effect.catch((failed) => ("failure" in failed ? Effect.succeed(failed.failure) : Effect.fail(failed)))
        )
      }
      return Effect.forEach(outcome.exits, (exit, i) => {
        const failure = typedError(exit)
        return failure !== undefined && policy.while(failure.error) ? retryItem(i, exit) : Effect.succeed(exit)
      }).pipe(Effect.map((exits) => ({ _tag: "Exits" as const, exits, duration: outcome.duration })))
    })
  )

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
