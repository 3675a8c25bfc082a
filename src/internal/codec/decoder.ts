/**
 * The structure's reader. It never executes code from the data: it builds plain objects, arrays, Maps, Sets,
 * Dates and typed arrays only, guards `__proto__` keys, and generates record readers whose source holds
 * nothing from the data but keys written as JSON string literals.
 */
import { Buffer } from "node:buffer"
import {
  binaryFrom,
  BinaryKind,
  elementSize,
  generate,
  Malformed,
  MAX_INTERNED_LENGTH,
  MAX_NESTING,
  RECORD_AFTER_USES,
  RECORD_MAX_KEYS,
  Tag
} from "./structure.ts"

const textDecoder = new TextDecoder("utf-8", { fatal: true })

type RecordReader = (decoder: { value(): unknown }) => Record<string, unknown>

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
 * An array about to be filled with `length` values, by index in order. A large one is preallocated and
 * filled, which leaves it packed (structured clone copies packed arrays faster) in half the time of
 * `Array.from({ length })` (2.6 against 5.3 ms for 100k here); growing it by push would copy it again and
 * again. A small one starts empty and grows as it is filled, which keeps it packed (`new Array(n)` left
 * unfilled is holey: 1.3–1.6× the structured-clone time here). Arrays of up to {@link LITERAL_ARRAY} values
 * are made by a literal instead.
 */
export const arrayOf = (length: number): Array<unknown> =>
  // oxlint-disable-next-line unicorn/no-new-array -- a length, filled at once (see above)
  length > 64 ? new Array<unknown>(length).fill(undefined) : []

/** Arrays of up to this many values are read into an array literal: packed, exactly their size, one allocation. */
export const LITERAL_ARRAY = 4

/** Stands for a hole of a sparse array while a small one is read into a literal. */
const HOLE: unique symbol = Symbol("hole")

const char = String.fromCharCode

/** The largest time a Date holds, in ms either side of 1970 (ECMA-262's TimeClip). */
const MAX_TIME = 8.64e15

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

  /**
   * Fast paths for compiled leaves: the common encodings read inline, or `undefined` (NaN for a time) without
   * moving, and the leaf then reads with {@link value}, which names whatever is wrong.
   */
  number(): number | undefined {
    const b = this.buf
    const p = this.pos
    const t = b[p]!
    if (t < 0x80) {
      this.pos = p + 1
      return t
    }
    if (t === Tag.Int16 && p + 3 <= b.length) {
      this.pos = p + 3
      return this.view.getInt16(p + 1, true)
    }
    if (t === Tag.Int32 && p + 5 <= b.length) {
      this.pos = p + 5
      return this.view.getInt32(p + 1, true)
    }
    if (t === Tag.Float64 && p + 9 <= b.length) {
      this.pos = p + 9
      return this.view.getFloat64(p + 1, true)
    }
    return undefined
  }

  /** A string reference by a one- or two-byte id. */
  stringRef(): string | undefined {
    const b = this.buf
    const p = this.pos
    if (b[p] !== Tag.StringRef) return undefined
    let id = b[p + 1]!
    let end = p + 2
    if (id >= 0x80) {
      const high = b[p + 2]!
      if (high >= 0x80) return undefined
      id = (id & 0x7f) + high * 0x80
      end++
    }
    const s = this.strings[id]
    if (s !== undefined) this.pos = end
    return s
  }

  /** The id of a known shape referred to by a one-byte id, or -1. */
  shapeRef(): number {
    const b = this.buf
    const p = this.pos
    if (b[p] !== Tag.ObjectRef) return -1
    const id = b[p + 1]!
    if (!(id < 0x80) || this.shapes[id] === undefined) return -1
    this.pos = p + 2
    return id
  }

  /** A valid Date's time, or NaN (not moving: a time no Date can hold is then read and named by the leaf). */
  dateTime(): number {
    const b = this.buf
    const p = this.pos
    if (b[p] !== Tag.Date || p + 9 > b.length) return NaN
    const time = this.view.getFloat64(p + 1, true)
    if (!(Math.abs(time) <= MAX_TIME)) return NaN
    this.pos = p + 9
    return time
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

/**
 * One decoder kept for the life of the module. Its hidden class (map) is the one every decoder gets; without
 * a live instance, a major GC between two decodes may collect that map, and V8 then throws away all the
 * optimized code specialized to it ("embedded weak objects cleared"), so the next decode starts unoptimized.
 */
export const keptAlive = new Decoder(new Uint8Array(0), () => undefined)
