/**
 * A driver's watchers, one each for the whole layer rather than fibers per batch: the workers' capacity, the
 * connections to Redis, and the batches the queue gave up on. Each fails or wakes the batches in flight
 * through their Deferreds.
 */
import type * as BullMQ from "bullmq"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as IORedis from "ioredis"
import { RemoteFailure } from "../../ParallelError.ts"
import { makeSettled } from "../parallel/outcome.ts"
import { onServerTime } from "./connection.ts"
import type { Keys } from "./keys.ts"
import { readRegistry, threadsOf } from "./registry.ts"
import type { InFlight } from "./replies.ts"

/** A driver reads the registry this often, so that a worker that joins mid-map gets batches within a second. */
const CAPACITY_POLL_MILLIS = 500

/** How far back (milliseconds) the watcher reads the queue's failed set, and how long a batch is in flight before
 * it is looked for one by one. */
const FAILED_WINDOW_MILLIS = 60_000
const MISSING_CHECK_MILLIS = 5000

/**
 * The threads of the workers in the registry, read now and then every half second. A change wakes every map
 * waiting for a slot, so that a worker that joins mid-map gets batches at once.
 */
export const watchCapacity = (client: IORedis.Redis, keys: Keys) =>
  Effect.gen(function*() {
    let connected = 0
    const changed = makeSettled()
    const refresh = Effect.flatMap(Effect.option(readRegistry(client, keys)), (workers) =>
      Effect.sync(() => {
        if (workers._tag === "None") return
        const threads = threadsOf(workers.value)
        if (threads !== connected) {
          connected = threads
          changed.notify()
        }
      }))
    // Read once now, so that a map started right after the layer is built knows the workers already connected.
    yield* refresh
    yield* Effect.forkScoped(onServerTime(Effect.repeat(refresh, Schedule.spaced(CAPACITY_POLL_MILLIS))))
    return { connected: () => connected, changed, refresh }
  })

export type Capacity = Effect.Success<ReturnType<typeof watchCapacity>>

/** Waits until a worker is connected to the queue, or fails after `waitMillis` saying how to start one. */
export const awaitWorker = (capacity: Capacity, queue: string, waitMillis: number) =>
  Effect.suspend(() => capacity.connected() > 0 ? Effect.void : capacity.changed.wait).pipe(
    Effect.repeat({ until: () => capacity.connected() > 0 }),
    // A worker may have joined since the watcher last looked: look once now, before waiting for it.
    (wait) => Effect.suspend(() => capacity.connected() > 0 ? Effect.void : Effect.andThen(capacity.refresh, wait)),
    Effect.timeoutOrElse({
      duration: waitMillis,
      orElse: () =>
        Effect.fail(
          new RemoteFailure({
            reason: "NoWorker",
            message: `no worker is connected to the queue "${queue}" after ${waitMillis} ms; start one, e.g. ` +
              `Remote.layerWorker({ redis, queue: "${queue}", modules: ["./tasks.ts"] })`
          })
        )
    }),
    Effect.asVoid
  )

/**
 * Watches both connections: once either has been down for longer than `timeout`, every batch in flight fails,
 * and so does every batch sent until they are back (`lost()`).
 */
export const watchConnections = (
  connections: ReadonlyArray<IORedis.Redis>,
  timeout: number,
  inFlight: InFlight
) =>
  Effect.gen(function*() {
    let lost: RemoteFailure | undefined
    let downSince: number | undefined
    const look = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        if (connections.every((connection) => connection.status === "ready")) {
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
    yield* Effect.forkScoped(onServerTime(Effect.repeat(look, Schedule.spaced(Math.min(250, timeout)))))
    return { lost: () => lost }
  })

/**
 * Watches the batches in flight for ones the queue gave up on. BullMQ fails a batch that stalled (its worker
 * died) more than `maxStalledCount` times: the queue's failed set, read since a minute before the last look
 * (workers' clocks may differ), names it. A batch that left the queue some other way is looked for one by
 * one, and only once it has been in flight for a while. Either fails with why; its stored bytes go too.
 */
export const watchBatches = (client: IORedis.Redis, queue: BullMQ.Queue, keys: Keys, inFlight: InFlight) => {
  const giveUp = (id: string, message: string) =>
    Effect.sync(() => {
      const batch = inFlight.get(id)
      if (batch === undefined) return
      client.del(keys.batch(id)).catch(() => 0)
      Deferred.doneUnsafe(batch.replied, Effect.fail(new RemoteFailure({ reason: "Rejected", message })))
    })
  const failedKey = queue.toKey("failed")
  const look = Effect.gen(function*() {
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
  return Effect.forkScoped(onServerTime(Effect.repeat(look, Schedule.spaced(1000))))
}
