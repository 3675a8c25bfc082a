/**
 * The queue's registry of workers: each one names itself in a set and keeps an entry that expires unless it
 * is renewed, so that a worker that dies drops out on its own. Drivers size their maps by it; the monitor
 * lists it.
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as IORedis from "ioredis"
import { closing, onServerTime, request } from "./connection.ts"
import type { Keys } from "./keys.ts"

export type { WorkerInfo } from "./types.ts"
import type { WorkerInfo } from "./types.ts"

/** A worker renews its entry this often; an entry not renewed within `WORKER_TTL` lapses. */
const HEARTBEAT_MILLIS = 1000
const WORKER_TTL = 3000

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
 * The workers connected to a queue now; lapsed entries are removed on the way, and entries that are not a
 * worker's are left out.
 */
export const readRegistry = (client: IORedis.Redis, keys: Keys) =>
  request("reading the workers", async () => {
    const ids = await client.smembers(keys.workers)
    if (ids.length === 0) return []
    const entries = await client.mget(...ids.map(keys.worker))
    const lapsed = ids.filter((_, i) => entries[i] === null)
    if (lapsed.length > 0) await client.srem(keys.workers, ...lapsed)
    return entries.flatMap((entry) => (entry === null ? [] : parseEntry(entry)))
  })

/** The threads of the workers in `workers`: the batches they run at once. */
export const threadsOf = (workers: ReadonlyArray<WorkerInfo>) =>
  workers.reduce((sum, worker) => sum + worker.threads, 0)

/**
 * Puts `info` in the registry for the life of the scope, renewed on real time, and takes it out first when the
 * scope closes.
 */
export const joinRegistry = (client: IORedis.Redis, keys: Keys, info: WorkerInfo) =>
  Effect.gen(function*() {
    const entry = keys.worker(info.id)
    // Bounded waits: this connection waits for a server that is away rather than failing.
    const register = Effect.promise(() =>
      client.multi().sadd(keys.workers, info.id).set(entry, JSON.stringify(info), "PX", WORKER_TTL).exec()
        .catch(() => undefined)
    ).pipe(Effect.timeoutOption(WORKER_TTL))
    yield* register
    yield* Effect.addFinalizer(() => closing(() => client.multi().srem(keys.workers, info.id).del(entry).exec()))
    yield* Effect.forkScoped(onServerTime(Effect.repeat(register, Schedule.spaced(HEARTBEAT_MILLIS))))
  })
