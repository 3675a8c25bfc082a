/**
 * The lean batched wire protocol between a pool and its workers. One message
 * carries a whole batch; results come back as one array plus a status array
 * only when something failed.
 */

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
  }
  | { readonly _: "cancel"; readonly id: number }

export { CANCEL, Status } from "./wire.js"

export interface SerializedDefect {
  readonly name: string
  readonly message: string
  readonly stack: string | undefined
}

export type FromWorker =
  | { readonly _: "ready" }
  | {
    readonly _: "done"
    readonly id: number
    /** Per item: the encoded success, encoded typed failure, or a SerializedDefect. */
    readonly values: ReadonlyArray<unknown>
    /** Absent when every item succeeded. Shorter than the batch when it stopped early. */
    readonly status?: Uint8Array | undefined
    readonly interrupted: boolean
    /** Milliseconds the worker spent on the batch. */
    readonly duration: number
  }
  | {
    readonly _: "loadFailed"
    readonly id: number
    readonly message: string
  }
