/**
 * The worker side of `Remote.layerWorker`: pulls batches from the queue and relays each to the least busy
 * thread of a pool of its own, so that long tasks never block the connection that keeps their jobs alive.
 * Batches run as fibers of the layer's scope: a driver's cancel interrupts one, and closing the layer hands
 * the ones still running back to the queue.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberMap from "effect/FiberMap"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as IORedis from "ioredis"
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import * as NodePath from "node:path"
import * as Url from "node:url"
import * as V8 from "node:v8"
import {
  type InvalidOptions,
  type ParallelError,
  RemoteFailure,
  type TaskModuleError,
  TaskNotFound
} from "../../ParallelError.ts"
import * as Task from "../../Task.ts"
import { checkNotImportingTaskModule } from "../parallel/guard.ts"
import type { Slot } from "../parallel/pool.ts"
import { makeThreads } from "../parallel/pools.ts"
import * as Protocol from "../parallel/protocol.ts"
import { leastBusy } from "../parallel/slots.ts"
import { shippedAs } from "../parallel/work.ts"
import { mapBuffers, reviveRefs } from "../parallel/workerRuntime.js"
import { closing, connect, loadBullmq, type RedisUrl, request } from "./connection.ts"
import { DAY, type Keys, keysOf } from "./keys.ts"
import { joinRegistry } from "./registry.ts"
import {
  type Answered,
  BatchMessage,
  BIG,
  hashSource,
  JobData,
  messageOf,
  readWire,
  type Reply,
  type Spec
} from "./wire.ts"

/** Cancels a worker keeps of batches not running on it when they came (most are for other workers). */
const CANCELS_KEPT = 4096

/** How long the per-second completion counters that `effect-joblib status` reads are kept, in seconds. */
const STATS_SECONDS = 120

export interface WorkerOptions {
  readonly redis: RedisUrl
  readonly name: string
  readonly modules: ReadonlyArray<string>
  readonly concurrency: number | undefined
  readonly allowInline: boolean
  readonly timeout: number
  readonly lockDuration: number
  readonly stalledInterval: number
  readonly maxStalledCount: number
}

/** The Tasks of the given modules, by name, each with the hash of its source that batches must match. */
const loadTasks = (urls: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    for (const url of urls) {
      yield* Effect.tryPromise({
        try: () => import(url),
        catch: (error) =>
          new RemoteFailure({ reason: "Rejected", message: `cannot load ${url}: ${messageOf(error)}`, cause: error })
      })
    }
    const tasks = new Map<string, { task: Task.Task<any, any, any>; source: string }>()
    for (const task of Task.registered()) {
      if (urls.includes(task.url)) tasks.set(task.name, { task, source: yield* hashSource(String(task.run)) })
    }
    return tasks
  })

type Tasks = Effect.Success<ReturnType<typeof loadTasks>>

/** The work a batch names, as this worker's threads load it; refused when this worker does not run it. */
const resolveSpec = (
  tasks: Tasks,
  urls: ReadonlyArray<string>,
  allowInline: boolean,
  spec: Spec
): Effect.Effect<{ readonly key: number; readonly spec: Protocol.WorkSpec }, TaskNotFound | RemoteFailure> => {
  if (spec.kind === "fn") {
    return allowInline
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

/**
 * Buffers sent once per map, kept until the driver releases them. In shared memory, so that every thread
 * reads them in place.
 */
const makeBufferCache = (client: IORedis.Redis) => {
  const buffers = new Map<string, SharedArrayBuffer>()
  const fetch = (refs: NonNullable<BatchMessage["refs"]>) =>
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
            return yield* new RemoteFailure({ reason: "Rejected", message: `the buffer ${key} is missing from Redis` })
          }
          buffer = new SharedArrayBuffer(bytes.length)
          new Uint8Array(buffer).set(bytes)
          buffers.set(key, buffer)
        }
        held.set(id, buffer as unknown as ArrayBuffer)
      }
      return held
    })
  const release = (prefix: string) => {
    for (const key of buffers.keys()) if (key.startsWith(prefix)) buffers.delete(key)
  }
  return { fetch, release }
}

/** Relays a batch to the least busy thread (ties rotate), as the batch protocol's `run` request. */
const makeBatchRunner = (
  slots: ReadonlyArray<Slot>,
  resolve: (spec: Spec) => ReturnType<typeof resolveSpec>,
  buffers: ReturnType<typeof makeBufferCache>
) => {
  let nextSlot = 0
  // Read once: every reply says where its batch ran.
  const host = Os.hostname()
  return (message: BatchMessage): Effect.Effect<Answered, ParallelError> =>
    Effect.gen(function*() {
      const { key, spec } = yield* resolve(message.spec)
      const thread = leastBusy(slots.length, (i) => slots[i]!.outstanding, nextSlot++)
      const slot = slots[thread]!
      const items = message.refs === undefined
        ? message.items
        : reviveRefs(message.items, yield* buffers.fetch(message.refs)) as ReadonlyArray<unknown>
      // The items are this worker's own copy: their big buffers move to the thread rather than being copied.
      const transfer = new Set<ArrayBuffer>()
      mapBuffers(items, BIG, (buffer) => transfer.add(buffer) && buffer)
      const progress: Array<readonly [number, unknown]> = []
      const result = yield* slot.run({
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
      return { result, progress, worker: { host, pid: process.pid, thread: thread + 1 } }
    })
}

/**
 * Hears the drivers' cancels and buffer releases. A cancel interrupts the batch if it runs here; otherwise it
 * is kept, bounded, in case this worker has taken the job and not started it (every worker hears every
 * cancel, most of them for batches it never gets). Returns whether a batch was cancelled before it started.
 */
const listenForCancels = (
  options: WorkerOptions,
  keys: Keys,
  running: FiberMap.FiberMap<string, Answered, ParallelError>,
  release: (prefix: string) => void
) =>
  Effect.gen(function*() {
    const cancelledEarly = new Set<string>()
    const subscriber = yield* connect(options.redis, options.timeout, true)
    subscriber.on("message", (channel: string, payload: string) => {
      if (channel === keys.release) return release(payload)
      const fiber = FiberMap.getUnsafe(running, payload)
      if (Option.isSome(fiber)) return void fiber.value.interruptUnsafe()
      cancelledEarly.add(payload)
      if (cancelledEarly.size > CANCELS_KEPT) cancelledEarly.delete(cancelledEarly.values().next().value!)
    })
    yield* request("cannot subscribe", () => subscriber.subscribe(keys.cancel, keys.release))
    return (id: string) => cancelledEarly.delete(id)
  })

/** A batch's answer from its fiber's exit: its results, its typed error encoded, or "interrupted". */
const answerOf = (id: string, exit: Exit.Exit<Answered, ParallelError>): Reply | "interrupted" => {
  if (Exit.isSuccess(exit)) return { id, ...exit.value }
  if (Cause.hasInterruptsOnly(exit.cause)) return "interrupted"
  const failure = exit.cause.reasons.find(Cause.isFailReason)
  const error = failure?.error ??
    new RemoteFailure({ reason: "Rejected", message: `the worker failed: ${Cause.pretty(exit.cause)}` })
  return { id, error: Protocol.encodeError(error) }
}

/** Pushes a batch's reply to its driver and counts it in this second's completions, in one transaction. */
const sendReply = (client: IORedis.Redis, keys: Keys, data: JobData, reply: Reply, second: number) => {
  const done = "result" in reply ? reply.result.values.length : 0
  const replying = client.multi().rpush(data.replyTo, V8.serialize(reply)).pexpire(data.replyTo, DAY)
  if (data.batch === undefined) replying.del(keys.batch(data.id))
  return replying.hincrby(keys.done(second), "items", done)
    .hincrby(keys.done(second), "batches", 1).expire(keys.done(second), STATS_SECONDS).exec()
}

/** The server as a worker's lines name it: host, port and database, never the credentials. */
const serverOf = (redis: RedisUrl) => {
  try {
    const url = new URL(Redacted.isRedacted(redis) ? Redacted.value(redis) : redis)
    return `${url.hostname}:${url.port || "6379"}${url.pathname === "/" ? "" : url.pathname}`
  } catch {
    return "the Redis server"
  }
}

/** Serves the queue for the life of the scope. */
export const runWorker = (
  options: WorkerOptions
): Effect.Effect<void, RemoteFailure | InvalidOptions | TaskModuleError, Scope.Scope> =>
  Effect.gen(function*() {
    // Per-second counters and the registry's start time are read from the layer's Clock.
    const clock = yield* Clock.Clock
    const keys = keysOf(options.name)
    const id = `${Os.hostname()}:${process.pid}:${Crypto.randomUUID().slice(0, 8)}`
    // The worker says what it does: it started, it hands batches back, it stopped (the last finalizer to run).
    yield* Effect.addFinalizer(() => Effect.logInfo(`effect-joblib worker ${id}: stopped`))
    const urls = options.modules.map((module) =>
      module.startsWith("file:") ? module : Url.pathToFileURL(NodePath.resolve(module)).href
    )
    const tasks = yield* loadTasks(urls)
    yield* checkNotImportingTaskModule("builds Remote.layerWorker")
    // A worker serves for as long as it runs: its threads start now and stay.
    const pool = yield* makeThreads(
      { workers: options.concurrency ?? -1, warm: true, idleTimeout: Duration.infinity },
      { where: "Remote.layerWorker", option: "concurrency" }
    )
    const client = yield* connect(options.redis, options.timeout, true)
    const { WaitingError, Worker } = yield* loadBullmq
    const buffers = makeBufferCache(client)
    const runBatch = makeBatchRunner(
      pool.slots,
      (spec) => resolveSpec(tasks, urls, options.allowInline, spec),
      buffers
    )
    // Batches running here, by id, as fibers of this layer's scope and context.
    const running = yield* FiberMap.make<string, Answered, ParallelError>()
    const runHere = yield* FiberMap.runtime(running)<never>()
    const cancelledBeforeStart = yield* listenForCancels(options, keys, running, buffers.release)
    // Set when this worker stops: batches it was running go back to the queue for another worker.
    let stopping = false
    /** Runs a batch; its failures become a reply too, so that the driver hears of them at once. */
    const answer = async ({ batch, id }: JobData): Promise<Reply | "interrupted"> => {
      const bytes = batch !== undefined ? Buffer.from(batch, "base64") : await client.getBuffer(keys.batch(id))
      const rejected = (message: string) => ({
        id,
        error: Protocol.encodeError(new RemoteFailure({ reason: "Rejected", message }))
      })
      if (bytes === null) return rejected(`the batch ${id} is missing from Redis`)
      const message = readWire(BatchMessage, bytes)
      if (Result.isFailure(message)) return rejected(`the batch ${id} is malformed: ${message.failure}`)
      if (cancelledBeforeStart(id)) return "interrupted"
      const fiber = runHere(id, runBatch(message.success))
      return answerOf(id, await new Promise((resolve) => fiber.addObserver(resolve)))
    }
    const bullWorker = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Worker(options.name, async (job, token) => {
          const decoded = Schema.decodeUnknownResult(JobData)(job.data)
          // A job that is not a driver's fails in the queue, with the reason.
          if (Result.isFailure(decoded)) {
            throw new Error(`job ${job.id} is not an effect-joblib batch: ${Protocol.describeIssue(decoded.failure)}`)
          }
          const reply = await answer(decoded.success)
          if (reply === "interrupted") {
            // Cancelled by its driver, which waits no more; or this worker is stopping: another one runs it.
            if (!stopping) return
            await job.moveToWait(token)
            throw new WaitingError()
          }
          const moved = "result" in reply && job.stalledCounter > 0 ? { ...reply, stalled: job.stalledCounter } : reply
          await sendReply(client, keys, decoded.success, moved, Math.floor(clock.currentTimeMillisUnsafe() / 1000))
        }, {
          connection: client,
          // One batch per thread: drivers keep as many in flight as the threads connected, so a batch waits in
          // the queue for the first free thread of any worker, never behind another on a busy one.
          concurrency: pool.slots.length,
          // Tasks run on threads, so the lock renewals on this loop are never starved by a long task.
          lockDuration: options.lockDuration,
          stalledInterval: options.stalledInterval,
          maxStalledCount: options.maxStalledCount
        })
      ),
      // Batches still running are interrupted and handed back to the queue, then the worker closes.
      (worker) =>
        Effect.gen(function*() {
          stopping = true
          const handing = yield* FiberMap.size(running)
          if (handing > 0) {
            yield* Effect.logInfo(
              `effect-joblib worker ${id}: stopping; handing ${handing} running batch${
                handing === 1 ? "" : "es"
              } back to the queue`
            )
          }
          yield* FiberMap.clear(running)
          yield* closing(() => worker.close())
        })
    )
    bullWorker.on("error", () => {})
    yield* request("the worker cannot start", () => bullWorker.waitUntilReady())
    // In the registry while it runs: drivers size their maps by the threads connected.
    yield* joinRegistry(client, keys, {
      id,
      host: Os.hostname(),
      pid: process.pid,
      threads: pool.slots.length,
      started: clock.currentTimeMillisUnsafe()
    })
    yield* Effect.logInfo(
      `effect-joblib worker ${id}: serving queue "${options.name}" on ${pool.slots.length} thread${
        pool.slots.length === 1 ? "" : "s"
      }, ${serverOf(options.redis)}; tasks from ${options.modules.join(", ") || "no module"}${
        options.allowInline ? "; inline functions allowed" : ""
      }`
    )
  })
