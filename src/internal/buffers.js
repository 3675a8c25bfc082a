// @ts-check
/**
 * Walking values for big binary buffers, shared by the pool (to share or move
 * inputs) and its workers (to move results). Plain JavaScript so that workers
 * load it without TypeScript stripping.
 */

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
 * @param {(buffer: ArrayBuffer) => ArrayBufferLike} replace
 * @param {number} [depth]
 * @returns {unknown}
 */
export const mapBuffers = (value, threshold, replace, depth = 0) => {
  if (value === null || typeof value !== "object" || depth > MAX_DEPTH) return value
  if (ArrayBuffer.isView(value)) {
    const buffer = value.buffer
    if (value.byteLength < threshold || !(buffer instanceof ArrayBuffer)) return value
    const replaced = replace(buffer)
    if (replaced === buffer) return value
    const Ctor = /** @type {new(buffer: ArrayBufferLike, offset: number, length: number) => ArrayBufferView} */ (
      value.constructor
    )
    const length = value instanceof DataView ? value.byteLength : /** @type {{ length: number }} */ (
      /** @type {unknown} */ (value)
    ).length
    return new Ctor(replaced, value.byteOffset, length)
  }
  if (value instanceof ArrayBuffer) return value.byteLength < threshold ? value : replace(value)
  if (Array.isArray(value)) {
    /** @type {Array<unknown> | undefined} */
    let out
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
      const mapped = mapBuffers(item, threshold, replace, depth + 1)
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
