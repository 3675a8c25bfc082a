/**
 * A rough size in bytes of a value as a batch carries it, for capping batches by bytes. It walks at most
 * a fixed number of nodes and samples long arrays, so it costs the same for a number and for a huge tree.
 */

/** Elements of an array or collection that are looked at; the rest are assumed to be like them. */
const SAMPLE = 8

export const estimateBytes = (value: unknown, budget = 256): number => {
  let left = budget
  const walk = (u: unknown): number => {
    if (left-- <= 0) return 0
    switch (typeof u) {
      case "number":
      case "boolean":
      case "undefined":
        return 8
      case "bigint":
        return 8 + Math.ceil(u.toString(16).length / 2)
      case "string":
        return 16 + u.length
      case "object": {
        if (u === null) return 8
        if (ArrayBuffer.isView(u)) return 32 + u.byteLength
        if (u instanceof ArrayBuffer || u instanceof SharedArrayBuffer) return 32 + u.byteLength
        if (Array.isArray(u)) return 16 + sampled(u, u.length)
        if (u instanceof Map) return 16 + 2 * sampled([...take(u.entries(), SAMPLE)].flat(), u.size)
        if (u instanceof Set) return 16 + sampled([...take(u.values(), SAMPLE)], u.size)
        let bytes = 16
        for (const key in u) {
          if (left <= 0) break
          bytes += 16 + key.length + walk((u as Record<string, unknown>)[key])
        }
        return bytes
      }
      default:
        return 8
    }
  }
  /** Walks up to SAMPLE of `items` and scales their size to `count` items. */
  const sampled = (items: ReadonlyArray<unknown>, count: number): number => {
    const n = Math.min(items.length, SAMPLE)
    if (n === 0) return 0
    let bytes = 0
    for (let i = 0; i < n; i++) bytes += walk(items[Math.floor((i * items.length) / n)])
    return 8 * count + (bytes * count) / n
  }
  return walk(value)
}

function* take<A>(iterator: Iterator<A>, n: number): Generator<A> {
  for (let i = 0; i < n; i++) {
    const next = iterator.next()
    if (next.done) return
    yield next.value
  }
}
