/** Batches run in this process: the sequential backend, and the base of a custom one (`Backend.make`). */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Semaphore from "effect/Semaphore"
import type { ParallelError, TaskTimeout } from "../../ParallelError.ts"
import { makeSettled, type Outcome, timedOut } from "./outcome.ts"
import { TaskReporter } from "./report.ts"
import type { Backend, Runner, RunOptions } from "./runner.ts"
import { inlineEffect, type Local, type Work } from "./work.ts"
import { isThenable } from "./workerRuntime.js"

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

/** Runs a batch's items one after another in the calling fiber. */
export const runLocal = <I, A, E>(
  local: Local<I, A, E>,
  label: string,
  items: ReadonlyArray<I>,
  start: number,
  options: RunOptions
): Effect.Effect<Outcome<A, E>, ParallelError> =>
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

/** One batch as a custom backend's `runBatch` sees it (public as `Backend.Batch`). */
export interface LocalBatch {
  readonly label: string
  readonly start: number
  readonly items: ReadonlyArray<unknown>
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
  const settled = makeSettled()
  const outstanding = Array.from({ length: workers }, () => 0)
  const locks = Array.from({ length: workers }, () => Semaphore.makeUnsafe(1))
  return {
    name,
    workers,
    prepare: <I, A, E>(work: Work<I, A, E>) =>
      Effect.map(work.local, (local): Runner<I, A, E> => ({
        slots: workers,
        outstanding: (slot) => outstanding[slot]!,
        settled: settled.wait,
        batchState: undefined,
        restarts: () => 0,
        run: (slot, items, start, options) =>
          Effect.suspend(() => {
            outstanding[slot]!++
            const here = runLocal(local, work.label, items, start, options)
            const run = runBatch === undefined
              ? here
              : runBatch({ label: work.label, start, items, runHere: here as never }, slot) as Effect.Effect<
                Outcome<A, E>,
                ParallelError
              >
            return run.pipe(
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
