/**
 * Large binary data crossing a worker boundary, without a copy per task and
 * without detaching the caller's buffers:
 * - a buffer that several items use is copied once into a SharedArrayBuffer
 *   that every task reads in place;
 * - a buffer that only one item uses (when the whole input is known up front)
 *   is copied once and the copy moved to the worker, which is cheaper than
 *   shared memory;
 * - a buffer that already lives in shared memory is passed as it is.
 * Plain objects, arrays and Maps are walked; other values go to structured clone.
 */
import { mapBuffers } from "./buffers.js"

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

/** Prepares the big buffers of one map's items for workers. */
export class Sharer {
  readonly threshold: number
  /** Uses per buffer over the whole input, when it is known up front. */
  readonly counts: Map<ArrayBuffer, number> | undefined
  readonly copies = new WeakMap<ArrayBuffer, SharedArrayBuffer>()
  /** Copies to move with the next message. */
  private transfer: Array<ArrayBuffer> = []
  constructor(threshold: number, counts?: Map<ArrayBuffer, number>) {
    this.threshold = threshold
    this.counts = counts
  }

  private replace = (buffer: ArrayBuffer): ArrayBufferLike => {
    if (this.counts?.get(buffer) === 1) {
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
    return mapBuffers(value, this.threshold, this.replace, 0)
  }

  /** The buffers to move with the message that carries the values shared since the last call. */
  takeTransfer(): Array<ArrayBuffer> {
    const transfer = this.transfer
    this.transfer = []
    return transfer
  }
}
