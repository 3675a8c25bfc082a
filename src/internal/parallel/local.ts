/** Batches run in this process: the sequential backend, and the base of a custom one (`Backend.make`). */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Semaphore from "effect/Semaphore"
import type { ParallelError } from "../../ParallelError.ts"
import { decode, makeSlotCounts, type Outcome } from "./outcome.ts"
import { TaskReporter } from "./report.ts"
import type { Backend, Runner, RunOptions } from "./runner.ts"
import { classify } from "./taskLoader.ts"
import { identity, inlineEffect, type Local, type Work } from "./work.ts"
import { runBatchItems, Status } from "./workerRuntime.js"

/** Values run here are not encoded: they come back as they are, defects included. */
const asTheyAre = { decodeSuccess: identity as (u: unknown) => never, decodeFailure: identity as (u: unknown) => never }

/** How often a batch of synchronous items lets other fibers (and an interruption) in, in milliseconds. */
const YIELD_MILLIS = 20

/**
 * Runs a batch in the calling process with the item loop that workers run (`runBatchItems`): a Task's
 * Effects run on fibers with the caller's services and the task's layer, and time comes from the Clock.
 */
export const runLocal = <I, A, E>(
  local: Local<I, A, E>,
  label: string,
  items: ReadonlyArray<I>,
  start: number,
  options: RunOptions
): Effect.Effect<Outcome<A, E>, ParallelError> =>
  Effect.flatMap(Effect.context<never>(), (context) => {
    const runFork = Effect.runForkWith(context)
    const clock = Context.get(context, Clock.Clock)
    const onProgress = options.onProgress
    const parent = options.parent
    let cancelled = false
    let running: Fiber.Fiber<unknown, unknown> | undefined
    const effects = local.inline ? undefined : {
      isEffect: Effect.isEffect,
      fork: (effect: unknown, report: (data: unknown) => void) => {
        let provided = local.provide(effect as Effect.Effect<A, E, any>)
        if (parent !== undefined) provided = Effect.annotateLogs(provided, { ...parent })
        if (onProgress !== undefined) provided = Effect.provideService(provided, TaskReporter, report)
        return runFork(provided) as Fiber.Fiber<unknown, unknown>
      },
      classify
    }
    const work = {
      run: local.run as (item: unknown, index: number) => unknown,
      encodeSuccess: identity,
      encodeError: identity,
      effects
    }
    const started = performance.now()
    return Effect.callback<Outcome<A, E>, ParallelError>((resume) => {
      runBatchItems(work, items, start, options.failFast, {
        cancelled: () => cancelled,
        setFiber: (fiber) => (running = fiber),
        timeout: options.timeout,
        tick: () => {},
        report: (index, data) => onProgress?.(start + index, data),
        yieldMillis: YIELD_MILLIS,
        timings: options.timings === true,
        parent,
        timer: (_index, ms, fire) => {
          const timer = runFork(Effect.andThen(Effect.sleep(ms), Effect.sync(fire)))
          return () => void timer.interruptUnsafe()
        },
        now: () => clock.currentTimeMillisUnsafe(),
        defect: identity
      }).then((out) => {
        if (out.status?.includes(Status.InlineEffect)) return resume(Effect.fail(inlineEffect(label)))
        const raw = { ...out, duration: performance.now() - started }
        resume(Effect.succeed(decode<A, E>(asTheyAre, raw, start, items.length, options.timeout, identity)))
      }, (defect) => resume(Effect.die(defect)))
      // Interrupted: the loop stops before its next item, and an Effect running now is interrupted (its
      // finalizers run before the batch's interruption completes).
      return Effect.suspend(() => {
        cancelled = true
        return running === undefined ? Effect.void : Fiber.interrupt(running)
      })
    })
  })

/** One batch as a custom backend's `runBatch` sees it (public as `Backend.Batch`). */
export interface LocalBatch {
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
 * A backend of `workers` slots in this process, each running one batch at a time as a worker would; `runBatch`
 * (a custom backend's) decides how a batch runs, by default right here.
 */
export const makeInProcess = (
  name: string,
  workers: number,
  runBatch?: (batch: LocalBatch, slot: number) => Effect.Effect<Outcome<unknown, unknown>, ParallelError>
): Backend => {
  const { counted, outstanding, settled } = makeSlotCounts(workers)
  const locks = Array.from({ length: workers }, () => Semaphore.makeUnsafe(1))
  return {
    name,
    workers,
    prepare: <I, A, E>(work: Work<I, A, E>) =>
      Effect.map(work.local, (local): Runner<I, A, E> => ({
        slots: workers,
        outstanding,
        settled,
        batchState: undefined,
        restarts: () => 0,
        run: (slot, items, start, options) =>
          Effect.suspend(() => {
            const here = runLocal(local, work.label, items, start, options)
            const run = runBatch === undefined
              ? here
              : runBatch({ label: work.label, start, items, runHere: here as never }, slot) as Effect.Effect<
                Outcome<A, E>,
                ParallelError
              >
            return counted(slot, locks[slot]!.withPermits(1)(run))
          })
      }))
  }
}
