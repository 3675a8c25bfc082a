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

const isPlainObject = (u: object): boolean => {
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

const MAX_DEPTH = 8

/**
 * Rebuilds `value` with every big non-shared buffer replaced by `replace(buffer)`,
 * copying containers only along changed paths; returns `value` itself when nothing changed.
 */
const mapBuffers = (
  value: unknown,
  threshold: number,
  replace: (buffer: ArrayBuffer) => ArrayBufferLike,
  depth: number
): unknown => {
  if (value === null || typeof value !== "object" || depth > MAX_DEPTH) return value
  if (ArrayBuffer.isView(value)) {
    const buffer = value.buffer
    if (value.byteLength < threshold || !(buffer instanceof ArrayBuffer)) return value
    const replaced = replace(buffer)
    if (replaced === buffer) return value
    const Ctor = value.constructor as new(buffer: ArrayBufferLike, offset: number, length: number) => ArrayBufferView
    const length = value instanceof DataView ? value.byteLength : (value as unknown as { length: number }).length
    return new Ctor(replaced, value.byteOffset, length)
  }
  if (value instanceof ArrayBuffer) return value.byteLength < threshold ? value : replace(value)
  if (Array.isArray(value)) {
    let out: Array<unknown> | undefined
    for (let i = 0; i < value.length; i++) {
      const item = value[i]
      const mapped = mapBuffers(item, threshold, replace, depth + 1)
      if (mapped !== item) (out ??= value.slice())[i] = mapped
    }
    return out ?? value
  }
  if (value instanceof Map) {
    let changed = false
    const entries = Array.from(value, ([k, v]) => {
      const mapped = mapBuffers(v, threshold, replace, depth + 1)
      if (mapped !== v) changed = true
      return [k, mapped] as const
    })
    return changed ? new Map(entries) : value
  }
  if (isPlainObject(value)) {
    let out: Record<string, unknown> | undefined
    for (const key of Object.keys(value)) {
      const item = (value as Record<string, unknown>)[key]
      const mapped = mapBuffers(item, threshold, replace, depth + 1)
      if (mapped !== item) (out ??= { ...(value as Record<string, unknown>) })[key] = mapped
    }
    return out ?? value
  }
  return value
}

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
