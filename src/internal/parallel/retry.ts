/**
 * Retries as a Schedule: the whole batch again while its worker crashes, then each item that failed with a
 * typed error (or a timeout) on its own, as the policy allows.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Schedule from "effect/Schedule"
import type { ParallelError, TaskTimeout } from "../../ParallelError.ts"
import type { Outcome } from "./outcome.ts"
import type { Runner, RunOptions } from "./runner.ts"

/** Re-runs failed tasks: a whole batch whose worker crashed, or single items that failed with a typed error. */
export interface RetryPolicy {
  readonly schedule: Schedule.Schedule<unknown, unknown>
  readonly while: (error: unknown) => boolean
}

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
export const retryBatch = <I, A, E>(
  runner: Runner<I, A, E>,
  slot: number,
  items: ReadonlyArray<I>,
  start: number,
  runOptions: RunOptions,
  policy: RetryPolicy,
  /** Told of each re-run: the batch's, after its worker crashed, or an item's, after it failed. */
  retried?: ((start: number, size: number, reason: "crashed" | "failed") => void) | undefined
): Effect.Effect<Outcome<A, E>, ParallelError> => {
  let runs = 0
  const runWhole = Effect.suspend(() => {
    if (runs++ > 0) retried?.(start, items.length, "crashed")
    return runner.run(slot, items, start, runOptions)
  })
  return runWhole.pipe(
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
        const rerun = Effect.suspend(() => {
          retried?.(start + i, 1, "failed")
          return runner.run(slot, [items[i]!], start + i, runOptions)
        }).pipe(
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
}
