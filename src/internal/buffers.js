// @ts-check
/**
 * Walking values for big binary buffers, shared by the pool (to share or move
 * inputs) and its workers (to move results). Plain JavaScript so that workers
 * load it without TypeScript stripping.
 */

import { REF } from "./wire.js"

/** Containers nested deeper than this are not walked. */
const MAX_DEPTH = 8

/** @param {object} value */
const isPlainObject = (value) => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * Rebuilds `value` with every big non-shared buffer replaced by `replace(buffer)`,
 * copying containers only along changed paths; returns `value` itself when nothing changed.
 * Plain objects, arrays and Maps are walked; other values are left as they are.
 *
 * @param {unknown} value
 * @param {number} threshold
 * @param {(buffer: ArrayBuffer, view: ArrayBufferView | undefined) => unknown} replace
 *   returns a buffer to view in place of `buffer`, or any other value to stand in for the whole view
 * @param {number} [depth]
 * @param {boolean} [shared] also replace buffers in shared memory
 * @returns {unknown}
 */
export const mapBuffers = (value, threshold, replace, depth = 0, shared = false) => {
  if (value === null || typeof value !== "object" || depth > MAX_DEPTH) return value
  if (ArrayBuffer.isView(value)) {
    const buffer = /** @type {ArrayBuffer} */ (value.buffer)
    if (value.byteLength < threshold || !(shared || buffer instanceof ArrayBuffer)) return value
    const replaced = replace(buffer, value)
    if (replaced === buffer) return value
    if (!(replaced instanceof ArrayBuffer || replaced instanceof SharedArrayBuffer)) return replaced
    const Ctor = /** @type {new(buffer: ArrayBufferLike, offset: number, length: number) => ArrayBufferView} */ (
      value.constructor
    )
    const length = value instanceof DataView ? value.byteLength : /** @type {{ length: number }} */ (
      /** @type {unknown} */ (value)
    ).length
    return new Ctor(replaced, value.byteOffset, length)
  }
  if (value instanceof ArrayBuffer || (shared && value instanceof SharedArrayBuffer)) {
    return value.byteLength < threshold ? value : replace(/** @type {ArrayBuffer} */ (value), undefined)
  }
  if (Array.isArray(value)) {
    /** @type {Array<unknown> | undefined} */
    let out
    for (let i = 0; i < value.length; i++) {
      const item = value[i]
      const mapped = mapBuffers(item, threshold, replace, depth + 1, shared)
      if (mapped !== item) (out ??= value.slice())[i] = mapped
    }
    return out ?? value
  }
  if (value instanceof Map) {
    let changed = false
    const entries = Array.from(value, ([k, v]) => {
      const mapped = mapBuffers(v, threshold, replace, depth + 1, shared)
      if (mapped !== v) changed = true
      return /** @type {const} */ ([k, mapped])
    })
    return changed ? new Map(entries) : value
  }
  if (isPlainObject(value)) {
    const record = /** @type {Record<string, unknown>} */ (value)
    /** @type {Record<string, unknown> | undefined} */
    let out
    for (const key of Object.keys(record)) {
      const item = record[key]
      const mapped = mapBuffers(item, threshold, replace, depth + 1, shared)
      if (mapped !== item) (out ??= { ...record })[key] = mapped
    }
    return out ?? value
  }
  return value
}

/**
 * @param {unknown} u
 * @returns {u is PromiseLike<unknown>}
 */
export const isThenable = (u) =>
  u !== null && (typeof u === "object" || typeof u === "function") &&
  typeof (/** @type {any} */ (u).then) === "function"

/** View constructors a buffer reference may name; anything else is refused. */
const VIEWS = /** @type {Record<string, new(buffer: ArrayBuffer, offset: number, length: number) => unknown>} */ ({
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
  ...(typeof (/** @type {any} */ (globalThis).Float16Array) === "function"
    ? { Float16Array: /** @type {any} */ (globalThis).Float16Array }
    : {})
})

/**
 * A stand-in for a big buffer that a process worker already holds.
 * @param {number} id
 * @param {ArrayBufferView | undefined} view the view to rebuild, or undefined for the whole ArrayBuffer
 */
export const makeRef = (id, view) =>
  view === undefined
    ? { [REF]: id, type: "ArrayBuffer", offset: 0, length: 0 }
    : {
      [REF]: id,
      type: view.constructor.name,
      offset: view.byteOffset,
      length: view instanceof DataView ? view.byteLength : /** @type {{ length: number }} */ (
        /** @type {unknown} */ (view)
      ).length
    }

/**
 * Replaces the buffer references in `value` (see {@link makeRef}) with views over the buffers held.
 * @param {unknown} value
 * @param {ReadonlyMap<number, ArrayBuffer>} held
 * @param {number} [depth]
 * @returns {unknown}
 */
export const reviveRefs = (value, held, depth = 0) => {
  if (value === null || typeof value !== "object" || depth > MAX_DEPTH || ArrayBuffer.isView(value)) return value
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = reviveRefs(value[i], held, depth + 1)
    return value
  }
  if (value instanceof Map) {
    for (const [k, v] of value) value.set(k, reviveRefs(v, held, depth + 1))
    return value
  }
  if (!isPlainObject(value)) return value
  const record = /** @type {Record<string, unknown>} */ (value)
  const id = record[REF]
  if (typeof id === "number") {
    const buffer = held.get(id)
    if (buffer === undefined) throw new Error(`buffer ${id} was not sent to this worker`)
    if (record.type === "ArrayBuffer") return buffer
    const View = Object.hasOwn(VIEWS, /** @type {string} */ (record.type))
      ? VIEWS[/** @type {string} */ (record.type)]
      : undefined
    if (View === undefined) throw new Error(`unknown view type ${String(record.type)}`)
    return new View(buffer, /** @type {number} */ (record.offset), /** @type {number} */ (record.length))
  }
  for (const key of Object.keys(record)) record[key] = reviveRefs(record[key], held, depth + 1)
  return value
}
