/**
 * The same `Parallel.map` across machines: a `Backend` whose batches go
 * through a BullMQ queue on a Redis server, and workers that pull them and
 * run them on a thread pool of their own.
 *
 * Batches travel as `node:v8` serialized bytes in Redis keys (typed arrays
 * as raw bytes, never base64 JSON); the queue's jobs only name them. Workers
 * pull, so a slow worker takes less work. A worker runs the Tasks of the
 * modules it was given, found by name, and rejects a batch whose task source
 * differs from its own. Inline functions run only on workers that allow them.
 *
 * @stability unstable
 * @since 0.4.0
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Backend from "./Backend.ts"
import * as OptionParsing from "./internal/options.ts"
import { makeDriver } from "./internal/remote/driver.ts"
import { makeMonitor } from "./internal/remote/monitor.ts"
import type * as RemoteTypes from "./internal/remote/types.ts"
import { runWorker } from "./internal/remote/worker.ts"
import type { InvalidOptions, RemoteFailure, TaskModuleError } from "./ParallelError.ts"

/** Batches in flight at most when `slots` is not given: in practice, the capacity connected. */
const MAX_SLOTS = 1024

/**
 * A connected worker, as it registers itself in Redis: the set `<prefix>workers` names the workers, and each
 * one's entry `<prefix>worker:<id>` expires unless it is renewed, so a worker that dies drops out on its own.
 *
 * **Example** (The hosts serving a queue)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Remote } from "effect-joblib"
 *
 * const hosts = Effect.map(
 *   Remote.status({ redis: "redis://127.0.0.1:6379/0" }),
 *   (status) => status.workers.map((worker: Remote.WorkerInfo) => `${worker.host} (${worker.threads} threads)`)
 * )
 * ```
 *
 * @category models
 * @since 0.5.0
 */
export interface WorkerInfo extends RemoteTypes.WorkerInfo {}

/**
 * Options of {@link layer}.
 *
 * @category models
 * @since 0.4.0
 */
export interface Options {
  /** The server, `redis://[user:password@]host:port/db`; a `Redacted` keeps the password out of logs. */
  readonly redis: string | Redacted.Redacted<string>
  /** The queue's name, shared with the workers. Default `"effect-joblib"`. */
  readonly queue?: string | undefined
  /**
   * An explicit cap on the batches in flight. Default: the threads of the workers connected to the queue,
   * discovered from their registry and followed as workers join and leave.
   */
  readonly slots?: number | undefined
  /** How long a map waits for a worker to be connected before failing. Default 10 seconds. */
  readonly noWorkerTimeout?: Duration.Input | undefined
  /** How long to wait for Redis to answer a connection (a number is millis). Default 5 seconds. */
  readonly timeout?: Duration.Input | undefined
}

const RedisUrl = Schema.Union([
  Schema.NonEmptyString,
  Schema.declare(
    (u): u is Redacted.Redacted<string> => {
      if (!Redacted.isRedacted(u)) return false
      const url = Redacted.value(u)
      return typeof url === "string" && url.length > 0
    },
    { expected: "a non-empty URL, or a Redacted one" }
  )
])
const PositiveInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const QueueName = Schema.NonEmptyString.check(
  Schema.makeFilter((name: string) => !name.includes(":") || "a queue name cannot contain \":\"")
)

const OptionsSchema = Schema.Struct({
  redis: RedisUrl,
  queue: Schema.optional(QueueName),
  slots: Schema.optional(PositiveInt),
  noWorkerTimeout: Schema.optional(OptionParsing.DurationInput),
  timeout: Schema.optional(OptionParsing.TimerDuration)
})

const WorkerOptionsSchema = Schema.Struct({
  redis: RedisUrl,
  queue: Schema.optional(QueueName),
  modules: Schema.Array(Schema.NonEmptyString),
  concurrency: Schema.optional(OptionParsing.Jobs),
  allowInline: Schema.optional(Schema.Boolean),
  timeout: Schema.optional(OptionParsing.TimerDuration),
  lockDuration: Schema.optional(OptionParsing.TimerDuration),
  stalledInterval: Schema.optional(OptionParsing.TimerDuration),
  maxStalledCount: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)))
})

/**
 * A backend that sends batches to remote workers through a BullMQ queue on
 * Redis. `Parallel.map` code does not change; only the provided Layer does.
 * Workers run the Tasks of the modules they were given; an inline function
 * runs only on a worker started with `allowInline`.
 *
 * **Example** (Spreading a map over machines)
 *
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { Parallel, Remote } from "effect-joblib"
 * import { Square } from "./tasks.ts"
 *
 * const program = Parallel.map([1, 2, 3], Square).pipe(
 *   Effect.provide(Remote.layer({ redis: Redacted.make("redis://127.0.0.1:6379/0") }))
 * )
 * ```
 *
 * @category layers
 * @since 0.4.0
 */
export const layer = (rawOptions: Options): Layer.Layer<never, RemoteFailure | InvalidOptions> =>
  Layer.effect(Backend.Backend)(Effect.gen(function*() {
    const options = yield* OptionParsing.parse(OptionsSchema, "Remote.layer", rawOptions)
    return yield* makeDriver({
      redis: options.redis,
      name: options.queue ?? "effect-joblib",
      timeout: options.timeout ?? 5000,
      cap: options.slots ?? MAX_SLOTS,
      waitForWorker: Duration.toMillis(Duration.fromInputUnsafe(options.noWorkerTimeout ?? "10 seconds"))
    })
  }))

/**
 * Options of {@link status} and {@link monitor}.
 *
 * **Example** (A queue other than the default)
 *
 * ```ts
 * import { Redacted } from "effect"
 * import type { Remote } from "effect-joblib"
 *
 * const options: Remote.StatusOptions = { redis: Redacted.make("redis://127.0.0.1:6379/0"), queue: "pipeline" }
 * ```
 *
 * @category models
 * @since 0.5.0
 */
export interface StatusOptions {
  readonly redis: string | Redacted.Redacted<string>
  /** The queue's name. Default `"effect-joblib"`. */
  readonly queue?: string | undefined
  /** How long to wait for Redis to answer (a number is millis). Default 5 seconds. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A queue seen from Redis: its workers, its batches and its throughput.
 *
 * **Example** (Whether a queue keeps up)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Remote } from "effect-joblib"
 *
 * const backlog = Effect.map(
 *   Remote.status({ redis: "redis://127.0.0.1:6379/0" }),
 *   (status: Remote.Status) => status.waiting > status.capacity
 * )
 * ```
 *
 * @category models
 * @since 0.5.0
 */
export interface Status extends RemoteTypes.Status {}

const StatusOptionsSchema = Schema.Struct({
  redis: RedisUrl,
  queue: Schema.optional(QueueName),
  timeout: Schema.optional(OptionParsing.TimerDuration)
})

/**
 * Connects to a queue for the life of the scope and returns a way to read its {@link Status}, as
 * `effect-joblib status` does once a second on a terminal.
 *
 * **Example** (Logging a queue's throughput every ten seconds)
 *
 * ```ts
 * import { Effect, Schedule } from "effect"
 * import { Remote } from "effect-joblib"
 *
 * const program = Effect.gen(function*() {
 *   const read = yield* Remote.monitor({ redis: "redis://127.0.0.1:6379/0" })
 *   yield* read.pipe(
 *     Effect.tap((status) => Effect.log(`${status.throughput.items} items/s on ${status.capacity} threads`)),
 *     Effect.repeat(Schedule.spaced("10 seconds"))
 *   )
 * }).pipe(Effect.scoped)
 * ```
 *
 * @category constructors
 * @since 0.5.0
 */
export const monitor = (
  rawOptions: StatusOptions
): Effect.Effect<Effect.Effect<Status, RemoteFailure>, RemoteFailure | InvalidOptions, Scope.Scope> =>
  Effect.flatMap(
    OptionParsing.parse(StatusOptionsSchema, "Remote.status", rawOptions),
    (options) =>
      makeMonitor({
        redis: options.redis,
        name: options.queue ?? "effect-joblib",
        timeout: options.timeout ?? 5000
      })
  )

/**
 * A queue's {@link Status} once: what `effect-joblib status --json` prints.
 *
 * **Example** (How many threads are connected)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Remote } from "effect-joblib"
 *
 * const threads = Effect.map(Remote.status({ redis: "redis://127.0.0.1:6379/0" }), (status) => status.capacity)
 * ```
 *
 * @category constructors
 * @since 0.5.0
 */
export const status = (options: StatusOptions): Effect.Effect<Status, RemoteFailure | InvalidOptions> =>
  Effect.scoped(Effect.flatten(monitor(options)))

/**
 * Options of {@link worker}.
 *
 * @category models
 * @since 0.4.0
 */
export interface WorkerOptions {
  readonly redis: string | Redacted.Redacted<string>
  /** The queue's name. Default `"effect-joblib"`. */
  readonly queue?: string | undefined
  /** Modules whose Tasks this worker runs: paths (relative to the working directory) or `file:` URLs. */
  readonly modules: ReadonlyArray<string>
  /** Threads running batches at once. Default: every CPU. */
  readonly concurrency?: number | undefined
  /** Run inline functions sent by source. Default false: a worker runs only the Tasks it was given. */
  readonly allowInline?: boolean | undefined
  /** How long to wait for Redis to answer a connection (a number is millis). Default 5 seconds. */
  readonly timeout?: Duration.Input | undefined
  /**
   * How long a batch's lock lasts without renewal (a number is millis). A worker that dies stops renewing it;
   * once it expires and the next stall check runs, the batch goes back to the queue for another worker.
   * Default 3 seconds.
   */
  readonly lockDuration?: Duration.Input | undefined
  /** How often stalled batches are looked for (a number is millis). Default 1.5 seconds. */
  readonly stalledInterval?: Duration.Input | undefined
  /** How many times one batch may stall (its worker dying) before it fails. Default 2. */
  readonly maxStalledCount?: number | undefined
}

/**
 * A worker: pulls batches from the queue and runs them on a pool of threads,
 * so that long tasks never block the connection that keeps their jobs alive.
 * Embed it in a service of your own, or run it from the command line.
 *
 * **Example** (A worker process)
 *
 * ```ts
 * import { Layer } from "effect"
 * import { NodeRuntime } from "@effect/platform-node"
 * import { Remote } from "effect-joblib"
 *
 * const worker = Remote.layerWorker({ redis: "redis://127.0.0.1:6379/0", modules: ["./tasks.ts"], concurrency: 4 })
 * NodeRuntime.runMain(Layer.launch(worker))
 * ```
 *
 * @category layers
 * @since 0.4.0
 */
export const layerWorker = (
  rawOptions: WorkerOptions
): Layer.Layer<never, RemoteFailure | InvalidOptions | TaskModuleError> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const options = yield* OptionParsing.parse(WorkerOptionsSchema, "Remote.layerWorker", rawOptions)
    yield* runWorker({
      redis: options.redis,
      name: options.queue ?? "effect-joblib",
      modules: options.modules,
      concurrency: options.concurrency,
      allowInline: options.allowInline === true,
      timeout: options.timeout ?? 5000,
      // BullMQ runs timers of these lengths.
      lockDuration: options.lockDuration ?? 3000,
      stalledInterval: options.stalledInterval ?? 1500,
      maxStalledCount: options.maxStalledCount ?? 2
    })
  }))

/**
 * {@link layer} with its options read from `Config`: the server's URL from
 * the environment (`Config.Redacted("REDIS_URL")`), say, as Effect's own
 * layers take their secrets. Any option may be a `Config`, or the whole
 * record one.
 *
 * **Example** (The server from `REDIS_URL`)
 *
 * ```ts
 * import { Config, Effect } from "effect"
 * import { Parallel, Remote } from "effect-joblib"
 * import { Square } from "./tasks.ts"
 *
 * const program = Parallel.map([1, 2, 3], Square).pipe(
 *   Effect.provide(Remote.layerConfig({ redis: Config.Redacted("REDIS_URL"), queue: Config.String("QUEUE") }))
 * )
 * ```
 *
 * @category layers
 * @since 0.6.0
 */
export const layerConfig = (
  config: Config.Wrap<Options>
): Layer.Layer<never, RemoteFailure | InvalidOptions | Config.ConfigError> =>
  Layer.unwrap(Effect.map(Config.unwrap(config), layer))

/**
 * {@link layerWorker} with its options read from `Config`, as {@link layerConfig}.
 *
 * **Example** (A worker configured by its environment)
 *
 * ```ts
 * import { NodeRuntime } from "@effect/platform-node"
 * import { Config, Layer } from "effect"
 * import { Remote } from "effect-joblib"
 *
 * const worker = Remote.layerWorkerConfig({
 *   redis: Config.Redacted("REDIS_URL"),
 *   modules: Config.succeed(["./tasks.ts"]),
 *   concurrency: Config.Int("THREADS")
 * })
 * NodeRuntime.runMain(Layer.launch(worker))
 * ```
 *
 * @category layers
 * @since 0.6.0
 */
export const layerWorkerConfig = (
  config: Config.Wrap<WorkerOptions>
): Layer.Layer<never, RemoteFailure | InvalidOptions | TaskModuleError | Config.ConfigError> =>
  Layer.unwrap(Effect.map(Config.unwrap(config), layerWorker))

/**
 * Renamed {@link layerWorker}, as Effect names its Layer constructors.
 *
 * @category layers
 * @since 0.4.0
 * @deprecated since 0.5.0; use {@link layerWorker}.
 */
export const worker = layerWorker
