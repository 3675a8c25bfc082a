/**
 * The structure's writer: small integers in one byte, repeated object shapes and short strings written once
 * and referenced after, binary values of `sectionBytes` or more listed as raw sections. The canonical mode
 * (for hashing) sorts object keys, Map entries and Set members, writes no references, and feeds big buffers
 * to the same sink.
 */
import { Buffer } from "node:buffer"
import {
  binaryKind,
  bytesOf,
  generate,
  MAX_INTERNED_LENGTH,
  MAX_NESTING,
  RECORD_AFTER_USES,
  RECORD_MAX_KEYS,
  Tag,
  Unsupported
} from "./structure.ts"

/** Containers nested deeper than this are checked for cycles. */
const CHECK_DEPTH = 64

const textEncoder = new TextEncoder()

interface ShapeNode {
  id: number
  readonly next: Map<string, ShapeNode>
  /** How often objects of this shape were written, and the record writer they earned (null: none can be). */
  uses: number
  write?: RecordWriter | null
  /** Per key: its strings' window (see {@link Encoder.field}). */
  readonly stats: Array<number>
}

type RecordWriter = (encoder: Encoder, value: object, keys: ReadonlyArray<string>, stats: Array<number>) => void

/**
 * A writer for objects of one shape: each value read by a property access of its own, so that V8 caches
 * each access for the shape, where a loop over the keys makes one access site for every key.
 * Keys are written as JSON string literals (see {@link recordReader}); `keys[k]` names the key in error paths.
 */
const recordWriter = (keys: ReadonlyArray<string>): RecordWriter | undefined => {
  if (keys.length === 0 || keys.length > RECORD_MAX_KEYS) return undefined
  const steps = keys.map((key, k) => `k = ${k}; e.field(v[${JSON.stringify(key)}], s, ${k});`).join(" ")
  return generate(
    ["e", "v", "keys", "s"],
    `let k = 0; try { ${steps} } catch (error) { throw e.failedAt(error, keys[k]) }`
  )
}

/** The part of a value that goes to a raw section. */
export interface Section {
  readonly kind: number
  readonly bytes: Uint8Array
}

export interface EncodeOptions {
  /** Binary values of this many bytes or more become sections. */
  readonly sectionBytes: number
  /** Sorted keys, no references; for hashing. */
  readonly canonical: boolean
}

export class Encoder {
  buf: Uint8Array = new Uint8Array(256)
  view = new DataView(this.buf.buffer)
  pos = 0
  sections: Array<Section> = []
  private strings = new Map<string, number>()
  /**
   * Ids given so far: the reader gives every short string written whole the next id, so this counts them all,
   * kept in {@link strings} or not.
   */
  private stringCount = 0
  /** Per compiled string field (by site number): its strings' window (see {@link Encoder.siteString}). */
  private readonly sites: Array<number> = []
  private shapes: ShapeNode = { id: -1, next: new Map(), uses: 0, stats: [] }
  private shapeCount = 0
  private lastKeys: ReadonlyArray<string> = []
  private lastShape: ShapeNode | undefined
  /** Shapes a compiled Schema writer declared, by its keys array: one lookup per record, no key walk. */
  private declared = new Map<ReadonlyArray<string>, number>()
  private seen = new Set<object>()
  readonly options: EncodeOptions
  /** In canonical mode, called with the structure bytes so far and then each big binary value. */
  flush: ((bytes: Uint8Array) => void) | undefined

  constructor(options: EncodeOptions, flush?: (bytes: Uint8Array) => void) {
    this.options = options
    this.flush = flush
  }

  /** Makes the encoder ready for a new value, keeping its buffer: for hot paths that encode many small values. */
  reset(flush?: (bytes: Uint8Array) => void) {
    this.pos = 0
    this.flush = flush
    if (this.sections.length > 0) this.sections = []
    if (this.strings.size > 0) this.strings = new Map()
    this.stringCount = 0
    this.sites.length = 0
    if (this.shapeCount > 0) {
      this.shapes = { id: -1, next: new Map(), uses: 0, stats: [] }
      this.shapeCount = 0
      this.lastKeys = []
      this.lastShape = undefined
    }
    if (this.declared.size > 0) this.declared = new Map()
    this.depth = 0
    if (this.seen.size > 0) this.seen = new Set()
    // A buffer grown by a huge value is not kept.
    if (this.buf.length > 1 << 20) {
      this.buf = new Uint8Array(256)
      this.view = new DataView(this.buf.buffer)
    }
  }

  private ensure(n: number) {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  byte(b: number) {
    this.ensure(1)
    this.buf[this.pos++] = b
  }

  varint(n: number) {
    this.ensure(10)
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80
      n = Math.floor(n / 0x80)
    }
    this.buf[this.pos++] = n
  }

  private float64(tag: number, n: number) {
    this.ensure(9)
    this.buf[this.pos++] = tag
    // One NaN for all: payload bits are not observable from JavaScript.
    this.view.setFloat64(this.pos, Number.isNaN(n) ? NaN : n, true)
    this.pos += 8
  }

  number(n: number) {
    // Canonically -0 is 0: they are === and print alike, so they hash alike.
    if (this.options.canonical && n === 0) n = 0
    if (Number.isInteger(n) && !(n === 0 && 1 / n < 0)) {
      if (n >= 0 && n < 0x80) return this.byte(n)
      if (n >= -0x80 && n < 0x80) {
        this.ensure(2)
        this.buf[this.pos++] = Tag.Int8
        this.view.setInt8(this.pos++, n)
        return
      }
      if (n >= -0x8000 && n < 0x8000) {
        this.ensure(3)
        this.buf[this.pos++] = Tag.Int16
        this.view.setInt16(this.pos, n, true)
        this.pos += 2
        return
      }
      if (n >= -0x80000000 && n < 0x80000000) {
        this.ensure(5)
        this.buf[this.pos++] = Tag.Int32
        this.view.setInt32(this.pos, n, true)
        this.pos += 4
        return
      }
    }
    this.float64(Tag.Float64, n)
  }

  private rawString(s: string) {
    // Short ASCII strings are copied by hand: faster than TextEncoder for them.
    const length = s.length
    if (length < 48) {
      this.ensure(1 + length * 3)
      const lengthAt = this.pos++
      let p = this.pos
      let ascii = true
      for (let i = 0; i < length; i++) {
        const c = s.charCodeAt(i)
        if (c >= 0x80) {
          ascii = false
          break
        }
        this.buf[p++] = c
      }
      if (ascii) {
        this.buf[lengthAt] = length
        this.pos = p
        return
      }
      this.pos = lengthAt
    }
    const max = length * 3
    this.ensure(max + 5)
    // Reserve a 5-byte varint when the byte length is unknown, then close the gap.
    const lengthAt = this.pos
    const { written } = textEncoder.encodeInto(s, this.buf.subarray(lengthAt + 5))
    let head = 0
    let n = written
    const header: Array<number> = []
    do {
      header.push(n >= 0x80 ? (n % 0x80) | 0x80 : n)
      n = Math.floor(n / 0x80)
      head++
    } while (n > 0)
    this.buf.copyWithin(lengthAt + head, lengthAt + 5, lengthAt + 5 + written)
    for (let i = 0; i < head; i++) this.buf[lengthAt + i] = header[i]!
    this.pos = lengthAt + head + written
  }

  /** Strings with lone surrogates go as UTF-16, which keeps them exactly. */
  private string16(s: string) {
    this.byte(Tag.String16)
    this.varint(s.length)
    this.ensure(s.length * 2)
    for (let i = 0; i < s.length; i++) {
      this.view.setUint16(this.pos, s.charCodeAt(i), true)
      this.pos += 2
    }
  }

  /**
   * A string: a reference when an equal one was kept, else written whole. A short one written whole takes the
   * next id (the reader numbers them all) and is kept for later references unless `keep` is false.
   */
  string(s: string, keep = true) {
    const intern = !this.options.canonical && s.length <= MAX_INTERNED_LENGTH
    if (intern) {
      const id = this.strings.get(s)
      if (id !== undefined) {
        this.byte(Tag.StringRef)
        return this.varint(id)
      }
    }
    if (!s.isWellFormed()) return this.string16(s)
    if (intern) {
      if (keep) this.strings.set(s, this.stringCount)
      this.stringCount++
    }
    this.byte(Tag.String)
    this.rawString(s)
  }

  /**
   * A string of a compiled field (site `site`, from {@link newSite}). Each field's strings are counted in
   * windows of {@link SITE_SAMPLE}: where fewer than one in 8 was a reference to an earlier one (ids, UUIDs,
   * free text), the next window keeps no new string, since each one kept costs a Map insert (about 250 ns
   * here) for references that do not come; it still looks strings up, and keeps new ones again after a window
   * where enough were found. A string not kept is written whole and still takes its id, so the format and the
   * reader are unchanged.
   */
  siteString(s: string, site: number) {
    // Sites past the cap (a program compiling Schemas without end) are interned as before: no window grows to them.
    if (site < MAX_SITES) this.sampledString(s, this.sites, site)
    else this.string(s)
  }

  /** A value of a record's key `k`, whose strings follow the same policy, counted in its shape's `stats`. */
  field(value: unknown, stats: Array<number>, k: number) {
    if (typeof value === "string") this.sampledString(value, stats, k)
    else this.value(value)
  }

  /**
   * A string counted in `stats[slot]`, one small integer: whether new strings are kept (bit 18, set when not),
   * then strings seen (bits 9–17) and found (bits 0–8) in the window.
   */
  private sampledString(s: string, stats: Array<number>, slot: number) {
    // Grown by push, which keeps it packed: a far index would make it a dictionary.
    while (stats.length <= slot) stats.push(0)
    const state = stats[slot]!
    const before = this.stringCount
    this.string(s, state < NOT_KEPT)
    const next = state + SEEN_ONE + (this.stringCount === before ? 1 : 0)
    if ((next & SEEN_MASK) !== WINDOW_END) {
      stats[slot] = next
      return
    }
    // found * 8 < seen: too few references to keep new strings in the next window.
    stats[slot] = (next & FOUND_MASK) * 8 < SITE_SAMPLE ? NOT_KEPT : 0
  }

  /** A Date's time (the caller has checked it is a Date). */
  date(time: number) {
    this.float64(Tag.Date, time)
  }

  binary(value: object, kind: number) {
    const bytes = bytesOf(value)
    if (this.options.canonical) {
      // Element type and length are part of the identity; the bytes go straight to the hash.
      this.byte(Tag.InlineBinary)
      this.byte(kind)
      this.varint(bytes.byteLength)
      if (bytes.byteLength >= this.options.sectionBytes && this.flush !== undefined) {
        this.flush(this.buf.subarray(0, this.pos))
        this.pos = 0
        this.flush(bytes)
      } else {
        this.ensure(bytes.byteLength)
        this.buf.set(bytes, this.pos)
        this.pos += bytes.byteLength
      }
      return
    }
    if (bytes.byteLength >= this.options.sectionBytes) {
      this.byte(Tag.Section)
      this.byte(kind)
      this.varint(this.sections.length)
      this.sections.push({ kind, bytes })
      return
    }
    this.byte(Tag.InlineBinary)
    this.byte(kind)
    this.varint(bytes.byteLength)
    this.ensure(bytes.byteLength)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.byteLength
  }

  objectKeys(keys: ReadonlyArray<string>) {
    if (this.options.canonical) {
      this.byte(Tag.Object)
      this.varint(keys.length)
      for (const key of keys) this.string(key)
      return
    }
    // Shapes: a key sequence seen before is written as its id.
    let node = this.shapes
    for (const key of keys) {
      let next = node.next.get(key)
      if (next === undefined) {
        next = { id: -1, next: new Map(), uses: 0, stats: [] }
        node.next.set(key, next)
      }
      node = next
    }
    this.lastKeys = keys
    this.lastShape = node
    if (node.id >= 0) {
      this.byte(Tag.ObjectRef)
      this.varint(node.id)
      return
    }
    node.id = this.shapeCount++
    this.byte(Tag.Object)
    this.varint(keys.length)
    for (const key of keys) this.string(key)
  }

  /**
   * Opens an object of a shape a compiled Schema writer knows: `keys` is that writer's own array, so the
   * shape's id is found by identity. The values follow, in the order of `keys`.
   */
  declaredShape(keys: ReadonlyArray<string>) {
    const id = this.declared.get(keys)
    if (id !== undefined) {
      this.byte(Tag.ObjectRef)
      return this.varint(id)
    }
    this.declared.set(keys, this.shapeCount)
    this.byte(Tag.Object)
    this.varint(keys.length)
    for (const key of keys) this.string(key)
    this.shapeCount++
  }

  /** Adds `key` to the path of an encoding error raised below it; returns the error to rethrow. */
  failedAt(error: unknown, key: string): unknown {
    if (error instanceof Unsupported) error.at(key)
    return error
  }

  value(value: unknown): void {
    switch (typeof value) {
      case "number":
        return this.number(value)
      case "string":
        return this.string(value)
      case "boolean":
        return this.byte(value ? Tag.True : Tag.False)
      case "undefined":
        return this.byte(Tag.Undefined)
      case "bigint":
        return this.bigint(value)
      case "object":
        if (value === null) return this.byte(Tag.Null)
        return this.object(value)
      default:
        throw new Unsupported(typeof value === "function" ? "a function" : `a ${typeof value}`, [])
    }
  }

  bigint(value: bigint) {
    this.byte(Tag.BigInt)
    const negative = value < 0n
    // Through hex text, which V8 converts in linear time: shifting a byte at a time is quadratic.
    const hex = value === 0n ? "" : (negative ? -value : value).toString(16)
    const length = (hex.length + 1) >> 1
    this.byte(negative ? 1 : 0)
    this.varint(length)
    this.ensure(length)
    // Little-endian bytes: the big-endian bytes of the hex text, reversed.
    const bigEndian = Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, "hex")
    for (let i = length - 1; i >= 0; i--) this.buf[this.pos++] = bigEndian[i]!
  }

  /** Encodes a child value; on failure, adds its key to the error's path while unwinding (nothing is kept on success). */
  private child(key: PropertyKey, value: unknown) {
    try {
      this.value(value)
    } catch (error) {
      if (error instanceof Unsupported) error.at(key)
      throw error
    }
  }

  // Cycles: plain nesting is cheap to follow; only past CHECK_DEPTH are visited containers remembered.
  private depth = 0

  enter(value: object) {
    if (++this.depth > MAX_NESTING) {
      this.depth--
      throw new Unsupported(`a value nested deeper than ${MAX_NESTING} levels, the most a dump holds`, [])
    }
    if (this.depth > CHECK_DEPTH) {
      if (this.seen.has(value)) throw new Unsupported("a circular reference", [])
      this.seen.add(value)
    }
  }

  leave(value: object) {
    if (this.depth-- > CHECK_DEPTH) this.seen.delete(value)
  }

  private object(value: object) {
    const proto = Object.getPrototypeOf(value)
    if (proto === Object.prototype || proto === null) {
      this.enter(value)
      // Records mostly repeat the last shape: compared key by key as they are enumerated, with no array of keys.
      const last = this.lastKeys
      if (this.lastShape !== undefined && !this.options.canonical) {
        let i = 0
        for (const key in value) {
          if (key !== last[i++]) {
            i = -1
            break
          }
        }
        if (i === last.length) {
          const shape = this.lastShape
          this.byte(Tag.ObjectRef)
          this.varint(shape.id)
          if (shape.write === undefined && ++shape.uses === RECORD_AFTER_USES) shape.write = recordWriter(last) ?? null
          if (shape.write) {
            shape.write(this, value, last, shape.stats)
            return this.leave(value)
          }
          let k = 0
          try {
            for (; k < last.length; k++) this.field((value as Record<string, unknown>)[last[k]!], shape.stats, k)
          } catch (error) {
            if (error instanceof Unsupported) error.at(last[k]!)
            throw error
          }
          return this.leave(value)
        }
      }
      const keys = Object.keys(value)
      if (this.options.canonical) keys.sort()
      this.objectKeys(keys)
      const stats = this.options.canonical ? undefined : this.lastShape?.stats
      let i = 0
      try {
        for (; i < keys.length; i++) {
          const item = (value as Record<string, unknown>)[keys[i]!]
          if (stats === undefined) this.value(item)
          else this.field(item, stats, i)
        }
      } catch (error) {
        if (error instanceof Unsupported) error.at(keys[i]!)
        throw error
      }
      return this.leave(value)
    }
    if (Array.isArray(value)) {
      this.enter(value)
      this.byte(Tag.Array)
      this.varint(value.length)
      let i = 0
      try {
        for (; i < value.length; i++) {
          if (!(i in value)) this.byte(Tag.Hole)
          else this.value(value[i])
        }
      } catch (error) {
        if (error instanceof Unsupported) error.at(i)
        throw error
      }
      return this.leave(value)
    }
    const kind = binaryKind(value)
    if (kind !== undefined) return this.binary(value, kind)
    if (value instanceof Date) return this.float64(Tag.Date, value.getTime())
    if (value instanceof Map) {
      this.enter(value)
      this.entries(Tag.Map, Array.from(value), true)
      return this.leave(value)
    }
    if (value instanceof Set) {
      this.enter(value)
      this.entries(Tag.Set, Array.from(value, (item) => [item, undefined] as const), false)
      return this.leave(value)
    }
    const name = value.constructor?.name ?? "object"
    throw new Unsupported(`an instance of ${name} (give a Schema to encode class instances)`, [])
  }

  private entries(tag: number, entries: ReadonlyArray<readonly [unknown, unknown]>, withValues: boolean) {
    this.byte(tag)
    this.varint(entries.length)
    let ordered = entries
    if (this.options.canonical) {
      // Canonical: order by each key's own canonical bytes.
      const keyed = entries.map(([key, value]) => {
        const keyEncoder = new Encoder({ ...this.options }, undefined)
        keyEncoder.value(key)
        return { bytes: keyEncoder.buf.subarray(0, keyEncoder.pos), entry: [key, value] as const }
      })
      keyed.sort((a, b) => compareBytes(a.bytes, b.bytes))
      ordered = keyed.map(({ entry }) => entry)
    }
    for (const [key, value] of ordered) {
      const at = withValues ? String(key) : "<member>"
      this.child(at, key)
      if (withValues) this.child(at, value)
    }
  }

  /** The structure bytes (a view on the encoder's buffer). */
  result(): Uint8Array {
    return this.buf.subarray(0, this.pos)
  }
}

const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

let siteCount = 0

/** A site number for {@link Encoder.siteString}: one per compiled struct field of strings. */
export const newSite = (): number => siteCount++

/** Compiled string fields past this many are interned as before (each encoder's windows stay this small). */
const MAX_SITES = 4096

/** How many strings of a field make a window, after which it decides whether to keep its new strings. */
export const SITE_SAMPLE = 256
const SEEN_ONE = 1 << 9
const SEEN_MASK = 0x1ff << 9
const FOUND_MASK = 0x1ff
const WINDOW_END = SITE_SAMPLE << 9
const NOT_KEPT = 1 << 18

/** One encoder kept for the life of the module, so that its hidden class outlives a GC (see the decoder's). */
export const keptAlive = new Encoder({ sectionBytes: 1 << 20, canonical: false })
