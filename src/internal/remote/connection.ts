/**
 * The connections a driver, a worker or the monitor holds: Redis clients and BullMQ objects for the life of a
 * scope, each closed with a bound on the wait, since with Redis gone a close would wait forever.
 */
import type * as BullMQ from "bullmq"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as IORedis from "ioredis"
import { RemoteFailure } from "../../ParallelError.ts"
import { importOptional } from "../optional.ts"
import { connectRedis } from "../redis.ts"
import { messageOf } from "./wire.ts"

export type { RedisUrl } from "./types.ts"
import type { RedisUrl } from "./types.ts"

/** A Redis connection for the life of the scope; `blocking` ones (for BullMQ's workers and events) wait instead of failing. */
export const connect = (redis: RedisUrl, timeout: number, blocking: boolean) =>
  connectRedis({
    url: Redacted.isRedacted(redis) ? Redacted.value(redis) : redis,
    feature: "Remote",
    install: "bullmq ioredis",
    timeout,
    mode: blocking ? "blocking" : "failFast"
  }).pipe(Effect.mapError((failure) => new RemoteFailure(failure)))

export const loadBullmq = importOptional<typeof BullMQ>("bullmq", "Remote", "bullmq ioredis").pipe(
  Effect.mapError((message) => new RemoteFailure({ reason: "MissingDependency", message }))
)

/** Closes a BullMQ object, giving up after a few seconds. */
export const closing = (close: () => Promise<unknown>) =>
  Effect.promise(() => close().catch(() => {})).pipe(Effect.timeoutOption(3000), Effect.asVoid)

/** Queue `name` on `client` for the life of the scope. */
export const openQueue = (name: string, client: IORedis.Redis) =>
  Effect.flatMap(loadBullmq, ({ Queue }) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const queue = new Queue(name, { connection: client })
        queue.setMaxListeners(0)
        // Failures surface as typed errors of the calls; without a listener BullMQ prints each one.
        queue.on("error", () => {})
        return queue
      }),
      (queue) => closing(() => queue.close())
    ))

/** A call to Redis whose failure is the typed `Unreachable`, saying what was being done. */
export const request = <A>(what: string, run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (error) =>
      new RemoteFailure({ reason: "Unreachable", message: `${what}: ${messageOf(error)}`, cause: error })
  })

/**
 * Runs `effect` on real time, whatever Clock the layer was built with: the loops that watch the Redis server
 * (replies, capacity, connections, the queue's failed batches, a worker's heartbeat) keep pace with a server
 * whose keys expire on its own clock. What a map decides about its caller's time (the wait for a worker)
 * still follows the caller's Clock, a `TestClock` included.
 */
export const onServerTime = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(effect, Clock.Clock, Clock.Clock.defaultValue())
