/** Turning what a worker sent back (encoded values and statuses) into a batch's typed Outcome. */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { TaskTimeout } from "../../ParallelError.ts"
import type { Encoded, SerializedCause, SerializedDefect } from "./protocol.ts"
import { identity, type Work } from "./work.ts"
import { Status } from "./workerRuntime.js"

/** The outcome of one batch: defined, with its docs, where it is public (`Backend.Outcome`). */
export type { Outcome } from "../../Backend.ts"
import type { Outcome } from "../../Backend.ts"

export const timedOut = (index: number, timeout: number, elapsed: number) =>
  new TaskTimeout({
    index,
    timeout,
    elapsed,
    message: `item ${index} ran for ${Math.round(elapsed)} ms, over its ${timeout} ms timeout`
  })

const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  Error,
  EvalError,
  RangeError,
  ReferenceError,
  SyntaxError,
  TypeError,
  URIError
}

const reviveCause = (cause: SerializedCause, worker: string): unknown =>
  "error" in cause ? reviveDefect(cause.error, worker) : cause.value

/**
 * Rebuilds a defect a worker sent: one of JavaScript's own error classes as that class, with its cause and
 * (AggregateError) errors; any other class as an Error with its name. The stack is the worker's.
 */
export const reviveDefect = (defect: SerializedDefect, worker: string): Error => {
  const builtin = defect.builtin
  const options = defect.cause === undefined ? undefined : { cause: reviveCause(defect.cause, worker) }
  const error = builtin === "AggregateError"
    ? new AggregateError((defect.errors ?? []).map((error) => reviveCause(error, worker)), defect.message, options)
    : builtin !== undefined && Object.hasOwn(BUILTIN_ERRORS, builtin)
    ? new BUILTIN_ERRORS[builtin]!(defect.message, options)
    : new Error(defect.message, options)
  if (error.name !== defect.name) error.name = defect.name
  error.stack = `${defect.stack ?? `${defect.name}: ${defect.message}`}\n    at <${worker}>`
  return error
}

/**
 * Decodes a batch of `size` items that started at input index `start`. Items a self-interrupting task did not
 * reach are reported as interrupted, never dropped.
 */
export const decode = <A, E>(
  work: Pick<Work<unknown, A, E>, "decodeSuccess" | "decodeFailure">,
  raw: Encoded,
  start: number,
  size: number,
  timeout: number | undefined,
  /** Where the batch ran, for a defect's stack; or how to take a defect that was never serialized. */
  worker: string | ((defect: unknown) => unknown)
): Outcome<A, E> => {
  if (raw.status === undefined && !raw.interrupted) {
    const values = work.decodeSuccess === identity ? raw.values as ReadonlyArray<A> : raw.values.map(work.decodeSuccess)
    return { _tag: "Values", values, duration: raw.duration, timings: raw.timings }
  }
  const exits: Array<Exit.Exit<A, E | TaskTimeout>> = []
  for (let i = 0; i < raw.values.length; i++) {
    const status = raw.status === undefined ? Status.Success : raw.status[i]
    const value = raw.values[i]
    exits.push(
      status === Status.Success
        ? Exit.succeed(work.decodeSuccess(value))
        : status === Status.Failure
        ? Exit.fail(work.decodeFailure(value))
        : status === Status.Timeout
        ? Exit.fail(timedOut(start + i, timeout ?? 0, value as number))
        : Exit.die(typeof worker === "string" ? reviveDefect(value as SerializedDefect, worker) : worker(value))
    )
  }
  if (raw.interrupted) {
    for (let i = exits.length; i < size; i++) exits.push(Exit.failCause(Cause.interrupt()))
  }
  return { _tag: "Exits", exits, duration: raw.duration, timings: raw.timings }
}

/** Every item of a batch as an Exit. */
export const exitsOf = <A, E>(outcome: Outcome<A, E>): ReadonlyArray<Exit.Exit<A, E | TaskTimeout>> =>
  outcome._tag === "Exits" ? outcome.exits : outcome.values.map((value) => Exit.succeed(value))

/** A signal that fires whenever a batch settles, for dispatchers waiting for a free slot. */
export const makeSettled = () => {
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

/**
 * A runner's count of batches in flight per slot, for the dispatcher's `outstanding` and `settled`, kept by
 * running each batch through `counted`.
 */
export const makeSlotCounts = (slots: number) => {
  const counts = Array.from({ length: slots }, () => 0)
  const settled = makeSettled()
  return {
    outstanding: (slot: number) => counts[slot]!,
    settled: settled.wait,
    counted: <A, E>(slot: number, batch: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.suspend(() => {
        counts[slot]!++
        return Effect.ensuring(
          batch,
          Effect.sync(() => {
            counts[slot]!--
            settled.notify()
          })
        )
      })
  }
}

/** How many items a batch's outcome holds. */
export const sizeOf = <A, E>(outcome: Outcome<A, E>): number =>
  outcome._tag === "Values" ? outcome.values.length : outcome.exits.length
