/**
 * Large binary data crossing a worker boundary, without a copy per task and,
 * unless the map says `transfer: true`, without detaching the caller's buffers:
 * - a buffer that several items use is copied once into a SharedArrayBuffer
 *   that every task reads in place;
 * - a buffer that only one item uses (when the whole input is known up front)
 *   is copied once and the copy moved to the worker, which is cheaper than
 *   shared memory;
 * - a buffer that already lives in shared memory is passed as it is;
 * - with `transfer: true`, a buffer no other item needs is moved itself, with no copy.
 * Plain objects, arrays and Maps are walked; other values go to structured clone.
 *
 * Worker processes share no memory: there a buffer that several items use
 * (or any big buffer, when the input is not known up front) is sent to each
 * process once and the items carry a reference to it.
 */
import { makeRef, mapBuffers } from "./workerRuntime.js"

/** How many items use each big non-shared buffer of `items`. */
export const countBuffers = (items: ReadonlyArray<unknown>, threshold: number): Map<ArrayBuffer, number> => {
  const counts = new Map<ArrayBuffer, number>()
  let seen: Set<ArrayBuffer> | undefined
  const count = (buffer: ArrayBuffer) => {
    if (!seen!.has(buffer)) {
      seen!.add(buffer)
      counts.set(buffer, (counts.get(buffer) ?? 0) + 1)
    }
    return buffer
  }
  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    if (typeof item !== "object" || item === null) continue
    seen = new Set()
    mapBuffers(item, threshold, count, 0)
  }
  return counts
}

let nextRef = 1

/** With `transfer`, a buffer that an earlier batch moved was met again. */
export class MovedTwice extends Error {
  constructor() {
    super(
      "transfer: an ArrayBuffer that an earlier batch moved to a worker (and so detached) was met again; " +
        "give each item of a stream its own buffer, or leave transfer off"
    )
  }
}

/** Prepares the big buffers of one map's items for workers. */
export class Sharer {
  readonly threshold: number
  /** Uses per buffer over the whole input, when it is known up front. */
  readonly counts: Map<ArrayBuffer, number> | undefined
  /** Workers are processes: refer to buffers instead of sharing memory. */
  readonly isolated: boolean
  readonly copies = new WeakMap<ArrayBuffer, SharedArrayBuffer>()
  /** Copies to move with the next message. */
  private transfer: Array<ArrayBuffer> = []
  /** Reference ids by buffer, and every buffer referred to, for process workers. */
  private readonly ids = new Map<ArrayBufferLike, number>()
  private readonly held = new Map<number, ArrayBuffer>()
  /** Buffers the values shared since the last `takeRefs` refer to. */
  private refs: Map<number, ArrayBuffer> | undefined
  /** The map may move (detach) the caller's buffers instead of copying them. */
  readonly move: boolean
  constructor(threshold: number, counts?: Map<ArrayBuffer, number>, isolated = false, move = false) {
    this.threshold = threshold
    this.counts = counts
    this.isolated = isolated
    this.move = move
  }

  private refer = (buffer: ArrayBufferLike, view: ArrayBufferView | undefined): unknown => {
    if (buffer instanceof ArrayBuffer && this.counts?.get(buffer) === 1) return buffer
    let id = this.ids.get(buffer)
    if (id === undefined) {
      id = nextRef++
      this.ids.set(buffer, id)
      // Shared memory cannot cross to a process: send a plain copy of it.
      this.held.set(id, buffer instanceof ArrayBuffer ? buffer : new Uint8Array(buffer).slice().buffer)
    }
    ;(this.refs ??= new Map()).set(id, this.held.get(id)!)
    return makeRef(id, view)
  }

  private replace = (buffer: ArrayBuffer): ArrayBufferLike => {
    const uses = this.counts?.get(buffer)
    // Moved when no other item needs it: used once in an array input, or met in a stream.
    if (this.move && (uses === undefined || uses === 1)) {
      if (buffer.detached) throw new MovedTwice()
      if (!this.transfer.includes(buffer)) this.transfer.push(buffer)
      return buffer
    }
    if (uses === 1) {
      const moved = buffer.slice(0)
      this.transfer.push(moved)
      return moved
    }
    let copy = this.copies.get(buffer)
    if (copy === undefined) {
      copy = new SharedArrayBuffer(buffer.byteLength)
      new Uint8Array(copy).set(new Uint8Array(buffer))
      this.copies.set(buffer, copy)
    }
    return copy
  }

  /** Returns `value` itself when nothing in it needs preparing. */
  share(value: unknown): unknown {
    // A moved buffer is empty: too small for the threshold, so it is looked for on its own.
    if (this.move && !this.isolated) {
      mapBuffers(value, 0, (buffer) => {
        if (buffer.detached) throw new MovedTwice()
        return buffer
      }, 0)
    }
    return this.isolated
      ? mapBuffers(value, this.threshold, this.refer, 0, true)
      : mapBuffers(value, this.threshold, this.replace, 0)
  }

  /** The buffers that the values shared since the last call refer to, by id (process workers). */
  takeRefs(): ReadonlyMap<number, ArrayBuffer> | undefined {
    const refs = this.refs
    this.refs = undefined
    return refs
  }

  /** Ids of every buffer referred to so far, for workers to drop when the map ends. */
  referenced(): Array<number> {
    return [...this.held.keys()]
  }

  /** The buffers to move with the message that carries the values shared since the last call. */
  takeTransfer(): Array<ArrayBuffer> {
    const transfer = this.transfer
    this.transfer = []
    return transfer
  }
}

/** Shares the big buffers of a batch; returns the batch itself when it holds none. */
export const shareAll = (sharer: Sharer, items: ReadonlyArray<unknown>): ReadonlyArray<unknown> => {
  let out: Array<unknown> | undefined
  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    if (item === null || typeof item !== "object") continue
    const shared = sharer.share(item)
    if (shared !== item) (out ??= items.slice())[i] = shared
  }
  return out ?? items
}
