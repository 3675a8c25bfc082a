/**
 * The Remote types the public module shows, apart from the modules that use them: these import neither
 * bullmq nor ioredis, so that a program typechecking `effect-joblib`'s declarations needs neither optional
 * package.
 */
import type * as Redacted from "effect/Redacted"

/** A Redis server's URL, or a Redacted one. */
export type RedisUrl = string | Redacted.Redacted<string>

/**
 * A connected worker, as its entry says (public as `Remote.WorkerInfo`).
 *
 * @inline
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

/** A queue's state at one moment. */
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
