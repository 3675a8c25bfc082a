/**
 * @since 0.1.0
 */

/**
 * Where `Parallel.map` runs its batches: sequential, worker threads.
 *
 * @since 0.1.0
 */
export * as Backend from "./Backend.ts"

/**
 * Batch-size policies as Schedules.
 *
 * @since 0.1.0
 */
export * as Batching from "./Batching.ts"

/**
 * Typed parallel maps over any backend.
 *
 * @since 0.1.0
 */
export * as Parallel from "./Parallel.ts"

/**
 * The typed errors of Parallel and its backends.
 *
 * @since 0.1.0
 */
export * as ParallelError from "./ParallelError.ts"

/**
 * Named, Schema-described units of work.
 *
 * @since 0.1.0
 */
export * as Task from "./Task.ts"
