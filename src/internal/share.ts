/**
 * Large binary data crossing a worker boundary. Inputs are copied once into
 * SharedArrayBuffers (the caller's arrays stay intact); outputs are moved by
 * transfer. Plain objects, arrays and Maps are walked; other values are left
 * to structured clone.
 */

const isPlainObject = (u: object): boolean => {
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

const isSharedBuffer = (buffer: ArrayBufferLike): buffer is SharedArrayBuffer =>
  typeof SharedArrayBuffer !== "undefined" && buffer instanceof SharedArrayBuffer

/** Copies big non-shared buffers into shared memory, once per source buffer. */
export class Sharer {
  readonly threshold: number
  readonly copies = new WeakMap<ArrayBuffer, SharedArrayBuffer>()
  /** Number of buffers copied into shared memory so far. */
  copied = 0
  constructor(threshold: number) {
    this.threshold = threshold
  }

  private shared(buffer: ArrayBuffer): SharedArrayBuffer {
    let copy = this.copies.get(buffer)
    if (copy === undefined) {
      copy = new SharedArrayBuffer(buffer.byteLength)
      new Uint8Array(copy).set(new Uint8Array(buffer))
      this.copies.set(buffer, copy)
      this.copied++
    }
    return copy
  }

  /** Returns `value` itself when nothing in it needs sharing. */
  share(value: unknown, depth = 0): unknown {
    if (value === null || typeof value !== "object" || depth > 8) return value
    if (ArrayBuffer.isView(value)) {
      const buffer = value.buffer
      if (value.byteLength < this.threshold || isSharedBuffer(buffer) || buffer.byteLength === 0) return value
      const Ctor = value.constructor as new(
        buffer: SharedArrayBuffer,
        offset: number,
        length: number
      ) => ArrayBufferView
      const length = value instanceof DataView ? value.byteLength : (value as unknown as { length: number }).length
      return new Ctor(this.shared(buffer as ArrayBuffer), value.byteOffset, length)
    }
    if (value instanceof ArrayBuffer) {
      return value.byteLength < this.threshold ? value : this.shared(value)
    }
    if (Array.isArray(value)) {
      let out: Array<unknown> | undefined
      for (let i = 0; i < value.length; i++) {
        const item = value[i]
        const shared = this.share(item, depth + 1)
        if (shared !== item) (out ??= value.slice())[i] = shared
      }
      return out ?? value
    }
    if (value instanceof Map) {
      let changed = false
      const entries = Array.from(value, ([k, v]) => {
        const shared = this.share(v, depth + 1)
        if (shared !== v) changed = true
        return [k, shared] as const
      })
      return changed ? new Map(entries) : value
    }
    if (isPlainObject(value)) {
      let out: Record<string, unknown> | undefined
      for (const key of Object.keys(value)) {
        const item = (value as Record<string, unknown>)[key]
        const shared = this.share(item, depth + 1)
        if (shared !== item) (out ??= { ...(value as Record<string, unknown>) })[key] = shared
      }
      return out ?? value
    }
    return value
  }
}
