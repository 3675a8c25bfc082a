/**
 * The typed errors of `Parallel` and its backends. Each is a Schema-backed
 * tagged error, so it can cross a worker boundary and be matched with
 * `Effect.catchTag`.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * An option given to `Parallel.map`, `Parallel.stream` or a backend is out of range or unknown.
 *
 * **Example** (Matching a bad option)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Parallel } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2], (x) => x, { concurrency: 0 }).pipe(
 *   Effect.catchTag("InvalidOptions", (e) => Effect.succeed(e.option))
 * )
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  option: Schema.String,
  message: Schema.String
}) {}

/**
 * An inline function cannot be shipped to a worker by its source: it captures
 * variables from its surroundings, or it is a native or bound function.
 *
 * **Example** (A captured variable is reported before dispatch)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Backend, Parallel } from "effect-joblib"
 *
 * const factor = 3
 * const program = Parallel.map([1, 2], (x) => x * factor).pipe(
 *   Effect.provide(Backend.layerThreads({ workers: 2 })),
 *   Effect.catchTag("UnshippableFunction", (e) => Effect.succeed(e.identifiers)) // ["factor"]
 * )
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class UnshippableFunction extends Schema.TaggedError<UnshippableFunction>()("UnshippableFunction", {
  function: Schema.String,
  identifiers: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/**
 * A worker could not load a Task: its module failed to import, or the module
 * defines no Task of that name.
 *
 * **Example** (Matching a missing task)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { ParallelError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<unknown, ParallelError.TaskNotFound>
 * const recovered = program.pipe(Effect.catchTag("TaskNotFound", (e: ParallelError.TaskNotFound) => Effect.succeed(e.task)))
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class TaskNotFound extends Schema.TaggedError<TaskNotFound>()("TaskNotFound", {
  task: Schema.String,
  module: Schema.String,
  message: Schema.String
}) {}

/**
 * A Task's module cannot be imported by a worker. Workers find a Task by
 * importing the module that defined it, so that module must do nothing else
 * at its top level:
 *
 * - `"TopLevelProgram"`: importing the module started a program that builds a
 *   pool or runs a map. Guard the program with `if (import.meta.main)`, or
 *   move the Tasks into a module of their own. The worker fails fast with this
 *   error instead of starting workers of its own.
 * - `"TestFile"`: the Task is defined in a test file, which only the test
 *   runner can load. Define it in an ordinary module and import it from the
 *   test; the sequential backend runs it anywhere.
 *
 * **Example** (Matching an unusable task module)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { ParallelError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<unknown, ParallelError.TaskModuleError>
 * const recovered = program.pipe(Effect.catchTag("TaskModuleError", (e: ParallelError.TaskModuleError) => Effect.succeed(e.module)))
 * ```
 *
 * @category errors
 * @since 0.5.0
 */
export class TaskModuleError extends Schema.TaggedError<TaskModuleError>()("TaskModuleError", {
  module: Schema.String,
  reason: Schema.Literals(["TopLevelProgram", "TestFile"]),
  message: Schema.String
}) {}

/**
 * A worker died while it ran a batch, or could not be started. The batch's
 * items are lost; the worker is replaced for the next batch. `stderr` holds
 * the end of what the worker wrote there: an uncaught exception's stack, or
 * V8's out-of-memory report.
 *
 * **Example** (Matching a crashed worker)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { ParallelError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<number, ParallelError.WorkerCrashed>
 * const recovered = program.pipe(
 *   Effect.catchTag("WorkerCrashed", (e: ParallelError.WorkerCrashed) => Effect.succeed(e.exitCode))
 * )
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkerCrashed extends Schema.TaggedError<WorkerCrashed>()("WorkerCrashed", {
  worker: Schema.Number,
  exitCode: Schema.optional(Schema.Number),
  signal: Schema.optional(Schema.String),
  /** The end of what the worker wrote to stderr (its last 8 KB), where a crash report usually is. */
  stderr: Schema.optional(Schema.String),
  message: Schema.String,
  /** The error underneath, when there is one (why a worker could not start, a worker's own error event). */
  cause: Schema.optional(Schema.Unknown)
}) {}

/**
 * A task ran longer than the map's `timeout`, counted from the moment it
 * started in its worker. It was interrupted; a worker that would not yield
 * (a synchronous loop) was terminated and replaced.
 *
 * **Example** (Matching a timeout)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Parallel } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2], (x) => new Promise((resolve) => setTimeout(() => resolve(x), 5_000)), {
 *   timeout: "1 second"
 * }).pipe(Effect.catchTag("TaskTimeout", (e) => Effect.succeed(e.index)))
 * ```
 *
 * @category errors
 * @since 0.2.0
 */
export class TaskTimeout extends Schema.TaggedError<TaskTimeout>()("TaskTimeout", {
  /** Input index of the item. */
  index: Schema.Number,
  /** The limit, in milliseconds. */
  timeout: Schema.Number,
  /** How long the item had run when it was stopped, in milliseconds. */
  elapsed: Schema.Number,
  message: Schema.String
}) {}

/**
 * The remote backend could not do its part: Redis is unreachable or went
 * away, no worker is connected, a worker rejected a batch (an inline
 * function on a worker that does not allow them, a task whose source differs),
 * or the optional packages `bullmq` and `ioredis` are not installed.
 *
 * **Example** (Matching a missing worker)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { ParallelError } from "effect-joblib"
 *
 * declare const program: Effect.Effect<unknown, ParallelError.RemoteFailure>
 * const recovered = program.pipe(Effect.catchTag("RemoteFailure", (e: ParallelError.RemoteFailure) => Effect.succeed(e.reason)))
 * ```
 *
 * @category errors
 * @since 0.4.0
 */
export class RemoteFailure extends Schema.TaggedError<RemoteFailure>()("RemoteFailure", {
  reason: Schema.Literals(["Unreachable", "NoWorker", "Rejected", "MissingDependency"]),
  message: Schema.String,
  /** The error underneath, when there is one (the Redis client's, a module's import error). */
  cause: Schema.optional(Schema.Unknown)
}) {}

/**
 * Every error that `Parallel.map` adds to the task's own error type, as one Schema: its type, its guard and
 * the form it takes across a worker boundary all derive from it, so a new error is one more member here.
 *
 * **Example** (Decoding an error a worker sent)
 *
 * ```ts
 * import { Schema } from "effect"
 * import { ParallelError } from "effect-joblib"
 *
 * const error = Schema.decodeUnknownSync(ParallelError.ParallelError)({ _tag: "InvalidOptions", option: "x", message: "…" })
 * ```
 *
 * @category schemas
 * @since 0.6.0
 */
export const ParallelError = Schema.Union([
  InvalidOptions,
  UnshippableFunction,
  TaskNotFound,
  TaskModuleError,
  WorkerCrashed,
  TaskTimeout,
  RemoteFailure
])

/**
 * Every error that `Parallel.map` adds to the task's own error type.
 *
 * @category models
 * @since 0.1.0
 */
export type ParallelError = typeof ParallelError.Type

/**
 * Tells whether a value is one of the {@link ParallelError}s.
 *
 * **Example** (Guarding an unknown failure)
 *
 * ```ts
 * import { ParallelError } from "effect-joblib"
 *
 * ParallelError.isParallelError(new ParallelError.InvalidOptions({ option: "batchSize", message: "0" })) // true
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isParallelError: (u: unknown) => u is ParallelError = Schema.is(ParallelError)
