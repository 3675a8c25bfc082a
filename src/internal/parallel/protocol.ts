/**
 * The lean batched wire protocol between a pool and its workers. One message
 * carries a whole batch; results come back as one array plus a status array
 * only when something failed.
 */

import * as Schema from "effect/Schema"
import {
  InvalidOptions,
  type ParallelError,
  RemoteFailure,
  TaskModuleError,
  TaskNotFound,
  TaskTimeout,
  UnshippableFunction,
  WorkerCrashed
} from "../../ParallelError.ts"

/** Every typed error of a batch, as it crosses a transport that carries data only (a Redis queue): the same class on both sides. */
const WireError = Schema.Union([
  InvalidOptions,
  UnshippableFunction,
  TaskNotFound,
  TaskModuleError,
  WorkerCrashed,
  TaskTimeout,
  RemoteFailure
])

export const encodeError: (error: ParallelError) => unknown = Schema.encodeSync(WireError)

/** The typed error sent; what is not one becomes a `RemoteFailure` naming it. */
export const decodeError = (encoded: unknown): ParallelError => {
  const decoded = Schema.decodeUnknownExit(WireError)(encoded)
  if (decoded._tag === "Success") return decoded.value
  const text = typeof encoded === "string" ? encoded : JSON.stringify(encoded) ?? String(encoded)
  return new RemoteFailure({ reason: "Rejected", message: `a worker failed the batch with ${text}` })
}

/** What a worker runs: a Task found by module URL and name, or a function rebuilt from source. */
export type WorkSpec =
  | { readonly kind: "task"; readonly url: string; readonly name: string }
  | { readonly kind: "fn"; readonly source: string }

export type ToWorker =
  | {
    readonly _: "run"
    readonly id: number
    readonly key: number
    /** Present the first time a worker sees `key`. */
    readonly spec?: WorkSpec | undefined
    readonly items: ReadonlyArray<unknown>
    /** Input index of the first item. */
    readonly start: number
    /** Stop the batch at its first failure. */
    readonly failFast: boolean
    /**
     * Per-item time limit in milliseconds. When set the worker reports each item as it starts
     * (a `tick` carrying the results so far), so that the pool can tell a stuck item apart.
     */
    readonly timeout?: number | undefined
    /** The items hold references to buffers sent earlier with `buffers` (process workers). */
    readonly refs?: boolean | undefined
    /** Report when each item started and ended, for a tracer's task spans. */
    readonly timings?: boolean | undefined
    /** The batch's span: a task's own spans become its children, and its logs carry the ids. */
    readonly parent?: { readonly traceId: string; readonly spanId: string } | undefined
  }
  | { readonly _: "cancel"; readonly id: number }
  /** Buffers that several items use, sent once per process and referred to by id. */
  | { readonly _: "buffers"; readonly entries: ReadonlyArray<readonly [number, ArrayBuffer]> }
  | { readonly _: "release"; readonly ids: ReadonlyArray<number> }
  /** The pool is closing: release what the loaded tasks hold, then answer `closed`. */
  | { readonly _: "close" }

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

/** Results of consecutive items of a batch. */
export interface Partial {
  /** Per item: the encoded success, encoded typed failure, milliseconds for a timeout, or a SerializedDefect. */
  readonly values: ReadonlyArray<unknown>
  /** Absent when every item succeeded. */
  readonly status?: Uint8Array | undefined
}

export type FromWorker =
  | { readonly _: "ready" }
  | { readonly _: "closed" }
  | (Partial & {
    /** Item `index` of batch `id` starts now; the values are those of the items finished since the last tick. */
    readonly _: "tick"
    readonly id: number
    readonly index: number
  })
  | (Partial & {
    readonly _: "done"
    readonly id: number
    readonly interrupted: boolean
    /** Milliseconds the worker spent on the batch. */
    readonly duration: number
    /** Bytes the worker holds after the batch: heap for a thread, resident set for a process. */
    readonly memory: number
    /** When asked: each item's start and end, in epoch milliseconds, in pairs from the batch's first item. */
    readonly timings?: ReadonlyArray<number> | undefined
  })
  | {
    /** A task reported progress of its own. */
    readonly _: "progress"
    readonly id: number
    readonly index: number
    readonly data: unknown
  }
  | {
    readonly _: "loadFailed"
    readonly id: number
    readonly message: string
    /** The task's module started a program at its top level (no `import.meta.main` guard). */
    readonly unguarded?: boolean | undefined
  }
