/**
 * What travels through Redis between a driver and its workers, as Schemas: anything can be pushed there, by
 * any version, so every message is decoded before it is trusted.
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as V8 from "node:v8"
import * as Hashing from "../../Hashing.ts"
import { canonicalSource } from "../parallel/closure.ts"
import * as Protocol from "../parallel/protocol.ts"

/** What a batch names: a Task (by name, with a hash of its source) or an inline function's source. */
export const Spec = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("task"), name: Schema.String, source: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("fn"), source: Schema.String })
])
export type Spec = typeof Spec.Type

/**
 * A batch as the queue carries it: the batch protocol's `run` request (see `protocol.ts`), with the work named
 * by a `Spec` that the worker resolves against its own modules, and big buffers stored once per map in Redis.
 */
export const BatchMessage = Schema.Struct({
  ...Protocol.batchFields,
  spec: Spec,
  /** Big buffers the items refer to, each stored once per map under `prefix + id`. */
  refs: Schema.UndefinedOr(Schema.Struct({ prefix: Schema.String, ids: Schema.Array(Schema.Int) }))
})
export type BatchMessage = typeof BatchMessage.Type

/** What a worker pushes to the driver's reply list when a batch ends: its raw results, or its typed error encoded. */
export const Reply = Schema.Union([
  Schema.Struct({
    id: Schema.String,
    result: Protocol.Encoded,
    /** What the batch's tasks reported with `Progress.report`: index in the batch, data. */
    progress: Schema.Array(Schema.Tuple([Schema.Int, Schema.Unknown])),
    /** How often the batch lost its worker before this one ran it (BullMQ's stalled count). */
    stalled: Schema.optional(Schema.Int),
    /** Which worker ran it: host, pid and thread (from 1), for a map's report and its spans. */
    worker: Schema.optional(Schema.Struct({ host: Schema.String, pid: Schema.Int, thread: Schema.Int }))
  }),
  Schema.Struct({ id: Schema.String, error: Schema.Unknown })
])
export type Reply = typeof Reply.Type

/** What a batch that ran on a worker answers, before its id is added. */
export type Answered = Omit<Extract<Reply, { result: unknown }>, "id">

/** Enough of a reply to tell which batch it answers. */
export const Named = Schema.Struct({ id: Schema.String })

/** A job only names its batch (stored under its batch key) and where to reply. */
export const JobData = Schema.Struct({
  id: Schema.String,
  replyTo: Schema.String,
  /** A small batch travels in its job, as base64 of its `node:v8` bytes; a big one is stored under its key. */
  batch: Schema.optional(Schema.String)
})
export type JobData = typeof JobData.Type

/** Batches up to this many bytes travel inside their job: a command less for the driver and two for the worker. */
export const INLINE_BATCH_BYTES = 16 * 1024

/** Buffers from this size are sent once per map rather than with every batch that uses them. */
export const BIG = 1024 * 1024

export const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** A message read from Redis, decoded with its Schema, or why not. */
export const readWire = <A>(schema: Schema.Codec<A, any>, bytes: Uint8Array): Result.Result<A, string> => {
  let value: unknown
  try {
    value = V8.deserialize(bytes)
  } catch (error) {
    return Result.fail(`not node:v8 data (${messageOf(error)})`)
  }
  return Result.mapError(Schema.decodeUnknownResult(schema)(value), Protocol.describeIssue)
}

/** A task's version: the hash of its `run` as tokens, so that formatting alone never counts as a change. */
export const hashSource = (source: string) => Effect.orDie(Hashing.hash(canonicalSource(source)))
