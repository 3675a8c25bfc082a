/**
 * A queue seen from Redis, as `effect-joblib status` shows it: the registry's workers, BullMQ's counts, the
 * batches whose lock lapsed, and the per-second completion counters the workers keep.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { RemoteFailure } from "../../ParallelError.ts"
import { connect, openQueue, request } from "./connection.ts"
import { keysOf } from "./keys.ts"
import { readRegistry, threadsOf } from "./registry.ts"
import type { RedisUrl } from "./types.ts"
import type { Status } from "./types.ts"

export type { Status } from "./types.ts"

/** Connects to queue `name` for the life of the scope; the effect returned reads its status each time it runs. */
export const makeMonitor = (
  options: { readonly redis: RedisUrl; readonly name: string; readonly timeout: number }
): Effect.Effect<Effect.Effect<Status, RemoteFailure>, RemoteFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const { name } = options
    const keys = keysOf(name)
    const client = yield* connect(options.redis, options.timeout, false)
    const queue = yield* openQueue(name, client)
    return Effect.gen(function*() {
      const workers = yield* readRegistry(client, keys)
      const second = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      return yield* request("reading the queue", async () => {
        const counts = await queue.getJobCounts("wait", "prioritized", "active", "failed")
        const active = await client.lrange(queue.toKey("active"), 0, -1)
        const locks = active.length === 0 ? 0 : await client.exists(...active.map((id) => queue.toKey(`${id}:lock`)))
        const pipeline = client.pipeline()
        for (let i = 0; i < 60; i++) pipeline.hmget(keys.done(second - i), "items", "batches")
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
          capacity: threadsOf(workers),
          waiting: (counts.wait ?? 0) + (counts.prioritized ?? 0),
          running: counts.active ?? 0,
          stalled: active.length - locks,
          failed: counts.failed ?? 0,
          throughput: { items: items / 60, batches: batches / 60 }
        } satisfies Status
      })
    })
  })
