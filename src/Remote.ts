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
import type * as BullMQ from "bullmq"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as IORedis from "ioredis"
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import * as NodePath from "node:path"
import * as Url from "node:url"
import * as V8 from "node:v8"
import * as Backend from "./Backend.ts"
import * as Hashing from "./Hashing.ts"
import { importOptional } from "./internal/optional.ts"
import * as OptionParsing from "./internal/options.ts"
import { canonicalSource } from "./internal/parallel/closure.ts"
import { checkNotImportingTaskModule } from "./internal/parallel/guard.ts"
import { makeSettled, makeSlotCounts } from "./internal/parallel/outcome.ts"
import type { Shipment } from "./internal/parallel/pool.ts"
import { makeThreads, transportRun } from "./internal/parallel/pools.ts"
import * as Protocol from "./internal/parallel/protocol.ts"
import type { Backend as EngineBackend, Runner } from "./internal/parallel/runner.ts"
import { countBuffers, Sharer } from "./internal/parallel/share.ts"
import { shippedAs, type Work } from "./internal/parallel/work.ts"
import { mapBuffers, reviveRefs } from "./internal/parallel/workerRuntime.js"
import { connectRedis } from "./internal/redis.ts"
import {
  type InvalidOptions,
  type ParallelError,
  RemoteFailure,
  type TaskModuleError,
  TaskNotFound
} from "./ParallelError.ts"
import * as Task from "./Task.ts"

/** What a batch names: a Task (by name, with a hash of its source) or an inline function's source. */
const Spec = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("task"), name: Schema.String, source: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("fn"), source: Schema.String })
])
type Spec = typeof Spec.Type

/**
 * A batch as the queue carries it: the batch protocol's `run` request (see `protocol.ts`), with the work named
 * by a `Spec` that the worker resolves against its own modules, and big buffers stored once per map in Redis.
 */
const BatchMessage = Schema.Struct({
  ...Protocol.batchFields,
  spec: Spec,
  /** Big buffers the items refer to, each stored once per map under `prefix + id`. */
  refs: Schema.UndefinedOr(Schema.Struct({ prefix: Schema.String, ids: Schema.Array(Schema.Int) }))
})
type BatchMessage = typeof BatchMessage.Type

/** What a worker pushes to the driver's reply list when a batch ends: its raw results, or its typed error encoded. */
const Reply = Schema.Union([
  Schema.Struct({
    id: Schema.String,
    result: Protocol.Encoded,
    /** What the batch's tasks reported with `Progress.report`: index in the batch, data. */
    progress: Schema.Array(Schema.Tuple([Schema.Int, Schema.Unknown]))
  }),
  Schema.Struct({ id: Schema.String, error: Schema.Unknown })
])
type Reply = typeof Reply.Type

/** A job only names its batch (stored under `in:<id>`) and where to reply. */
const JobData = Schema.Struct({
  id: Schema.String,
  replyTo: Schema.String,
  /** A small batch travels in its job, as base64 of its `node:v8` bytes; a big one is stored under `in:<id>`. */
  batch: Schema.optional(Schema.String)
})
type JobData = typeof JobData.Type

/** Batches up to this many bytes travel inside their job: a command less for the driver and two for the worker. */
const INLINE_BATCH_BYTES = 16 * 1024

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
export interface WorkerInfo {
  readonly id: string
  readonly host: string
  readonly pid: number
  /** Batches it runs at once: its threads. */
  readonly threads: number
  /** Epoch milliseconds. */
  readonly started: number
}

/** A registry entry as a worker writes it, checked since anything can write there. */
const WorkerEntry = Schema.Struct({
  id: Schema.String,
  host: Schema.String,
  pid: Schema.Int,
  threads: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  started: Schema.Finite
})

const parseEntry = (entry: string): ReadonlyArray<WorkerInfo> => {
  try {
    const decoded = Schema.decodeUnknownResult(WorkerEntry)(JSON.parse(entry))
    return Result.isSuccess(decoded) ? [decoded.success] : []
  } catch {
    return []
  }
}

/**
 * The workers connected to a queue now, from its registry; lapsed entries are removed on the way, and entries
 * that are not a worker's are left out.
 */
const readRegistry = (client: IORedis.Redis, prefix: string) =>
  Effect.tryPromise({
    try: async () => {
      const ids = await client.smembers(`${prefix}workers`)
      if (ids.length === 0) return []
      const entries = await client.mget(...ids.map((id) => `${prefix}worker:${id}`))
      const lapsed = ids.filter((_, i) => entries[i] === null)
      if (lapsed.length > 0) await client.srem(`${prefix}workers`, ...lapsed)
      return entries.flatMap((entry) => (entry === null ? [] : parseEntry(entry)))
    },
    catch: (error) =>
      new RemoteFailure({ reason: "Unreachable", message: `reading the workers: ${messageOf(error)}`, cause: error })
  })

/** The prefix of every Redis key of queue `name` that is not BullMQ's own: drivers, workers and status share it. */
const keyPrefix = (name: string) => `effect-joblib:${name}:`

/** Keys a driver or worker leaves behind (after a crash) expire after a day. */
const DAY = 86_400_000

const urlOf = (
  redis: string | Redacted.Redacted<string>
) => (Redacted.isRedacted(redis) ? Redacted.value(redis) : redis)

/** Closes a BullMQ object, giving up after a few seconds: with Redis gone, a close would wait forever. */
const closing = (close: () => Promise<unknown>) =>
  Effect.promise(() => close().catch(() => {})).pipe(Effect.timeoutOption(3000), Effect.asVoid)

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** A message read from Redis, decoded with its Schema (anything can be pushed there, by any version), or why not. */
const readWire = <A>(schema: Schema.Codec<A, any>, bytes: Uint8Array): Result.Result<A, string> => {
  let value: unknown
  try {
    value = V8.deserialize(bytes)
  } catch (error) {
    return Result.fail(`not node:v8 data (${messageOf(error)})`)
  }
  return Result.mapError(Schema.decodeUnknownResult(schema)(value), Protocol.describeIssue)
}

/** Enough of a reply to tell which batch it answers. */
const Named = Schema.Struct({ id: Schema.String })

/** A Redis connection for the life of the scope; `blocking` ones (for BullMQ's workers and events) wait instead of failing. */
const connect = (redis: string | Redacted.Redacted<string>, timeout: number, blocking: boolean) =>
  connectRedis({
    url: urlOf(redis),
    feature: "Remote",
    install: "bullmq ioredis",
    timeout,
    mode: blocking ? "blocking" : "failFast"
  }).pipe(Effect.mapError((failure) => new RemoteFailure(failure)))

const loadBullmq = importOptional<typeof BullMQ>("bullmq", "Remote", "bullmq ioredis").pipe(
  Effect.mapError((message) => new RemoteFailure({ reason: "MissingDependency", message }))
)

/** A task's version: the hash of its `run` as tokens, so that formatting alone never counts as a change. */
const hashSource = (source: string) => Effect.orDie(Hashing.hash(canonicalSource(source)))

/**
 * Each batch costs a few milliseconds of CPU between the driver, Redis and the worker (see the README's
 * "Scaling"): automatic batching makes batches of about a second once it knows how long an item takes, so
 * that the cost is a fraction of a percent, and splits the tail of the input into batches of no less than
 * 100 ms, so that workers finish close together while the cost stays a few percent.
 */
const TARGET_BATCH_MILLIS = 1000
const MIN_BATCH_MILLIS = 250

/** A worker renews its entry in the queue's registry this often; an entry not renewed within `WORKER_TTL` lapses. */
const HEARTBEAT_MILLIS = 1000
const WORKER_TTL = 3000

/** A driver reads the registry this often, so that a worker that joins mid-map gets batches within a second. */
const CAPACITY_POLL_MILLIS = 500

/** Replies a driver takes in one command once the first has come. */
const REPLIES_PER_READ = 256

/** One batch waits in the queue for every this many threads connected. */
const SPARE_PER = 8

/**
 * Runs `effect` on real time, whatever Clock the layer was built with: the loops that watch the Redis server
 * (replies, capacity, connections, the queue's failed batches, a worker's heartbeat) keep pace with a server
 * whose keys expire on its own clock. What a map decides about its caller's time (the wait for a worker)
 * still follows the caller's Clock, a `TestClock` included.
 */
const onServerTime = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(effect, Clock.Clock, Clock.Clock.defaultValue())

/** What a batch that ran on a worker answers, before its id is added. */
type Answered = Omit<Extract<Reply, { result: unknown }>, "id">

/** Cancels a worker keeps of batches not running on it when they came (most are for other workers). */
const CANCELS_KEPT = 4096

/** Batches in flight at most when `slots` is not given: in practice, the capacity connected. */
const MAX_SLOTS = 1024

/** How long the per-second completion counters that `effect-joblib status` reads are kept, in seconds. */
const STATS_SECONDS = 120

/** How far back (milliseconds) the watcher reads the queue's failed set, and how long a batch is in flight before
 * it is looked for one by one. */
const FAILED_WINDOW_MILLIS = 60_000
const MISSING_CHECK_MILLIS = 5000

/** Buffers from this size are sent once per map rather than with every batch that uses them. */
const BIG = 1024 * 1024

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
  // BullMQ runs timers of these lengths.
  lockDuration: Schema.optional(OptionParsing.TimerDuration),
  stalledInterval: Schema.optional(OptionParsing.TimerDuration),
  maxStalledCount: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)))
})

/**
 * A backend that sends batches to remote workers through a BullMQ queue on
 * Redis. `Parallel.map` code does not change; only the provided Layer does.
 *
 * **Example** (Spreading a map over machines)
 *
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { Parallel, Remote } from "effect-joblib"
 *
 * const program = Parallel.map([1, 2, 3], (x) => x * 2).pipe(
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
    const name = options.queue ?? "effect-joblib"
    const timeout = options.timeout ?? 5000
    const cap = options.slots ?? MAX_SLOTS
    const waitForWorker = Duration.toMillis(Duration.fromInputUnsafe(options.noWorkerTimeout ?? "10 seconds"))
    const client = yield* connect(options.redis, timeout, false)
    const replies = yield* connect(options.redis, timeout, true)
    const { Queue } = yield* loadBullmq
    const queue = yield* Effect.acquireRelease(
      Effect.sync(() => new Queue(name, { connection: client })),
      (queue) => closing(() => queue.close())
    )
    queue.setMaxListeners(0)
    // Failures surface as typed errors of the calls; without a listener BullMQ prints each one.
    queue.on("error", () => {})
    const request = <A>(what: string, run: () => Promise<A>) =>
      Effect.tryPromise({
        try: run,
        catch: (error) =>
          new RemoteFailure({ reason: "Unreachable", message: `${what}: ${messageOf(error)}`, cause: error })
      })
    const prefix = keyPrefix(name)

    // Workers push each batch's reply to this driver's own list; one fiber reads it and wakes the batch's waiter.
    // Cheaper than following the queue's event stream, which carries every event of every job.
    const replyTo = `${prefix}reply:${Crypto.randomUUID()}`
    /**
     * Batches in flight, each with the Deferred its reply completes, or the watcher when the queue gave up on it
     * or Redis went away; when it was sent, when the watcher last looked for it, and how often it was missing.
     */
    const inFlight = new Map<
      string,
      { readonly replied: Deferred.Deferred<Reply, RemoteFailure>; checkedAt: number; missing: number }
    >()
    // A reply that lands after its batch was interrupted here (a cancel a moment too late) goes with the driver.
    yield* Effect.addFinalizer(() => Effect.promise(() => client.del(replyTo).catch(() => 0)))
    const deliver = (bytes: Buffer) => {
      const reply = readWire(Reply, bytes)
      const named = Result.isSuccess(reply) ? reply : readWire(Named, bytes)
      // A reply that names no batch is dropped: the batch watcher gives up on its batch.
      if (Result.isFailure(named)) return
      const { id } = named.success
      const batch = inFlight.get(id)
      if (batch === undefined) return
      Deferred.doneUnsafe(
        batch.replied,
        Result.isSuccess(reply)
          ? Effect.succeed(reply.success)
          : Effect.fail(
            new RemoteFailure({ reason: "Rejected", message: `a malformed reply to batch ${id}: ${reply.failure}` })
          )
      )
    }
    // One blocking pop of every reply waiting (BLMPOP, Redis 7); before Redis 7, a blocking pop for the first
    // reply, then the replies that arrived with it.
    let blmpop = true
    const readReplies = async () => {
      if (blmpop) {
        try {
          const popped = await replies.blmpopBuffer(1, 1, replyTo, "LEFT", "COUNT", REPLIES_PER_READ)
          for (const bytes of popped?.[1] ?? []) deliver(bytes)
          return
        } catch (error) {
          // The server answered with an error (an unknown command, in whatever words): not a lost connection.
          if (!(error instanceof Error && error.name === "ReplyError")) throw error
          blmpop = false
        }
      }
      const popped = await replies.blpopBuffer(replyTo, 1)
      if (popped === null) return
      const more = await replies.lpopBuffer(replyTo, REPLIES_PER_READ)
      deliver(popped[1])
      for (const bytes of more ?? []) deliver(bytes)
    }
    const readReply = Effect.flatMap(
      Effect.promise(() => readReplies().then(() => "up" as const, () => "down" as const)),
      (state) => (state === "down" ? Effect.sleep(100) : Effect.void)
    )
    yield* Effect.forkScoped(onServerTime(Effect.forever(readReply)))

    // Capacity is discovered: the threads of the workers in the queue's registry, read by one fiber. A change
    // wakes every map waiting for a slot, so that a worker that joins mid-map gets batches at once.
    let connected = 0
    const capacityChanged = makeSettled()
    const watchCapacity = Effect.flatMap(Effect.option(readRegistry(client, prefix)), (workers) =>
      Effect.sync(() => {
        if (workers._tag === "None") return
        const threads = workers.value.reduce((sum, worker) => sum + worker.threads, 0)
        if (threads !== connected) {
          connected = threads
          capacityChanged.notify()
        }
      }))
    // Read once now, so that a map started right after the layer is built knows the workers already connected.
    yield* watchCapacity
    yield* Effect.forkScoped(onServerTime(Effect.repeat(watchCapacity, Schedule.spaced(CAPACITY_POLL_MILLIS))))

    /** Waits until a worker is connected to the queue, or fails saying how to start one. */
    const awaitWorker = Effect.suspend(() => connected > 0 ? Effect.void : capacityChanged.wait).pipe(
      Effect.repeat({ until: () => connected > 0 }),
      // A worker may have joined since the watcher last looked: look once now, before waiting for it.
      (wait) => Effect.suspend(() => connected > 0 ? Effect.void : Effect.andThen(watchCapacity, wait)),
      Effect.timeoutOrElse({
        duration: waitForWorker,
        orElse: () =>
          Effect.fail(
            new RemoteFailure({
              reason: "NoWorker",
              message: `no worker is connected to the queue "${name}" after ${waitForWorker} ms; start one, e.g. ` +
                `Remote.layerWorker({ redis, queue: "${name}", modules: ["./tasks.ts"] })`
            })
          )
      }),
      Effect.asVoid
    )

    // One watcher for the whole layer, not fibers per batch: the connections, and the batches the queue gave up
    // on. Each batch in flight waits on one Deferred: its reply, or the failure a watcher finds.

    /** Set while either connection has been down for longer than `timeout`: batches fail with it. */
    let lost: RemoteFailure | undefined
    let downSince: number | undefined
    const watchConnections = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        if (client.status === "ready" && replies.status === "ready") {
          downSince = undefined
          lost = undefined
        } else if (downSince === undefined) downSince = now
        else if (now - downSince > timeout && lost === undefined) {
          lost = new RemoteFailure({
            reason: "Unreachable",
            message: `lost the connection to Redis for over ${timeout} ms while batches ran`
          })
          for (const batch of inFlight.values()) Deferred.doneUnsafe(batch.replied, Effect.fail(lost))
        }
      }))
    yield* Effect.forkScoped(onServerTime(Effect.repeat(watchConnections, Schedule.spaced(Math.min(250, timeout)))))

    /** A batch the queue gave up on fails with why; its items, which its worker would have removed, go too. */
    const giveUp = (id: string, message: string) =>
      Effect.sync(() => {
        const batch = inFlight.get(id)
        if (batch === undefined) return
        client.del(`${prefix}in:${id}`).catch(() => 0)
        Deferred.doneUnsafe(batch.replied, Effect.fail(new RemoteFailure({ reason: "Rejected", message })))
      })
    // BullMQ fails a batch that stalled (its worker died) more than `maxStalledCount` times: the queue's failed
    // set, read since a minute before the last look (workers' clocks may differ), names it. A batch that left
    // the queue some other way is looked for one by one, and only once it has been in flight for a while.
    const failedKey = queue.toKey("failed")
    const watchBatches = Effect.gen(function*() {
      if (inFlight.size === 0) return
      const now = yield* Clock.currentTimeMillis
      const failed = yield* Effect.promise(() =>
        client.zrangebyscore(failedKey, now - FAILED_WINDOW_MILLIS, "+inf").catch(() => [] as Array<string>)
      )
      for (const id of failed) {
        if (!inFlight.has(id)) continue
        const job = yield* Effect.promise(() => queue.getJob(id).catch(() => undefined))
        yield* Effect.promise(() => job?.remove().catch(() => {}) ?? Promise.resolve())
        yield* giveUp(id, job?.failedReason ?? `the queue failed batch ${id}`)
      }
      const due = [...inFlight].filter(([, batch]) => now - batch.checkedAt >= MISSING_CHECK_MILLIS)
      if (due.length === 0) return
      const states = yield* Effect.promise(() =>
        Promise.all(due.map(([id]) => queue.getJobState(id).catch(() => "unreachable")))
      )
      for (let i = 0; i < due.length; i++) {
        const [id, batch] = due[i]!
        batch.checkedAt = now
        // A reply is pushed before its batch completes, so a batch missing twice in a row had none.
        batch.missing = states[i] === "unknown" ? batch.missing + 1 : 0
        if (batch.missing === 2) yield* giveUp(id, `batch ${id} left the queue without a result`)
      }
    })
    yield* Effect.forkScoped(onServerTime(Effect.repeat(watchBatches, Schedule.spaced(1000))))

    /** Sends one batch through the queue and waits for its worker's raw results. */
    const send = (message: BatchMessage, onProgress: Shipment["onProgress"]) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (lost !== undefined) return Effect.fail(lost)
        const id = Crypto.randomUUID()
        const replied = Deferred.makeUnsafe<Reply, RemoteFailure>()
        // Looked for one by one only after a while: replies and the failed set cover the rest.
        inFlight.set(id, { replied, checkedAt: now, missing: 0 })
        const bytes = V8.serialize(message)
        const inline = bytes.length <= INLINE_BATCH_BYTES
        const job: JobData = inline ? { id, replyTo, batch: bytes.toString("base64") } : { id, replyTo }
        // Kept a while when failed, so that the watcher can read why the queue failed it.
        const options = { jobId: id, removeOnComplete: true, removeOnFail: { age: 3600 } }
        // A big batch's bytes and its job go out on one connection at once: Redis stores them before the job.
        return request("sending a batch", (): Promise<unknown> =>
          inline
            ? queue.add("batch", job, options)
            : Promise.all([client.set(`${prefix}in:${id}`, bytes, "PX", DAY), queue.add("batch", job, options)])).pipe(
            Effect.andThen(Deferred.await(replied)),
            // Interrupted: a batch still waiting is taken off the queue, so no worker runs it later, and one
            // already running is cancelled on its worker.
            Effect.onInterrupt(() =>
              Effect.promise(() =>
                Promise.all([
                  queue.remove(id).catch(() => {}),
                  client.publish(`${prefix}cancel`, id).catch(() => 0),
                  client.del(`${prefix}in:${id}`).catch(() => 0)
                ])
              )
            ),
            Effect.ensuring(Effect.sync(() => inFlight.delete(id))),
            Effect.flatMap((reply) => {
              if ("error" in reply) return Effect.fail(Protocol.decodeError(reply.error))
              for (const [index, data] of reply.progress) onProgress?.(index, data)
              return Effect.succeed(reply.result)
            })
          )
      })

    const batchStates = new Map<string, WeakMap<object, unknown>>()
    const backend: EngineBackend = {
      name: "remote",
      /** The capacity connected now (at least 1), within `slots`. */
      get workers() {
        return Math.max(1, Math.min(cap, connected))
      },
      prepare: <I, A, E>(
        work: Work<I, A, E>,
        items?: ReadonlyArray<I>
      ): Effect.Effect<Runner<I, A, E>, ParallelError, Scope.Scope> =>
        Effect.gen(function*() {
          const { spec: shipped } = yield* work.ship
          const spec: Spec = shipped.kind === "fn"
            ? { kind: "fn", source: shipped.source }
            : { kind: "task", name: shipped.name, source: yield* hashSource(work.source) }
          // A warm backend starts each map of the same work from the batch size the last one reached.
          const batchKey = spec.kind === "fn" ? `fn:${spec.source}` : `task:${spec.name}`
          yield* awaitWorker
          // Big buffers several items use go to Redis once per map; the items carry references to them.
          const counts = work.mayShare && items !== undefined ? countBuffers(items, BIG) : undefined
          const sharer = new Sharer(BIG, counts, true)
          const refsPrefix = `${prefix}buf:${Crypto.randomUUID()}:`
          const uploaded = new Set<number>()
          yield* Effect.addFinalizer(() =>
            uploaded.size === 0 ? Effect.void : Effect.ignore(request("releasing buffers", async () => {
              await client.del(...[...uploaded].map((id) => refsPrefix + id))
              await client.publish(`${prefix}release`, refsPrefix)
            }))
          )
          const upload = (refs: ReadonlyMap<number, ArrayBuffer> | undefined) =>
            Effect.gen(function*() {
              if (refs === undefined) return undefined
              for (const [id, buffer] of refs) {
                if (uploaded.has(id)) continue
                uploaded.add(id)
                yield* request("sending a buffer", () => client.set(refsPrefix + id, Buffer.from(buffer), "PX", DAY))
              }
              return { prefix: refsPrefix, ids: [...refs.keys()] }
            })
          const run = transportRun(
            work,
            sharer,
            (_slot, shipment) =>
              Effect.flatMap(upload(shipment.refs), (refs) =>
                send({
                  spec,
                  items: shipment.items,
                  start: shipment.start,
                  failFast: shipment.failFast,
                  timeout: shipment.timeout,
                  timings: shipment.timings === true ? true : undefined,
                  parent: shipment.parent,
                  refs
                }, shipment.onProgress)),
            () => "remote worker"
          )
          const { counted, outstanding, settled } = makeSlotCounts(cap)
          return {
            slots: cap,
            // A few more than the threads: a thread that finishes a batch takes a waiting one in the same call to
            // Redis, where it would otherwise wait for this driver to hear of it and send another.
            capacity: () => Math.min(cap, connected + Math.ceil(connected / SPARE_PER)),
            outstanding,
            settled: Effect.raceFirst(settled, capacityChanged.wait),
            batchState: batchStates.get(batchKey) ?? batchStates.set(batchKey, new WeakMap()).get(batchKey),
            restarts: () => 0,
            minBatchMillis: MIN_BATCH_MILLIS,
            targetBatchMillis: TARGET_BATCH_MILLIS,
            run: (slot, items, start, runOptions) => counted(slot, run(slot, items, start, runOptions))
          } satisfies Runner<I, A, E>
        })
    }
    return backend
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
export interface Status {
  readonly queue: string
  /** The workers connected, from the registry they renew. */
  readonly workers: ReadonlyArray<WorkerInfo>
  /** Their threads: the batches they run at once. */
  readonly capacity: number
  /** Batches waiting for a worker. */
  readonly waiting: number
  /** Batches running on a worker. */
  readonly running: number
  /** Running batches whose worker stopped renewing their lock: they go back to the queue at the next check. */
  readonly stalled: number
  /** Batches the queue gave up on (kept an hour). */
  readonly failed: number
  /** Finished per second, over the last minute. */
  readonly throughput: { readonly items: number; readonly batches: number }
}

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
  Effect.gen(function*() {
    const options = yield* OptionParsing.parse(StatusOptionsSchema, "Remote.status", rawOptions)
    const name = options.queue ?? "effect-joblib"
    const prefix = keyPrefix(name)
    const client = yield* connect(options.redis, options.timeout ?? 5000, false)
    const { Queue } = yield* loadBullmq
    const queue = yield* Effect.acquireRelease(
      Effect.sync(() => new Queue(name, { connection: client })),
      (queue) => closing(() => queue.close())
    )
    queue.on("error", () => {})
    return Effect.gen(function*() {
      const workers = yield* readRegistry(client, prefix)
      const now = yield* Clock.currentTimeMillis
      return yield* Effect.tryPromise({
        try: async () => {
          const counts = await queue.getJobCounts("wait", "prioritized", "active", "failed")
          const active = await client.lrange(queue.toKey("active"), 0, -1)
          const locks = active.length === 0 ? 0 : await client.exists(...active.map((id) => queue.toKey(`${id}:lock`)))
          const second = Math.floor(now / 1000)
          const minute = Array.from({ length: 60 }, (_, i) => `${prefix}done:${second - i}`)
          const pipeline = client.pipeline()
          for (const key of minute) pipeline.hmget(key, "items", "batches")
          let items = 0
          let batches = 0
          for (const [, row] of (await pipeline.exec()) ?? []) {
            const [done, count] = (row ?? []) as Array<string | null>
            items += Number(done ?? 0)
            batches += Number(count ?? 0)
          }
          return {
            queue: name,
            workers,
            capacity: workers.reduce((sum, worker) => sum + worker.threads, 0),
            waiting: (counts.wait ?? 0) + (counts.prioritized ?? 0),
            running: counts.active ?? 0,
            stalled: active.length - locks,
            failed: counts.failed ?? 0,
            throughput: { items: items / 60, batches: batches / 60 }
          } satisfies Status
        },
        catch: (error) =>
          new RemoteFailure({ reason: "Unreachable", message: `reading the queue: ${messageOf(error)}`, cause: error })
      })
    })
  })

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
    // Per-second counters and the registry's start time are read from the layer's Clock.
    const clock = yield* Clock.Clock
    const name = options.queue ?? "effect-joblib"
    const prefix = keyPrefix(name)
    const urls = options.modules.map((module) =>
      module.startsWith("file:") ? module : Url.pathToFileURL(NodePath.resolve(module)).href
    )
    for (const url of urls) {
      yield* Effect.tryPromise({
        try: () => import(url),
        catch: (error) =>
          new RemoteFailure({ reason: "Rejected", message: `cannot load ${url}: ${messageOf(error)}`, cause: error })
      })
    }
    // Tasks by name, from the given modules only.
    const tasks = new Map<string, { task: Task.Task<any, any, any>; source: string }>()
    for (const task of Task.registered()) {
      if (urls.includes(task.url)) tasks.set(task.name, { task, source: yield* hashSource(String(task.run)) })
    }
    yield* checkNotImportingTaskModule("builds Remote.layerWorker")
    // A worker serves for as long as it runs: its threads start now and stay.
    const pool = yield* makeThreads(
      { workers: options.concurrency ?? -1, warm: true, idleTimeout: Duration.infinity },
      { where: "Remote.layerWorker", option: "concurrency" }
    )
    const client = yield* connect(options.redis, options.timeout ?? 5000, true)
    const { WaitingError, Worker } = yield* loadBullmq
    let nextSlot = 0

    // Buffers sent once per map, kept until the driver releases them. In shared memory, so that every thread
    // reads them in place.
    const buffers = new Map<string, SharedArrayBuffer>()
    const fetchBuffers = (refs: NonNullable<BatchMessage["refs"]>) =>
      Effect.gen(function*() {
        const held = new Map<number, ArrayBuffer>()
        for (const id of refs.ids) {
          const key = refs.prefix + id
          let buffer = buffers.get(key)
          if (buffer === undefined) {
            const bytes = yield* Effect.tryPromise({
              try: () => client.getBuffer(key),
              catch: (error) => new RemoteFailure({ reason: "Unreachable", message: messageOf(error), cause: error })
            })
            if (bytes === null) {
              return yield* new RemoteFailure({
                reason: "Rejected",
                message: `the buffer ${key} is missing from Redis`
              })
            }
            buffer = new SharedArrayBuffer(bytes.length)
            new Uint8Array(buffer).set(bytes)
            buffers.set(key, buffer)
          }
          held.set(id, buffer as unknown as ArrayBuffer)
        }
        return held
      })

    /** The work a batch names, as this worker's threads load it; refused when this worker does not run it. */
    const resolve = (
      spec: Spec
    ): Effect.Effect<{ readonly key: number; readonly spec: Protocol.WorkSpec }, TaskNotFound | RemoteFailure> => {
      if (spec.kind === "fn") {
        return options.allowInline === true
          ? Effect.succeed(shippedAs(spec))
          : Effect.fail(
            new RemoteFailure({
              reason: "Rejected",
              message: "inline functions are not allowed on this worker (allowInline: false)"
            })
          )
      }
      const found = tasks.get(spec.name)
      if (found === undefined) {
        return Effect.fail(
          new TaskNotFound({
            task: spec.name,
            module: urls.join(", "),
            message: `this worker has no task named "${spec.name}" in ${urls.join(", ")}`
          })
        )
      }
      if (found.source !== spec.source) {
        return Effect.fail(
          new RemoteFailure({
            reason: "Rejected",
            message: `the task "${spec.name}" on this worker is a different version ` +
              `(source ${found.source}, batch ${spec.source})`
          })
        )
      }
      return Effect.succeed(shippedAs({ kind: "task", url: found.task.url, name: found.task.name }))
    }

    /** Relays a batch to the least busy thread (ties rotate), as the batch protocol's `run` request. */
    const runBatch = (message: BatchMessage) =>
      Effect.gen(function*() {
        const { key, spec } = yield* resolve(message.spec)
        const slots = pool.slots
        let slot = nextSlot++ % slots.length
        for (let i = 0; i < slots.length; i++) {
          if (slots[i]!.outstanding < slots[slot]!.outstanding) slot = i
        }
        const items = message.refs === undefined
          ? message.items
          : reviveRefs(message.items, yield* fetchBuffers(message.refs)) as ReadonlyArray<unknown>
        // The items are this worker's own copy: their big buffers move to the thread rather than being copied.
        const transfer = new Set<ArrayBuffer>()
        mapBuffers(items, BIG, (buffer) => transfer.add(buffer) && buffer)
        const progress: Array<readonly [number, unknown]> = []
        const result = yield* slots[slot]!.run({
          key,
          spec,
          items,
          start: message.start,
          failFast: message.failFast,
          timeout: message.timeout,
          refs: undefined,
          transfer: [...transfer],
          onProgress: (index, data) => void progress.push([index, data]),
          timings: message.timings,
          parent: message.parent
        })
        return { result, progress }
      })

    // Batches running here, by id, as fibers of this layer's scope and context, so that a cancel from the driver
    // can interrupt them and closing the layer interrupts what is left; and cancels of batches that were not
    // running when they came, so that one taken from the queue at that moment does not start.
    const running = yield* FiberMap.make<string, Answered, ParallelError>()
    const runBatchHere = yield* FiberMap.runtime(running)<never>()
    const cancelledEarly = new Set<string>()
    const subscriber = yield* connect(options.redis, options.timeout ?? 5000, true)
    subscriber.on("message", (channel: string, payload: string) => {
      if (channel === `${prefix}release`) {
        for (const key of buffers.keys()) if (key.startsWith(payload)) buffers.delete(key)
        return
      }
      const fiber = FiberMap.getUnsafe(running, payload)
      if (Option.isSome(fiber)) return void fiber.value.interruptUnsafe()
      // Not running here (yet): this worker may have taken the job and not started it. Kept, bounded: every
      // worker hears every cancel, most of them for batches it never gets.
      cancelledEarly.add(payload)
      if (cancelledEarly.size > CANCELS_KEPT) cancelledEarly.delete(cancelledEarly.values().next().value!)
    })
    yield* Effect.tryPromise({
      try: () => subscriber.subscribe(`${prefix}cancel`, `${prefix}release`),
      catch: (error) =>
        new RemoteFailure({ reason: "Unreachable", message: `cannot subscribe: ${messageOf(error)}`, cause: error })
    })
    // Set when this worker stops: batches it was running go back to the queue for another worker.
    let stopping = false
    /** Runs a batch; its failures become a reply too, so that the driver hears of them at once. */
    const answer = async ({ batch, id }: JobData): Promise<Reply | "interrupted"> => {
      const bytes = batch !== undefined ? Buffer.from(batch, "base64") : await client.getBuffer(`${prefix}in:${id}`)
      const rejected = (message: string) => ({
        id,
        error: Protocol.encodeError(new RemoteFailure({ reason: "Rejected", message }))
      })
      if (bytes === null) return rejected(`the batch ${id} is missing from Redis`)
      const message = readWire(BatchMessage, bytes)
      if (Result.isFailure(message)) return rejected(`the batch ${id} is malformed: ${message.failure}`)
      if (cancelledEarly.delete(id)) return "interrupted"
      const fiber = runBatchHere(id, runBatch(message.success))
      const exit = await new Promise<Exit.Exit<Answered, ParallelError>>(
        (resolve) => fiber.addObserver(resolve)
      )
      if (Exit.isSuccess(exit)) return { id, ...exit.value }
      if (Cause.hasInterruptsOnly(exit.cause)) return "interrupted"
      const failure = exit.cause.reasons.find(Cause.isFailReason)
      const error = failure?.error ??
        new RemoteFailure({ reason: "Rejected", message: `the worker failed: ${Cause.pretty(exit.cause)}` })
      return { id, error: Protocol.encodeError(error) }
    }
    const bullWorker = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Worker(name, async (job, token) => {
          const decoded = Schema.decodeUnknownResult(JobData)(job.data)
          // A job that is not a driver's fails in the queue, with the reason.
          if (Result.isFailure(decoded)) {
            throw new Error(`job ${job.id} is not an effect-joblib batch: ${Protocol.describeIssue(decoded.failure)}`)
          }
          const data = decoded.success
          const { id, replyTo } = data
          const reply = await answer(data)
          if (reply === "interrupted") {
            // Cancelled by its driver, which waits no more; or this worker is stopping: another one runs it.
            if (!stopping) return
            await job.moveToWait(token)
            throw new WaitingError()
          }
          const second = Math.floor(clock.currentTimeMillisUnsafe() / 1000)
          const done = "result" in reply ? reply.result.values.length : 0
          const replying = client.multi().rpush(replyTo, V8.serialize(reply)).pexpire(replyTo, DAY)
          if (data.batch === undefined) replying.del(`${prefix}in:${id}`)
          await replying.hincrby(`${prefix}done:${second}`, "items", done)
            .hincrby(`${prefix}done:${second}`, "batches", 1).expire(`${prefix}done:${second}`, STATS_SECONDS).exec()
        }, {
          connection: client,
          // One batch per thread: drivers keep as many in flight as the threads connected, so a batch waits in
          // the queue for the first free thread of any worker, never behind another on a busy one.
          concurrency: pool.slots.length,
          // Tasks run on threads, so the lock renewals on this loop are never starved by a long task.
          lockDuration: options.lockDuration ?? 3000,
          stalledInterval: options.stalledInterval ?? 1500,
          maxStalledCount: options.maxStalledCount ?? 2
        })
      ),
      // Batches still running are interrupted and handed back to the queue, then the worker closes.
      (worker) =>
        Effect.andThen(
          Effect.suspend(() => {
            stopping = true
            return FiberMap.clear(running)
          }),
          closing(() => worker.close())
        )
    )
    bullWorker.on("error", () => {})
    yield* Effect.tryPromise({
      try: () => bullWorker.waitUntilReady(),
      catch: (error) =>
        new RemoteFailure({
          reason: "Unreachable",
          message: `the worker cannot start: ${messageOf(error)}`,
          cause: error
        })
    })
    // In the registry while it runs, renewed on the Clock: drivers size their maps by the threads connected.
    const info: WorkerInfo = {
      id: `${Os.hostname()}:${process.pid}:${Crypto.randomUUID().slice(0, 8)}`,
      host: Os.hostname(),
      pid: process.pid,
      threads: pool.slots.length,
      started: clock.currentTimeMillisUnsafe()
    }
    const entry = `${prefix}worker:${info.id}`
    // Bounded waits: this connection waits for a server that is away rather than failing.
    const register = Effect.promise(() =>
      client.multi().sadd(`${prefix}workers`, info.id).set(entry, JSON.stringify(info), "PX", WORKER_TTL).exec()
        .catch(() => undefined)
    ).pipe(Effect.timeoutOption(WORKER_TTL))
    yield* register
    // Out of the registry first when it stops, after its last renewal.
    yield* Effect.addFinalizer(() => closing(() => client.multi().srem(`${prefix}workers`, info.id).del(entry).exec()))
    yield* Effect.forkScoped(onServerTime(Effect.repeat(register, Schedule.spaced(HEARTBEAT_MILLIS))))
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
