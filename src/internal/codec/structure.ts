/**
 * The structure encoding of the codec: a compact tagged binary form of plain
 * data. Small integers are one byte; repeated object shapes and repeated short
 * strings are written once and referenced after; typed arrays and buffers of
 * `sectionBytes` or more are not copied into the structure but listed as raw
 * sections that the container lays out aligned.
 *
 * The canonical mode (for hashing) sorts object keys, Map entries and Set
 * members, writes no references, and feeds big buffers to the same sink.
 *
 * Decoding never executes code: it builds plain objects, arrays, Maps, Sets,
 * Dates and typed arrays only, and guards `__proto__` keys.
 */
import { Buffer } from "node:buffer"

export const Tag = {
  // 0x00–0x7f: the integers 0..127
  Undefined: 0x80,
  Null: 0x81,
  False: 0x82,
  True: 0x83,
  Float64: 0x84,
  Int8: 0x85,
  Int16: 0x86,
  Int32: 0x87,
  BigInt: 0x88,
  String: 0x89,
  StringRef: 0x8a,
  Date: 0x8b,
  Array: 0x8c,
  Object: 0x8d,
  ObjectRef: 0x8e,
  Map: 0x8f,
  Set: 0x90,
  Section: 0x91,
  InlineBinary: 0x92,
  Hole: 0x93,
  /** A string with lone surrogates, which UTF-8 cannot hold: raw UTF-16 code units. */
  String16: 0x94
} as const

/** Binary kinds, stable across versions. */
export const BinaryKind = {
  Uint8Array: 0,
  Int8Array: 1,
  Uint8ClampedArray: 2,
  Int16Array: 3,
  Uint16Array: 4,
  Int32Array: 5,
  Uint32Array: 6,
  Float32Array: 7,
  Float64Array: 8,
  BigInt64Array: 9,
  BigUint64Array: 10,
  DataView: 11,
  ArrayBuffer: 12,
  SharedArrayBuffer: 13
} as const

type Ctor = new(buffer: ArrayBufferLike, byteOffset: number, length: number) => ArrayBufferView

const viewConstructors: ReadonlyArray<Ctor | undefined> = [
  Uint8Array,
  Int8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView as unknown as Ctor
]

export const elementSize = (kind: number): number => {
  switch (kind) {
    case BinaryKind.Int16Array:
    case BinaryKind.Uint16Array:
      return 2
    case BinaryKind.Int32Array:
    case BinaryKind.Uint32Array:
    case BinaryKind.Float32Array:
      return 4
    case BinaryKind.Float64Array:
    case BinaryKind.BigInt64Array:
    case BinaryKind.BigUint64Array:
      return 8
    default:
      return 1
  }
}

/** The kind of a binary value, or undefined when it is not one. */
export const binaryKind = (value: object): number | undefined => {
  if (ArrayBuffer.isView(value)) {
    if (value instanceof Uint8Array) return BinaryKind.Uint8Array // Node Buffers too
    if (value instanceof Float64Array) return BinaryKind.Float64Array
    if (value instanceof Float32Array) return BinaryKind.Float32Array
    if (value instanceof Int32Array) return BinaryKind.Int32Array
    if (value instanceof Uint32Array) return BinaryKind.Uint32Array
    if (value instanceof Int16Array) return BinaryKind.Int16Array
    if (value instanceof Uint16Array) return BinaryKind.Uint16Array
    if (value instanceof Int8Array) return BinaryKind.Int8Array
    if (value instanceof Uint8ClampedArray) return BinaryKind.Uint8ClampedArray
    if (value instanceof BigInt64Array) return BinaryKind.BigInt64Array
    if (value instanceof BigUint64Array) return BinaryKind.BigUint64Array
    if (value instanceof DataView) return BinaryKind.DataView
    return undefined
  }
  if (value instanceof ArrayBuffer) return BinaryKind.ArrayBuffer
  if (typeof SharedArrayBuffer !== "undefined" && value instanceof SharedArrayBuffer) {
    return BinaryKind.SharedArrayBuffer
  }
  return undefined
}

/** The bytes of a binary value, as a view on its memory (no copy). */
export const bytesOf = (value: object): Uint8Array =>
  ArrayBuffer.isView(value)
    ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
    : new Uint8Array(value as ArrayBufferLike)

/** Rebuilds a binary value of `kind` over `bytes`, which must be aligned for the kind. */
export const binaryFrom = (kind: number, bytes: Uint8Array): unknown => {
  if (kind === BinaryKind.ArrayBuffer || kind === BinaryKind.SharedArrayBuffer) {
    if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer
    return bytes.slice().buffer
  }
  const Ctor = viewConstructors[kind]!
  const size = elementSize(kind)
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice()
  return new Ctor(
    aligned.buffer,
    aligned.byteOffset,
    kind === BinaryKind.DataView ? aligned.byteLength : aligned.byteLength / size
  )
}

/** A value the encoder cannot represent, with where it was found. */
export class Unsupported extends Error {
  readonly path: Array<PropertyKey>
  readonly kind: string
  constructor(kind: string, path: Array<PropertyKey>) {
    super(`cannot encode ${kind} at ${shortPath(path)}`)
    this.kind = kind
    this.path = path
  }

  /** Adds an enclosing key, as the error unwinds out of a container. */
  at(key: PropertyKey) {
    this.path.unshift(key)
    this.message = `cannot encode ${this.kind} at ${shortPath(this.path)}`
  }
}

/** Containers nested deeper than this are checked for cycles. */
const CHECK_DEPTH = 64

/**
 * The deepest nesting a dump holds, on both sides: what `dump` writes, `load` reads without running out of
 * stack (about 3,000 levels did), and a crafted file cannot ask for more.
 */
export const MAX_NESTING = 1000

export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.length === 0
    ? "the root"
    : path.map((key) => `[${typeof key === "number" ? key : JSON.stringify(String(key))}]`).join("")

/** A path for a message: a deep one (a cycle is found only 64 levels down) keeps its two ends. */
const shortPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.length <= 16
    ? formatPath(path)
    : `${formatPath(path.slice(0, 8))}…(${path.length - 16} more)…${formatPath(path.slice(-8))}`

/** A problem with encoded bytes, found while decoding. */
export class Malformed extends Error {}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

interface ShapeNode {
  id: number
  readonly next: Map<string, ShapeNode>
  /** How often objects of this shape were written, and the record writer they earned (null: none can be). */
  uses: number
  write?: RecordWriter | null
}

type RecordWriter = (encoder: Encoder, value: object, keys: ReadonlyArray<string>) => void

/**
 * A writer for objects of one shape: each value read by a property access of its own, so that V8 caches
 * each access for the shape, where a loop over the keys makes one access site for every key.
 * Keys are written as JSON string literals (see {@link recordReader}); `keys[k]` names the key in error paths.
 */
const recordWriter = (keys: ReadonlyArray<string>): RecordWriter | undefined => {
  if (keys.length === 0 || keys.length > RECORD_MAX_KEYS) return undefined
  const steps = keys.map((key, k) => `k = ${k}; e.value(v[${JSON.stringify(key)}]);`).join(" ")
  return generate(["e", "v", "keys"], `let k = 0; try { ${steps} } catch (error) { throw e.failedAt(error, keys[k]) }`)
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

const MAX_INTERNED_LENGTH = 64

export class Encoder {
  buf: Uint8Array = new Uint8Array(256)
  view = new DataView(this.buf.buffer)
  pos = 0
  sections: Array<Section> = []
  private strings = new Map<string, number>()
  private shapes: ShapeNode = { id: -1, next: new Map(), uses: 0 }
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
    if (this.shapeCount > 0) {
      this.shapes = { id: -1, next: new Map(), uses: 0 }
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

  string(s: string) {
    const intern = !this.options.canonical && s.length <= MAX_INTERNED_LENGTH
    if (intern) {
      const id = this.strings.get(s)
      if (id !== undefined) {
        this.byte(Tag.StringRef)
        return this.varint(id)
      }
    }
    if (!s.isWellFormed()) return this.string16(s)
    if (intern) this.strings.set(s, this.strings.size)
    this.byte(Tag.String)
    this.rawString(s)
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
        next = { id: -1, next: new Map(), uses: 0 }
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
            shape.write(this, value, last)
            return this.leave(value)
          }
          let k = 0
          try {
            for (; k < last.length; k++) this.value((value as Record<string, unknown>)[last[k]!])
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
      let i = 0
      try {
        for (; i < keys.length; i++) this.value((value as Record<string, unknown>)[keys[i]!])
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

/** A shape read this many times gets a record reader. */
const RECORD_AFTER_USES = 8

/** Shapes with more keys than this are read key by key: a literal that large buys little. */
export const RECORD_MAX_KEYS = 64

type RecordReader = (decoder: { value(): unknown }) => Record<string, unknown>

/**
 * Generated code is not available (`--disallow-code-generation-from-strings`, a strict CSP): every
 * shape is then read key by key.
 */
let canGenerate = true

/**
 * A function made from source, or undefined where code generation is not allowed. Callers build `body`
 * from keys written as JSON string literals and from nothing else in the data.
 */
export const generate = <F>(parameters: ReadonlyArray<string>, body: string): F | undefined => {
  if (!canGenerate) return undefined
  try {
    return new Function(...parameters, body) as F
  } catch {
    canGenerate = false
    return undefined
  }
}

/**
 * A reader for objects of one shape: one object literal with the shape's keys, each value read in order,
 * as msgpackr's record decoders do. V8 then builds every record with one allocation and its final hidden
 * class, instead of adding keys one at a time.
 *
 * The source holds nothing from the file but the keys, each written as a JSON string literal, which
 * cannot end the literal or hold code: a key is only ever a property name. A shape with a `__proto__`
 * key is not generated, since in a literal that key would set the prototype.
 */
export const recordReader = (keys: ReadonlyArray<string>): RecordReader | undefined => {
  if (keys.length === 0 || keys.length > RECORD_MAX_KEYS || keys.includes("__proto__")) return undefined
  return generate(["d"], `return { ${keys.map((key) => `${JSON.stringify(key)}: d.value()`).join(", ")} }`)
}

/**
 * An array about to be filled with `length` values, by index in order. A large one is preallocated (and
 * packed, which structured clone copies faster): growing it by push would copy it again and again. A small
 * one starts empty and grows as it is filled, which keeps it packed (`new Array(n)` is holey: 1.3–1.6× the
 * structured-clone time here). Arrays of up to {@link LITERAL_ARRAY} values are made by a literal instead.
 */
export const arrayOf = (length: number): Array<unknown> => length > 64 ? Array.from({ length }) : []

/** Arrays of up to this many values are read into an array literal: packed, exactly their size, one allocation. */
export const LITERAL_ARRAY = 4

/** Stands for a hole of a sparse array while a small one is read into a literal. */
const HOLE: unique symbol = Symbol("hole")

const char = String.fromCharCode

/**
 * An ASCII string of at most 16 bytes, by `String.fromCharCode` with one argument per byte: about 3× faster
 * here than appending a character at a time (which makes a string per character) or a native slice.
 */
const asciiShort = (b: Uint8Array, at: number, length: number): string => {
  switch (length) {
    case 0:
      return ""
    case 1:
      return char(b[at]!)
    case 2:
      return char(b[at]!, b[at + 1]!)
    case 3:
      return char(b[at]!, b[at + 1]!, b[at + 2]!)
    case 4:
      return char(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!)
    case 5:
      return char(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!, b[at + 4]!)
    case 6:
      return char(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!, b[at + 4]!, b[at + 5]!)
    case 7:
      return char(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!, b[at + 4]!, b[at + 5]!, b[at + 6]!)
    case 8:
      return char(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!, b[at + 4]!, b[at + 5]!, b[at + 6]!, b[at + 7]!)
    default:
      return asciiShort(b, at, 8) + asciiShort(b, at + 8, length - 8)
  }
}

/** A reader's position and what it had interned there. */
export interface Mark {
  readonly pos: number
  readonly strings: number
  readonly shapes: number
}

/** Sets a decoded key: a `__proto__` key must stay data, never become the prototype. */
export const setKey = (out: Record<string, unknown>, key: string, value: unknown) => {
  if (key === "__proto__") {
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
  } else out[key] = value
}

/** Reads a structure; `section(i, kind)` returns the value of raw section `i`. */
export class Decoder {
  pos = 0
  private readonly view: DataView
  private readonly strings: Array<string> = []
  private readonly shapes: Array<ReadonlyArray<string>> = []
  /** How often each shape was read, and its record reader once it has earned one. */
  private readonly shapeUses: Array<number> = []
  private readonly records: Array<RecordReader | undefined> = []
  readonly buf: Uint8Array
  /** The same bytes as a Buffer, whose native `latin1Slice` reads longer ASCII strings fastest. */
  private readonly latin1: Buffer & { latin1Slice(start: number, end: number): string }
  private readonly section: (index: number, kind: number) => unknown
  private depth = 0

  constructor(buf: Uint8Array, section: (index: number, kind: number) => unknown) {
    this.buf = buf
    this.latin1 = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength) as Decoder["latin1"]
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
    this.section = section
  }

  /**
   * What a compiled node keeps for shape `id` in this decoder (its reader for the shape), found by the
   * node's `owner` object: one slot per shape, and a map for the rare shape that two nodes read.
   */
  perShape(owner: object, id: number): unknown {
    if (this.shapeOwners[id] === owner) return this.shapeValues[id]
    return this.others.get(owner)?.[id]
  }

  setPerShape(owner: object, id: number, value: unknown) {
    if (this.shapeOwners[id] === undefined) {
      this.shapeOwners[id] = owner
      this.shapeValues[id] = value
      return
    }
    let values = this.others.get(owner)
    if (values === undefined) this.others.set(owner, values = [])
    values[id] = value
  }
  private readonly shapeOwners: Array<object | undefined> = []
  private readonly shapeValues: Array<unknown> = []
  private readonly others = new Map<object, Array<unknown>>()

  /** The keys of shape `id`, which {@link shapeId} returned. */
  keysOf(id: number): ReadonlyArray<string> {
    return this.shapes[id]!
  }

  /** Reads the shape of an object (tag `Object` or `ObjectRef`), registering a new one; returns its id. */
  shapeId(tag: number): number {
    if (tag === Tag.ObjectRef) {
      const id = this.varint()
      if (this.shapes[id] === undefined) throw new Malformed(`unknown object shape ${id}`)
      return id
    }
    const n = this.count()
    const fresh: Array<string> = []
    // Keys are internalized once per shape: stores with internalized keys are much faster.
    for (let i = 0; i < n; i++) fresh.push(Object.keys({ [this.string(this.byte())]: 0 })[0]!)
    this.shapes.push(fresh)
    this.shapeUses.push(1)
    return this.shapes.length - 1
  }

  /** Where the reader is, so that a compiled union can try a member and go back. */
  mark(): Mark {
    return { pos: this.pos, strings: this.strings.length, shapes: this.shapes.length }
  }

  /** Goes back to `mark`, forgetting the strings and shapes read since: they will be read again. */
  rollback(mark: Mark) {
    this.pos = mark.pos
    this.strings.length = mark.strings
    this.shapes.length = mark.shapes
    this.shapeUses.length = mark.shapes
    if (this.records.length > mark.shapes) this.records.length = mark.shapes
    if (this.shapeOwners.length > mark.shapes) {
      this.shapeOwners.length = mark.shapes
      this.shapeValues.length = mark.shapes
      for (const values of this.others.values()) if (values.length > mark.shapes) values.length = mark.shapes
    }
  }

  /** Counts one more level of nesting (for recursive Schemas), failing past {@link MAX_NESTING}. */
  enter() {
    if (++this.depth > MAX_NESTING) {
      this.depth--
      throw new Malformed(`containers nested deeper than ${MAX_NESTING} levels`)
    }
  }

  leave() {
    this.depth--
  }

  private need(n: number) {
    if (this.pos + n > this.buf.length) throw new Malformed(`structure ends early at byte ${this.pos}`)
  }

  byte(): number {
    this.need(1)
    return this.buf[this.pos++]!
  }

  varint(): number {
    let result = 0
    let scale = 1
    for (let i = 0; i < 8; i++) {
      const b = this.byte()
      result += (b & 0x7f) * scale
      if (b < 0x80) return result
      scale *= 0x80
    }
    throw new Malformed(`varint too long at byte ${this.pos}`)
  }

  private rawString(): string {
    const length = this.varint()
    this.need(length)
    const start = this.pos
    this.pos += length
    if (length < 48) {
      const buf = this.buf
      for (let i = start; i < start + length; i++) if (buf[i]! >= 0x80) return this.utf8(start, length)
      return length <= 16 ? asciiShort(buf, start, length) : this.latin1.latin1Slice(start, start + length)
    }
    return this.utf8(start, length)
  }

  private utf8(start: number, length: number): string {
    try {
      return textDecoder.decode(this.buf.subarray(start, start + length))
    } catch {
      throw new Malformed(`invalid UTF-8 at byte ${start}`)
    }
  }

  string(tag: number): string {
    if (tag === Tag.String16) {
      const length = this.count()
      this.need(length * 2)
      let s = ""
      for (let i = 0; i < length; i++) s += String.fromCharCode(this.view.getUint16(this.pos + i * 2, true))
      this.pos += length * 2
      return s
    }
    if (tag === Tag.StringRef) {
      const id = this.varint()
      const s = this.strings[id]
      if (s === undefined) throw new Malformed(`unknown string reference ${id}`)
      return s
    }
    if (tag !== Tag.String) throw new Malformed(`expected a string, found tag ${tag}`)
    const s = this.rawString()
    if (s.length <= MAX_INTERNED_LENGTH) this.strings.push(s)
    return s
  }

  count(): number {
    const n = this.varint()
    // Every element takes at least one byte: a longer count is corrupt, not a reason to allocate.
    if (n > this.buf.length - this.pos) throw new Malformed(`count ${n} exceeds the data left at byte ${this.pos}`)
    return n
  }

  value(): unknown {
    const tag = this.byte()
    if (tag < 0x80) return tag
    switch (tag) {
      case Tag.Undefined:
        return undefined
      case Tag.Null:
        return null
      case Tag.False:
        return false
      case Tag.True:
        return true
      case Tag.Float64: {
        this.need(8)
        const n = this.view.getFloat64(this.pos, true)
        this.pos += 8
        return n
      }
      case Tag.Int8: {
        this.need(1)
        return this.view.getInt8(this.pos++)
      }
      case Tag.Int16: {
        this.need(2)
        const n = this.view.getInt16(this.pos, true)
        this.pos += 2
        return n
      }
      case Tag.Int32: {
        this.need(4)
        const n = this.view.getInt32(this.pos, true)
        this.pos += 4
        return n
      }
      case Tag.BigInt: {
        const negative = this.byte() === 1
        const length = this.count()
        if (this.pos + length > this.buf.length) throw new RangeError("a bigint runs past the end of the data")
        // Big-endian hex text, which V8 parses in linear time.
        const bigEndian = Buffer.from(this.buf.subarray(this.pos, this.pos + length)).reverse()
        this.pos += length
        const n = length === 0 ? 0n : BigInt(`0x${bigEndian.toString("hex")}`)
        return negative ? -n : n
      }
      case Tag.String:
      case Tag.StringRef:
      case Tag.String16:
        return this.string(tag)
      case Tag.Date: {
        this.need(8)
        const time = this.view.getFloat64(this.pos, true)
        this.pos += 8
        return new Date(time)
      }
      case Tag.Section: {
        const kind = this.byte()
        return this.section(this.varint(), kind)
      }
      case Tag.InlineBinary: {
        const kind = this.byte()
        if (kind > BinaryKind.SharedArrayBuffer) throw new Malformed(`unknown binary kind ${kind}`)
        const length = this.count()
        const bytes = this.buf.slice(this.pos, this.pos + length)
        this.pos += length
        if (length % elementSize(kind) !== 0) throw new Malformed(`binary of kind ${kind} has ${length} bytes`)
        return binaryFrom(kind, bytes)
      }
      default:
        return this.container(tag)
    }
  }

  /** Whether the small array being read met a hole (saved and restored around nested arrays). */
  private holes = false

  /** One element of a small array: its value, or {@link HOLE}. */
  private item(): unknown {
    if (this.buf[this.pos] !== Tag.Hole) return this.value()
    this.pos++
    this.holes = true
    return HOLE
  }

  private smallArray(length: number): Array<unknown> {
    const outer = this.holes
    this.holes = false
    const out = length === 0
      ? []
      : length === 1
      ? [this.item()]
      : length === 2
      ? [this.item(), this.item()]
      : length === 3
      ? [this.item(), this.item(), this.item()]
      : [this.item(), this.item(), this.item(), this.item()]
    if (this.holes) { for (let i = 0; i < length; i++) if (out[i] === HOLE) delete out[i] }
    this.holes = outer
    return out
  }

  private container(tag: number): unknown {
    this.enter()
    try {
      switch (tag) {
        case Tag.Array: {
          const length = this.count()
          if (length <= LITERAL_ARRAY) return this.smallArray(length)
          const out = arrayOf(length)
          for (let i = 0; i < length; i++) {
            if (this.buf[this.pos] === Tag.Hole) {
              this.pos++
              delete out[i]
            } else out[i] = this.value()
          }
          // A trailing hole was never assigned.
          out.length = length
          return out
        }
        case Tag.Object:
        case Tag.ObjectRef: {
          const id = this.shapeId(tag)
          const keys = this.shapes[id]!
          if (tag === Tag.ObjectRef) {
            const uses = ++this.shapeUses[id]!
            if (uses >= RECORD_AFTER_USES) {
              let read = this.records[id]
              if (read === undefined && uses === RECORD_AFTER_USES) read = this.records[id] = recordReader(keys)
              if (read !== undefined) return read(this)
            }
          }
          const out: Record<string, unknown> = {}
          for (let i = 0; i < keys.length; i++) setKey(out, keys[i]!, this.value())
          return out
        }
        case Tag.Map: {
          const n = this.count()
          const out = new Map<unknown, unknown>()
          for (let i = 0; i < n; i++) {
            const key = this.value()
            out.set(key, this.value())
          }
          return out
        }
        case Tag.Set: {
          const n = this.count()
          const out = new Set<unknown>()
          for (let i = 0; i < n; i++) out.add(this.value())
          return out
        }
        default:
          throw new Malformed(`unknown tag 0x${tag.toString(16)} at byte ${this.pos - 1}`)
      }
    } finally {
      this.depth--
    }
  }
}
