/**
 * Batch-size policies as Schedules. A map feeds its policy one
 * {@link Observation} per finished batch and reads the next batch size from
 * the schedule's output. The first step gets `{ size: 0, duration: 0 }` and
 * gives the first batch size. A schedule that ends keeps its last size; its
 * delays are ignored.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { autoStep } from "./internal/parallel/sizing.ts"

/**
 * A finished batch: how many items it held and how long it ran, in milliseconds.
 *
 * @category models
 * @since 0.1.0
 */
export interface Observation {
  readonly size: number
  readonly duration: number
}

/**
 * A batch-size policy.
 *
 * @category models
 * @since 0.1.0
 */
export type BatchSize = Schedule.Schedule<number, Observation>

/**
 * joblib's `batch_size="auto"`: starts at 1, grows (at most doubling) while
 * batches finish in under about 0.2 s, and shrinks when they take over 2 s.
 * Durations are smoothed, and only batches of the current size count.
 *
 * **Example** (Auto batching, the default)
 *
 * ```ts
 * import { Batching, Parallel } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2, 3], (x) => x + 1, { batchSize: Batching.auto })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const auto: BatchSize = Schedule.fromStep(Effect.sync(autoStep))

/**
 * Always the same batch size.
 *
 * **Example** (Batches of 64 items)
 *
 * ```ts
 * import { Parallel } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2, 3], (x) => x + 1, { batchSize: 64 }) // same as Batching.fixed(64)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const fixed = (size: number): BatchSize =>
  Schedule.fromStep(
    Effect.succeed((_now: number, _input: Observation) =>
      Effect.succeed([size, Duration.zero] as [number, Duration.Duration])
    )
  )
