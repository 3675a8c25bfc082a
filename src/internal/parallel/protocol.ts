/**
 * The batch protocol between a driver and its workers, described by Schema: one `run` request carries a whole
 * batch, and one `done` reply (with `tick`s before it when items have a timeout) carries its results as one
 * array, plus a status array only when something failed. Threads, processes and Redis are its transports.
 *
 * Threads and processes exchange these messages with a pool of the same library copy, so the types come from
 * the Schemas and nothing is checked per message. Redis carries them between machines and versions: there the
 * Remote worker decodes each batch, and the driver each reply, with these Schemas.
 */

import * as Schema from "effect/Schema"
import { ParallelError, RemoteFailure } from "../../ParallelError.ts"

/** Every typed error of a batch crosses a transport that carries data only (a Redis queue) as its family's Schema encodes it. */
const encodeWire = Schema.encodeSync(ParallelError)

/** The error as it crosses: without its `cause`, which need not survive a trip through Redis (or clone). */
export const encodeError = (error: ParallelError): unknown => {
  const { cause: _, ...encoded } = encodeWire(error) as { readonly cause?: unknown }
  return encoded
}

/** The typed error sent; what is not one becomes a `RemoteFailure` naming it. */
export const decodeError = (encoded: unknown): ParallelError => {
  const decoded = Schema.decodeUnknownExit(ParallelError)(encoded)
  if (decoded._tag === "Success") return decoded.value
  const text = typeof encoded === "string" ? encoded : JSON.stringify(encoded) ?? String(encoded)
  return new RemoteFailure({ reason: "Rejected", message: `a worker failed the batch with ${text}` })
}

// Items and values are whatever the task's codec made of them: only their container is checked, in O(1).
const Values = Schema.declare((u: unknown): u is ReadonlyArray<unknown> => Array.isArray(u), {
  expected: "an array"
})
const Index = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Millis = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const Buffer = Schema.declare((u: unknown): u is ArrayBuffer => u instanceof ArrayBuffer, {
  expected: "an ArrayBuffer"
})

/** What a worker runs: a Task found by module URL and name, or a function rebuilt from source. */
export const WorkSpec = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("task"), url: Schema.String, name: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("fn"), source: Schema.String })
])
export type WorkSpec = typeof WorkSpec.Type

/** The fields of a `run` request that every transport carries as they are (Remote's batch message too). */
export const batchFields = {
  items: Values,
  /** Input index of the first item. */
  start: Index,
  /** Stop the batch at its first failure. */
  failFast: Schema.Boolean,
  /**
   * Per-item time limit in milliseconds. When set the worker reports each item as it starts (a `tick`
   * carrying the results so far), and the pool keeps the time on its caller's Clock: it sends `timeout`
   * when an item's time is up, and replaces a worker stuck past the grace that follows.
   */
  timeout: Schema.optional(Millis),
  /** Report when each item started and ended, for a tracer's task spans. */
  timings: Schema.optional(Schema.Boolean),
  /** The batch's span: a task's own spans become its children, and its logs carry the ids. */
  parent: Schema.optional(Schema.Struct({ traceId: Schema.String, spanId: Schema.String }))
}

/** The request: run a batch. */
export const Run = Schema.Struct({
  _: Schema.Literal("run"),
  id: Index,
  key: Index,
  /** Present the first time a worker sees `key`. */
  spec: Schema.optional(WorkSpec),
  ...batchFields,
  /** The items hold references to buffers sent earlier with `buffers` (process workers). */
  refs: Schema.optional(Schema.Boolean)
})

export const ToWorker = Schema.Union([
  Run,
  Schema.Struct({ _: Schema.Literal("cancel"), id: Index }),
  /** Item `index` of batch `id` ran out of time on the Clock of the map's caller: stop waiting for it. */
  Schema.Struct({ _: Schema.Literal("timeout"), id: Index, index: Index }),
  /** Buffers that several items use, sent once per process and referred to by id. */
  Schema.Struct({ _: Schema.Literal("buffers"), entries: Schema.Array(Schema.Tuple([Index, Buffer])) }),
  Schema.Struct({ _: Schema.Literal("release"), ids: Schema.Array(Index) }),
  /** The pool is closing: release what the loaded tasks hold, then answer `closed`. */
  Schema.Struct({ _: Schema.Literal("close") })
])
export type ToWorker = typeof ToWorker.Type

export interface SerializedDefect {
  readonly name: string
  readonly message: string
  readonly stack: string | undefined
  /** The JavaScript error class it is an instance of (not a subclass): rebuilt as that class. */
  readonly builtin?: string | undefined
  readonly cause?: SerializedCause | undefined
  /** An AggregateError's errors. */
  readonly errors?: ReadonlyArray<SerializedCause> | undefined
}

/** A cause, or an AggregateError's member: an error, or a value as it is (primitives) or as text. */
export type SerializedCause = { readonly error: SerializedDefect } | { readonly value: unknown }

const SerializedCause: Schema.Codec<SerializedCause> = Schema.Union([
  Schema.Struct({ error: Schema.suspend((): Schema.Codec<SerializedDefect> => SerializedDefect) }),
  Schema.Struct({ value: Schema.Unknown })
])

/** A defect as it crosses a transport: rebuilt on the driver's side with the worker's stack. */
export const SerializedDefect: Schema.Codec<SerializedDefect> = Schema.Struct({
  name: Schema.String,
  message: Schema.String,
  stack: Schema.UndefinedOr(Schema.String),
  builtin: Schema.optional(Schema.String),
  cause: Schema.optional(SerializedCause),
  errors: Schema.optional(Schema.Array(SerializedCause))
})

/** Results of consecutive items of a batch. */
const partialFields = {
  /** Per item: the encoded success, encoded typed failure, milliseconds for a timeout, or a SerializedDefect. */
  values: Values,
  /** Absent when every item succeeded. */
  status: Schema.optional(Schema.Uint8Array)
}
export type Partial = typeof Partial.Type
const Partial = Schema.Struct(partialFields)

/** What a batch ended with, as every reply carries it. */
const endFields = {
  /** A task interrupted itself: the items from `values.length` on did not finish. */
  interrupted: Schema.Boolean,
  /** Milliseconds the worker spent on the batch. */
  duration: Millis,
  /** When asked: each item's start and end, in epoch milliseconds, in pairs from the batch's first item. */
  timings: Schema.optional(Schema.Array(Schema.Finite))
}

export const FromWorker = Schema.Union([
  Schema.Struct({ _: Schema.Literal("ready") }),
  Schema.Struct({ _: Schema.Literal("closed") }),
  /** Item `index` of batch `id` starts now; the values are those of the items finished since the last tick. */
  Schema.Struct({ _: Schema.Literal("tick"), id: Index, index: Index, ...partialFields }),
  Schema.Struct({
    _: Schema.Literal("done"),
    id: Index,
    ...partialFields,
    ...endFields,
    /** Bytes the worker holds after the batch: heap for a thread, resident set for a process. */
    memory: Schema.Finite
  }),
  /** The module of work `key` has loaded: its batches run user code from now on, not the import. */
  Schema.Struct({ _: Schema.Literal("loaded"), key: Index }),
  /** A task reported progress of its own. */
  Schema.Struct({ _: Schema.Literal("progress"), id: Index, index: Index, data: Schema.Unknown }),
  Schema.Struct({
    _: Schema.Literal("loadFailed"),
    id: Index,
    message: Schema.String,
    /** The task's module started a program at its top level (no `import.meta.main` guard). */
    unguarded: Schema.optional(Schema.Boolean)
  })
])
export type FromWorker = typeof FromWorker.Type

/** A batch's results as the driver receives them, over any transport. */
export const Encoded = Schema.Struct({
  values: Values,
  /** Per item (absent when every one succeeded): success, typed failure, defect, timeout. */
  status: Schema.UndefinedOr(Schema.Uint8Array),
  ...endFields,
  /**
   * The item at this batch index overran its timeout in a worker that would not yield, so the worker was
   * replaced: the values stop there (its own value is the elapsed milliseconds) and later items did not run.
   */
  stoppedAt: Schema.optional(Index)
})
export type Encoded = typeof Encoded.Type

/** What a Schema refused, in one line for an error message. */
export const describeIssue = (error: Schema.SchemaError): string => error.message.replace(/\s+/g, " ")
