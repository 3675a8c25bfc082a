/**
 * The driver side of `Remote.layer`: a `Backend` whose batches go out as BullMQ jobs and come back through the
 * driver's own reply list. It keeps as many batches in flight as the workers connected have threads, and a
 * few more, so that a thread that finishes takes the next batch in the same call to Redis.
 */
import type * as BullMQ from "bullmq"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as IORedis from "ioredis"
import * as Crypto from "node:crypto"
import * as V8 from "node:v8"
import type { ParallelError, RemoteFailure } from "../../ParallelError.ts"
import { makeSlotCounts } from "../parallel/outcome.ts"
import type { Shipment } from "../parallel/pool.ts"
import * as Protocol from "../parallel/protocol.ts"
import type { Backend, Runner } from "../parallel/runner.ts"
import { countBuffers, Sharer } from "../parallel/share.ts"
import { transportRun } from "../parallel/transport.ts"
import type { Work } from "../parallel/work.ts"
import { connect, onServerTime, openQueue, type RedisUrl, request } from "./connection.ts"
import { DAY, type Keys, keysOf } from "./keys.ts"
import { type InFlight, makeReplyReader } from "./replies.ts"
import { awaitWorker, type Capacity, watchBatches, watchCapacity, watchConnections } from "./watch.ts"
import { type BatchMessage, BIG, hashSource, INLINE_BATCH_BYTES, type JobData, type Reply, type Spec } from "./wire.ts"

/**
 * Each batch costs a few milliseconds of CPU between the driver, Redis and the worker (see the README's
 * "Scaling"): automatic batching makes batches of about a second once it knows how long an item takes, so
 * that the cost is a fraction of a percent, and splits the tail of the input into batches of no less than
 * 100 ms, so that workers finish close together while the cost stays a few percent.
 */
const TARGET_BATCH_MILLIS = 1000
const MIN_BATCH_MILLIS = 250

/** One batch waits in the queue for every this many threads connected. */
const SPARE_PER = 8

export interface DriverOptions {
  readonly redis: RedisUrl
  readonly name: string
  /** Milliseconds to wait for Redis to answer, and for a lost connection to come back. */
  readonly timeout: number
  /** Batches in flight at most. */
  readonly cap: number
  /** Milliseconds a map waits for a worker to connect. */
  readonly waitForWorker: number
}

interface Connected {
  readonly client: IORedis.Redis
  readonly queue: BullMQ.Queue
  readonly keys: Keys
  readonly replyTo: string
  readonly inFlight: InFlight
  readonly lost: () => RemoteFailure | undefined
}

/** Sends one batch through the queue and waits for its worker's raw results. */
const send = (
  at: Connected,
  message: BatchMessage,
  onProgress: Shipment["onProgress"],
  onMoved: Shipment["onMoved"],
  onRanBy: Shipment["onRanBy"]
) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const lost = at.lost()
    if (lost !== undefined) return Effect.fail(lost)
    const { client, keys, queue } = at
    const id = Crypto.randomUUID()
    const replied = Deferred.makeUnsafe<Reply, RemoteFailure>()
    // Looked for one by one only after a while: replies and the failed set cover the rest.
    at.inFlight.set(id, { replied, checkedAt: now, missing: 0 })
    const bytes = V8.serialize(message)
    const inline = bytes.length <= INLINE_BATCH_BYTES
    const job: JobData = inline
      ? { id, replyTo: at.replyTo, batch: bytes.toString("base64") }
      : { id, replyTo: at.replyTo }
    // Kept a while when failed, so that the watcher can read why the queue failed it.
    const options = { jobId: id, removeOnComplete: true, removeOnFail: { age: 3600 } }
    // A big batch's bytes and its job go out on one connection at once: Redis stores them before the job.
    return request("sending a batch", (): Promise<unknown> =>
      inline
        ? queue.add("batch", job, options)
        : Promise.all([client.set(keys.batch(id), bytes, "PX", DAY), queue.add("batch", job, options)])).pipe(
        Effect.andThen(Deferred.await(replied)),
        // Interrupted: a batch still waiting is taken off the queue, so no worker runs it later, and one
        // already running is cancelled on its worker.
        Effect.onInterrupt(() =>
          Effect.promise(() =>
            Promise.all([
              queue.remove(id).catch(() => {}),
              client.publish(keys.cancel, id).catch(() => 0),
              client.del(keys.batch(id)).catch(() => 0)
            ])
          )
        ),
        Effect.ensuring(Effect.sync(() => at.inFlight.delete(id))),
        Effect.flatMap((reply) => {
          if ("error" in reply) return Effect.fail(Protocol.decodeError(reply.error))
          for (const [index, data] of reply.progress) onProgress?.(index, data)
          if ((reply.stalled ?? 0) > 0) onMoved?.()
          if (reply.worker !== undefined) {
            const { host, pid, thread } = reply.worker
            onRanBy?.({ name: `${host} pid ${pid} thread ${thread}`, host, pid, thread })
          }
          return Effect.succeed(reply.result)
        })
      )
  })

/**
 * Big buffers several items use go to Redis once per map, under a prefix of the map's own; the items carry
 * references to them. They are deleted, and the workers told to drop their copies, when the map ends.
 */
const bufferUploader = (client: IORedis.Redis, keys: Keys) =>
  Effect.gen(function*() {
    const refsPrefix = keys.newBufferPrefix()
    const uploaded = new Set<number>()
    yield* Effect.addFinalizer(() =>
      uploaded.size === 0 ? Effect.void : Effect.ignore(request("releasing buffers", async () => {
        await client.del(...[...uploaded].map((id) => refsPrefix + id))
        await client.publish(keys.release, refsPrefix)
      }))
    )
    return (refs: ReadonlyMap<number, ArrayBuffer> | undefined) =>
      Effect.gen(function*() {
        if (refs === undefined) return undefined
        for (const [id, buffer] of refs) {
          if (uploaded.has(id)) continue
          uploaded.add(id)
          yield* request("sending a buffer", () => client.set(refsPrefix + id, Buffer.from(buffer), "PX", DAY))
        }
        return { prefix: refsPrefix, ids: [...refs.keys()] }
      })
  })

/** The runner of one map: its batches sent as queue jobs, within the capacity connected. */
const prepareMap = <I, A, E>(
  at: Connected,
  capacity: Capacity,
  options: DriverOptions,
  batchStates: Map<string, WeakMap<object, unknown>>,
  work: Work<I, A, E>,
  items: ReadonlyArray<I> | undefined
): Effect.Effect<Runner<I, A, E>, ParallelError, Scope.Scope> =>
  Effect.gen(function*() {
    const { spec: shipped } = yield* work.ship
    const spec: Spec = shipped.kind === "fn"
      ? { kind: "fn", source: shipped.source }
      : { kind: "task", name: shipped.name, source: yield* hashSource(work.source) }
    // A warm backend starts each map of the same work from the batch size the last one reached.
    const batchKey = spec.kind === "fn" ? `fn:${spec.source}` : `task:${spec.name}`
    yield* awaitWorker(capacity, options.name, options.waitForWorker)
    const counts = work.mayShare && items !== undefined ? countBuffers(items, BIG) : undefined
    const sharer = new Sharer(BIG, counts, true)
    const upload = yield* bufferUploader(at.client, at.keys)
    const run = transportRun(
      work,
      sharer,
      (_slot, shipment) =>
        Effect.flatMap(upload(shipment.refs), (refs) =>
          send(
            at,
            {
              spec,
              items: shipment.items,
              start: shipment.start,
              failFast: shipment.failFast,
              timeout: shipment.timeout,
              timings: shipment.timings === true ? true : undefined,
              parent: shipment.parent,
              refs
            },
            shipment.onProgress,
            shipment.onMoved,
            shipment.onRanBy
          )),
      () => "remote worker",
      undefined
    )
    const { cap } = options
    const { counted, outstanding, settled } = makeSlotCounts(cap)
    return {
      slots: cap,
      // A few more than the threads: a thread that finishes a batch takes a waiting one in the same call to
      // Redis, where it would otherwise wait for this driver to hear of it and send another.
      capacity: () => Math.min(cap, capacity.connected() + Math.ceil(capacity.connected() / SPARE_PER)),
      outstanding,
      settled: Effect.raceFirst(settled, capacity.changed.wait),
      batchState: batchStates.get(batchKey) ?? batchStates.set(batchKey, new WeakMap()).get(batchKey),
      restarts: () => 0,
      minBatchMillis: MIN_BATCH_MILLIS,
      targetBatchMillis: TARGET_BATCH_MILLIS,
      run: (slot, items, start, runOptions) => counted(slot, run(slot, items, start, runOptions))
    } satisfies Runner<I, A, E>
  })

/** Connects to the queue for the life of the scope, starts the watchers, and returns the backend. */
export const makeDriver = (options: DriverOptions): Effect.Effect<Backend, RemoteFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const keys = keysOf(options.name)
    const client = yield* connect(options.redis, options.timeout, false)
    const replies = yield* connect(options.redis, options.timeout, true)
    const queue = yield* openQueue(options.name, client)
    const replyTo = keys.newReplyList()
    const inFlight: InFlight = new Map()
    // A reply that lands after its batch was interrupted here (a cancel a moment too late) goes with the driver.
    yield* Effect.addFinalizer(() => Effect.promise(() => client.del(replyTo).catch(() => 0)))
    yield* Effect.forkScoped(onServerTime(Effect.forever(makeReplyReader(replies, replyTo, inFlight))))
    const capacity = yield* watchCapacity(client, keys)
    const { lost } = yield* watchConnections([client, replies], options.timeout, inFlight)
    yield* watchBatches(client, queue, keys, inFlight)
    const at: Connected = { client, queue, keys, replyTo, inFlight, lost }
    const batchStates = new Map<string, WeakMap<object, unknown>>()
    return {
      name: "remote",
      /** The capacity connected now (at least 1), within `slots`. */
      get workers() {
        return Math.max(1, Math.min(options.cap, capacity.connected()))
      },
      prepare: (work, items) => prepareMap(at, capacity, options, batchStates, work, items)
    } satisfies Backend
  })
