/**
 * The structure encoding of the codec: a compact tagged binary form of plain
 * data, written by `encoder.ts` and read by `decoder.ts`. This module holds what
 * both sides share: the tags, the binary kinds, the errors, the limits, and
 * the guarded code generation of record readers and writers.
 */
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

/** A shape read (or written) this many times gets a record reader (or writer). */
export const RECORD_AFTER_USES = 8

/** Shapes with more keys than this are read key by key: a literal that large buys little. */
export const RECORD_MAX_KEYS = 64

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

/** Strings of up to this many characters are written once and referenced after. */
export const MAX_INTERNED_LENGTH = 64
