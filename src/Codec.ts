/**
 * A binary codec for plain data and Schema-typed values, with raw aligned
 * sections for typed arrays and optional compression. `Persist` writes its
 * output to files and streams.
 *
 * **Format (version 1).** A 64-byte header — magic `\x89EJLB\r\n\x1a`, format
 * version, mode (schemaless or Schema), compression id, schema fingerprint,
 * body and stored lengths, header checksum — then the stored body (compressed
 * or not), then a 24-byte trailer: the xxh64 of the stored body, its length,
 * and the end magic `EJLB-END`. The body holds a section table, the structure
 * (a compact tagged encoding in which repeated object shapes and short strings
 * are written once, except the strings of a field whose strings rarely repeat,
 * such as ids, which are written whole without being kept), and every typed array or buffer of 256 bytes or more as a
 * raw section aligned to 64 bytes, so that decoding returns views over the
 * bytes read, with no per-element work and no copy.
 *
 * **Schema mode.** The Schema is compiled once into a writer and a reader that
 * validate as they go (so classes, Dates, Options, brands and transformations
 * round-trip, and a mismatch names its path); a transformation whose getters
 * are not plain functions runs Effect's Schema pass for its own node only (a
 * struct with a field whose transformation sees missing keys, such as a
 * decoding default, for the whole struct). That pass runs synchronously, as
 * `Schema.decodeUnknownSync` does: a transformation that waits fails with
 * `SchemaMismatch`.
 * The bytes are the Schema's encoded form in the schemaless encoding.
 * Compatible changes to a Schema: adding optional fields, removing fields
 * (extra data is ignored), widening a literal or a union. Incompatible:
 * renaming a field, changing a field's type, adding a required field; these
 * fail with `SchemaMismatch` naming the field.
 *
 * Decoding never executes code.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import * as Compression from "./Compression.ts"
import { type Compiled, compileSchema, TYPED_ARRAY_ANNOTATION } from "./internal/codec/compiled/compile.ts"
import { Mismatch } from "./internal/codec/compiled/node.ts"
import { Decoder } from "./internal/codec/decoder.ts"
import { Encoder, type Section } from "./internal/codec/encoder.ts"
import { digestParts, knownDigest, xxh128, xxh64 } from "./internal/codec/hashers.ts"
import * as PersistOptions from "./internal/codec/persistOptions.ts"
import { binaryFrom, BinaryKind, formatPath, Malformed, Unsupported } from "./internal/codec/structure.ts"
import {
  BadMagic,
  Corrupted,
  type DecodeError,
  InvalidPersistOptions,
  SchemaMismatch,
  Truncated,
  UnknownCompression,
  UnsupportedValue,
  UnsupportedVersion
} from "./PersistError.ts"

/**
 * The first bytes of every dump.
 *
 * @category constants
 * @since 0.1.0
 */
export const MAGIC: ReadonlyArray<number> = [0x89, 0x45, 0x4a, 0x4c, 0x42, 0x0d, 0x0a, 0x1a]

/**
 * The format version this library writes and reads.
 *
 * @category constants
 * @since 0.1.0
 */
export const VERSION = 1

const END_MAGIC = [0x45, 0x4a, 0x4c, 0x42, 0x2d, 0x45, 0x4e, 0x44] // "EJLB-END"
/** Header size; also the alignment of the body within a file. */
export const HEADER_BYTES = 64
/** Trailer size. */
export const TRAILER_BYTES = 24
const ALIGN = 64
const SECTION_BYTES = 256
const TABLE_ENTRY = 24

const Mode = { Schemaless: 0, Schema: 1 } as const

/**
 * How to compress: `false`/`0` for none, `true` for the default method and
 * level, a number for the default method at that level, a method name, or
 * `[name, level]`. Names are {@link Compression.Methods}: a typo fails in `tsc`.
 *
 * @category models
 * @since 0.1.0
 */
export type CompressOption = boolean | number | Compression.Method | readonly [Compression.Method, number]

/**
 * What a header says.
 *
 * @category models
 * @since 0.1.0
 */
export interface Header {
  readonly version: number
  readonly mode: "schemaless" | "schema"
  readonly compression: number
  readonly fingerprint: Uint8Array
  readonly bodyBytes: number
  readonly storedBytes: number
}

/**
 * A codec for values of `A`: schemaless when made without a Schema.
 *
 * @category models
 * @since 0.1.0
 */
export interface Codec<A> {
  readonly schema: Schema.Codec<A, unknown> | undefined
  /** Encodes to the parts of a dump (header, body parts, trailer), without joining them. */
  readonly encodeParts: (
    value: A,
    options?: EncodeOptions
  ) => Effect.Effect<
    ReadonlyArray<Uint8Array>,
    UnsupportedValue | SchemaMismatch | InvalidPersistOptions | Compression.CompressionError
  >
  /**
   * Encodes all but the trailer, whose checksum `seal()` computes: a writer can start writing
   * the parts and checksum them meanwhile.
   */
  readonly encodeUnsealed: (
    value: A,
    options?: EncodeOptions
  ) => Effect.Effect<
    { readonly parts: ReadonlyArray<Uint8Array>; readonly seal: () => Uint8Array },
    UnsupportedValue | SchemaMismatch | InvalidPersistOptions | Compression.CompressionError
  >
  /** Encodes to one byte array. */
  readonly encode: (
    value: A,
    options?: EncodeOptions
  ) => Effect.Effect<
    Uint8Array,
    UnsupportedValue | SchemaMismatch | InvalidPersistOptions | Compression.CompressionError
  >
  /** Decodes a whole dump. Typed arrays in the result are views over `bytes` (or over the decompressed body). */
  readonly decode: (
    bytes: Uint8Array,
    options?: DecodeOptions
  ) => Effect.Effect<A, DecodeError | InvalidPersistOptions | Compression.CompressionError>
}

/**
 * @category models
 * @since 0.1.0
 */
export interface EncodeOptions {
  readonly compress?: CompressOption | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export interface DecodeOptions {
  /** Decompress into a SharedArrayBuffer, so that typed arrays can go to worker threads without a copy. */
  readonly shared?: boolean | undefined
  /** Skip the checksum of the stored body (faster; corruption may then go unnoticed). Default true. */
  readonly verify?: boolean | undefined
}

// ---------------------------------------------------------------------------
// schema fingerprints

const describe = (ast: SchemaAST.AST, seen: Set<SchemaAST.AST>): string => {
  switch (ast._tag) {
    case "Literal":
      return `Literal(${typeof ast.literal}:${String(ast.literal)})`
    case "Arrays":
      return `Arrays(${ast.elements.map((e) => describe(e, seen)).join(",")};${
        ast.rest.map((e) => describe(e, seen)).join(",")
      })`
    case "Objects":
      return `Objects(${
        ast.propertySignatures.map((p) =>
          `${String(p.name)}${p.type.context?.isOptional ? "?" : ""}:${describe(p.type, seen)}`
        ).join(",")
      };${ast.indexSignatures.map((i) => `${describe(i.parameter, seen)}=>${describe(i.type, seen)}`).join(",")})`
    case "Union":
      return `Union(${ast.types.map((t) => describe(t, seen)).join("|")})`
    case "Suspend":
      if (seen.has(ast)) return "Suspend(*)"
      seen.add(ast)
      return `Suspend(${describe(ast.thunk(), seen)})`
    case "Declaration": {
      const annotations = ast.annotations as Record<string, unknown> | undefined
      const name = annotations?.["identifier"] ?? annotations?.["expected"] ?? annotations?.["title"] ?? ""
      return `Declaration(${String(name)};${ast.typeParameters.map((t) => describe(t, seen)).join(",")})`
    }
    default:
      return ast._tag
  }
}

const fingerprintOf = (schema: Schema.Top): Effect.Effect<Uint8Array> =>
  Effect.map(xxh128, (hasher) => {
    const ast = schema.ast
    const text = `${describe(ast, new Set())}|encoded:${describe(Schema.toEncoded(schema).ast, new Set())}`
    return digestParts(hasher, [new TextEncoder().encode(text)])
  })

// ---------------------------------------------------------------------------
// encoding

const writeU64 = (view: DataView, offset: number, n: number) => {
  view.setUint32(offset, n % 0x100000000, true)
  view.setUint32(offset + 4, Math.floor(n / 0x100000000), true)
}

const readU64 = (view: DataView, offset: number) =>
  view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x100000000

const headerChecksum = (bytes: Uint8Array): number => {
  // FNV-1a over the first 48 header bytes: the header must be checked before anything else is trusted.
  let h = 0x811c9dc5
  for (let i = 0; i < 48; i++) {
    h ^= bytes[i]!
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/** Lays out the body: head (lengths and section table), structure, then aligned sections. */
const layoutBody = (structure: Uint8Array, sections: ReadonlyArray<Section>) => {
  const headBytes = 16 + TABLE_ENTRY * sections.length
  const parts: Array<Uint8Array> = []
  const head = new Uint8Array(headBytes)
  const view = new DataView(head.buffer)
  writeU64(view, 0, structure.length)
  view.setUint32(8, sections.length, true)
  parts.push(head, structure)
  let offset = headBytes + structure.length
  const pad = (to: number) => {
    const gap = (ALIGN - (offset % ALIGN)) % ALIGN
    if (gap > 0) {
      parts.push(new Uint8Array(gap))
      offset += gap
    }
    return to
  }
  sections.forEach((section, i) => {
    pad(0)
    const entry = 16 + i * TABLE_ENTRY
    view.setUint8(entry, section.kind)
    writeU64(view, entry + 8, offset)
    writeU64(view, entry + 16, section.bytes.byteLength)
    parts.push(section.bytes)
    offset += section.bytes.byteLength
  })
  return { parts, bodyBytes: offset }
}

/** The methods that run here, then each that does not with what would add it. */
const describeMethods = (compressors: ReadonlyArray<Compression.Compressor>) =>
  Effect.map(
    Effect.forEach(compressors, (c) =>
      Effect.map(c.unavailable ?? Effect.succeed(undefined), (why) => [c.name, why] as const)),
    (found) => {
      const runnable = found.filter(([, why]) =>
        why === undefined
      ).map(([name]) => name)
      const missing = found.filter(([, why]) => why !== undefined).map(([name, why]) => `${name} ${why}`)
      return `available here: ${runnable.join(", ")}` + (missing.length > 0 ? `; not here: ${missing.join("; ")}` : "")
    }
  )

const resolveCompression = (
  option: CompressOption | undefined,
  set: Compression.Compression["Service"]
): Effect.Effect<
  { readonly compressor: Compression.Compressor; readonly level: number } | undefined,
  InvalidPersistOptions
> => {
  if (option === undefined || option === false || option === 0) return Effect.succeed(undefined)
  const [name, level] = option === true
    ? [set.defaultMethod, undefined]
    : typeof option === "number"
    ? [set.defaultMethod, option]
    : typeof option === "string"
    ? [option, undefined]
    : option
  const compressor = set.compressors.find((c) => c.name === name)
  if (compressor === undefined) {
    return Effect.flatMap(describeMethods(set.compressors), (methods) =>
      Effect.fail(
        new InvalidPersistOptions({
          option: "compress",
          message: `option "compress": unknown compression method "${name}"; ${methods}`
        })
      ))
  }
  const chosen = level ?? compressor.levels.default
  if (!Number.isInteger(chosen) || chosen < compressor.levels.min || chosen > compressor.levels.max) {
    return Effect.fail(
      new InvalidPersistOptions({
        option: "compress",
        message:
          `option "compress": ${name} levels are ${compressor.levels.min}–${compressor.levels.max}, got ${chosen}`
      })
    )
  }
  return Effect.succeed({ compressor, level: chosen })
}

/** A value or data that does not fit the Schema, as the typed error. */
const schemaMismatch = (error: Mismatch): SchemaMismatch =>
  new SchemaMismatch({
    path: error.where,
    message: `the data does not match the Schema at ${error.where}: ${error.detail}`
  })

/** Writes the structure, with the compiled Schema's writer or the schemaless one. */
const toStructure = (
  value: unknown,
  compiled: Compiled | undefined
): Effect.Effect<{ structure: Uint8Array; sections: Array<Section> }, UnsupportedValue | SchemaMismatch> =>
  Effect.try({
    try: () => {
      const encoder = new Encoder({ sectionBytes: SECTION_BYTES, canonical: false })
      if (compiled === undefined) encoder.value(value)
      else compiled.write(encoder, value)
      return { structure: encoder.result(), sections: encoder.sections }
    },
    catch: (error) =>
      error instanceof Mismatch
        ? schemaMismatch(error)
        : error instanceof Unsupported
        ? new UnsupportedValue({ path: formatPath(error.path), message: error.message })
        : new UnsupportedValue({ path: "the root", message: String(error) })
  })

const encodeUnsealed = <A>(schema: Schema.Codec<A, unknown> | undefined, compiled: Compiled | undefined) =>
  Effect.fnUntraced(function*(value: A, options?: EncodeOptions) {
    const parsed = options === undefined ? undefined : yield* PersistOptions.parse(
      PersistOptions.EncodeOptions,
      "Codec.encode",
      options
    )
    const set = yield* Compression.current
    const compression = yield* resolveCompression(parsed?.compress, set)
    const { structure, sections } = yield* toStructure(value, compiled)
    const body = layoutBody(structure, sections)
    const stored = compression === undefined
      ? body.parts
      : yield* compression.compressor.compress(body.parts, compression.level)
    let storedBytes = 0
    for (const part of stored) storedBytes += part.byteLength
    const hasher = yield* xxh64
    const fingerprint = schema === undefined ? new Uint8Array(16) : yield* fingerprintOf(schema)

    const header = new Uint8Array(HEADER_BYTES)
    const view = new DataView(header.buffer)
    header.set(MAGIC, 0)
    header[8] = VERSION
    header[9] = schema === undefined ? Mode.Schemaless : Mode.Schema
    header[10] = compression?.compressor.id ?? Compression.Ids.none
    header.set(fingerprint, 16)
    writeU64(view, 32, body.bodyBytes)
    writeU64(view, 40, storedBytes)
    view.setUint32(48, headerChecksum(header), true)

    const seal = () => {
      const trailer = new Uint8Array(TRAILER_BYTES)
      trailer.set(digestParts(hasher, stored), 0)
      writeU64(new DataView(trailer.buffer), 8, storedBytes)
      trailer.set(END_MAGIC, 16)
      return trailer
    }
    return { parts: [header, ...stored] as ReadonlyArray<Uint8Array>, seal }
  })

const encodeParts = <A>(
  unsealed: (
    value: A,
    options?: EncodeOptions
  ) => Effect.Effect<
    { readonly parts: ReadonlyArray<Uint8Array>; readonly seal: () => Uint8Array },
    UnsupportedValue | SchemaMismatch | InvalidPersistOptions | Compression.CompressionError
  >
) =>
(value: A, options?: EncodeOptions) =>
  Effect.map(
    unsealed(value, options),
    ({ parts, seal }) => [...parts, seal()] as ReadonlyArray<Uint8Array>
  )

// ---------------------------------------------------------------------------
// decoding

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")

/**
 * Reads and checks a header: magic, version, checksum.
 *
 * **Example** (Inspecting a dump)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Codec } from "effect-joblib"
 *
 * const program = Effect.gen(function*() {
 *   const bytes = yield* Codec.encode(Codec.make(), [1, 2, 3], { compress: true })
 *   return yield* Codec.readHeader(bytes) // { version: 1, mode: "schemaless", compression: 1, ... }
 * })
 * ```
 *
 * @category decoding
 * @since 0.1.0
 */
export const readHeader = (
  bytes: Uint8Array
): Effect.Effect<Header, BadMagic | UnsupportedVersion | Truncated | Corrupted> =>
  Effect.suspend((): Effect.Effect<Header, BadMagic | UnsupportedVersion | Truncated | Corrupted> => {
    const n = Math.min(bytes.length, MAGIC.length)
    for (let i = 0; i < n; i++) {
      if (bytes[i] !== MAGIC[i]) {
        return Effect.fail(
          new BadMagic({
            found: hex(bytes.subarray(0, n)),
            message: `not an effect-joblib dump: starts with ${hex(bytes.subarray(0, n))}, expected ${
              hex(new Uint8Array(MAGIC))
            }`
          })
        )
      }
    }
    if (bytes.length < HEADER_BYTES) {
      return Effect.fail(
        new Truncated({
          expectedBytes: HEADER_BYTES,
          actualBytes: bytes.length,
          message: `the dump ends inside its header (${bytes.length} of ${HEADER_BYTES} bytes)`
        })
      )
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES)
    if (bytes[8] !== VERSION) {
      return Effect.fail(
        new UnsupportedVersion({
          version: bytes[8]!,
          supported: VERSION,
          message: `the dump has format version ${bytes[8]}; this library reads version ${VERSION}`
        })
      )
    }
    // The checksum covers bytes 0-47; the reserved bytes after it are always written as zeros.
    if (view.getUint32(48, true) !== headerChecksum(bytes) || bytes.subarray(52, HEADER_BYTES).some((b) => b !== 0)) {
      return Effect.fail(new Corrupted({ message: "the header checksum does not match: the header is corrupted" }))
    }
    return Effect.succeed<Header>({
      version: bytes[8]!,
      mode: bytes[9] === Mode.Schema ? "schema" : "schemaless",
      compression: bytes[10]!,
      fingerprint: bytes.slice(16, 32),
      bodyBytes: readU64(view, 32),
      storedBytes: readU64(view, 40)
    })
  })

const corrupted = (message: string) => new Corrupted({ message })

/** Splits the body into structure and sections and decodes the value, with the compiled Schema's reader if any. */
const decodeBody = (
  body: Uint8Array,
  compiled: Compiled | undefined
): Effect.Effect<unknown, Corrupted | SchemaMismatch> =>
  Effect.try({
    try: () => {
      if (body.length < 16) throw new Malformed("the body is shorter than its head")
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
      const structureBytes = readU64(view, 0)
      const count = view.getUint32(8, true)
      const headBytes = 16 + TABLE_ENTRY * count
      if (headBytes + structureBytes > body.length) {
        throw new Malformed("the section table or structure overruns the body")
      }
      const sections = Array.from({ length: count }, (_, i) => {
        const entry = 16 + i * TABLE_ENTRY
        const kind = view.getUint8(entry)
        const offset = readU64(view, entry + 8)
        const length = readU64(view, entry + 16)
        if (
          kind > BinaryKind.SharedArrayBuffer || offset + length > body.length || offset < headBytes + structureBytes
        ) {
          throw new Malformed(`section ${i} is out of bounds`)
        }
        return { kind, offset, length }
      })
      const decoder = new Decoder(body.subarray(headBytes, headBytes + structureBytes), (index, kind) => {
        const section = sections[index]
        if (section === undefined || section.kind !== kind) throw new Malformed(`bad section reference ${index}`)
        return binaryFrom(kind, body.subarray(section.offset, section.offset + section.length))
      })
      const value = compiled === undefined ? decoder.value() : compiled.read(decoder)
      if (decoder.pos !== structureBytes) throw new Malformed("the structure has trailing bytes")
      return value
    },
    catch: (error) =>
      error instanceof Mismatch
        ? schemaMismatch(error)
        : corrupted(error instanceof Malformed ? `malformed dump: ${error.message}` : String(error))
  })

const decodeBytes = <A>(compiled: Compiled | undefined) =>
  Effect.fnUntraced(function*(bytes: Uint8Array, rawOptions?: DecodeOptions) {
    const options = rawOptions === undefined
      ? undefined
      : yield* PersistOptions.parse(PersistOptions.DecodeOptions, "Codec.decode", rawOptions)
    const header = yield* readHeader(bytes)
    const total = HEADER_BYTES + header.storedBytes + TRAILER_BYTES
    if (bytes.length < total) {
      return yield* new Truncated({
        expectedBytes: total,
        actualBytes: bytes.length,
        message: `the dump is truncated: ${bytes.length} of ${total} bytes`
      })
    }
    if (bytes.length > total) {
      return yield* corrupted(`the dump has ${bytes.length - total} bytes after its end`)
    }
    const trailer = bytes.subarray(total - TRAILER_BYTES, total)
    for (let i = 0; i < END_MAGIC.length; i++) {
      if (trailer[16 + i] !== END_MAGIC[i]) return yield* corrupted("the end marker is damaged")
    }
    if (readU64(new DataView(trailer.buffer, trailer.byteOffset, TRAILER_BYTES), 8) !== header.storedBytes) {
      return yield* corrupted("the trailer's length does not match the header's")
    }
    const stored = bytes.subarray(HEADER_BYTES, HEADER_BYTES + header.storedBytes)
    if (options?.verify !== false) {
      const actual = knownDigest(bytes, header.storedBytes) ?? digestParts(yield* xxh64, [stored])
      const expected = trailer.subarray(0, 8)
      if (actual.length !== expected.length || actual.some((byte, i) => byte !== expected[i])) {
        return yield* corrupted(
          `checksum mismatch: the stored body hashes to ${hex(actual)}, expected ${hex(expected)}`
        )
      }
    }
    let body = stored
    if (header.compression !== Compression.Ids.none) {
      const set = yield* Compression.current
      const compressor = set.compressors.find((c) => c.id === header.compression)
      if (compressor === undefined) {
        return yield* new UnknownCompression({
          method: `id ${header.compression}`,
          message: `the dump is compressed with method id ${header.compression}, which no provided compressor has; ` +
            `available: ${set.compressors.map((c) => `${c.name} (${c.id})`).join(", ")}`
        })
      }
      body = yield* compressor.decompress(stored, header.bodyBytes)
      if (options?.shared === true) body = concat([body], { shared: true })
    } else if (stored.length !== header.bodyBytes) {
      return yield* corrupted("the body length does not match the header")
    } else if (options?.shared === true && !(stored.buffer instanceof SharedArrayBuffer)) {
      body = concat([stored], { shared: true })
    }
    // Typed arrays are views over the body: bytes handed over at an unaligned offset are copied once.
    if (body.byteOffset % 8 !== 0) body = body.slice()
    return (yield* decodeBody(body, compiled)) as A
  })

/**
 * Makes a codec. Without a Schema it is schemaless: it encodes plain data
 * (objects, arrays, strings, numbers including -0/NaN/±Infinity, bigint,
 * booleans, null, undefined, Date, Map, Set, every TypedArray, DataView,
 * ArrayBuffer), nested arbitrarily. With a Schema it encodes through it, so
 * class instances round-trip and decoded values are validated.
 *
 * **Example** (A Schema-typed round trip)
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Codec } from "effect-joblib"
 *
 * class Point extends Schema.Class<Point>("Point")({ x: Schema.Number, y: Schema.Number }) {}
 * const codec = Codec.make(Point)
 * const program = Effect.gen(function*() {
 *   const bytes = yield* codec.encode(new Point({ x: 1, y: 2 }), { compress: true })
 *   return yield* codec.decode(bytes) // a Point
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: {
  (): Codec<unknown>
  <S extends Schema.Top>(schema: S): Codec<S["Type"]>
} = <S extends Schema.Top>(schema?: S): Codec<any> => {
  const codec = schema as Schema.Codec<any, unknown> | undefined
  const compiled = schema === undefined ? undefined : compileSchema(schema)
  const unsealed = encodeUnsealed(codec, compiled)
  const parts = encodeParts(unsealed)
  return {
    schema: codec,
    encodeParts: parts,
    encodeUnsealed: unsealed,
    encode: (value, options) => Effect.map(parts(value, options), concat),
    decode: decodeBytes(compiled)
  }
}

/**
 * Joins byte arrays into one, optionally in shared memory.
 *
 * **Example** (Joining the parts of a dump)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Codec } from "effect-joblib"
 *
 * const bytes = Effect.map(Codec.make().encodeParts([1, 2, 3]), (parts) => Codec.concat(parts))
 * ```
 *
 * @category utilities
 * @since 0.1.0
 */
export const concat = (
  parts: ReadonlyArray<Uint8Array>,
  options?: { readonly shared?: boolean | undefined }
): Uint8Array => {
  let length = 0
  for (const part of parts) length += part.byteLength
  const out = new Uint8Array(options?.shared === true ? new SharedArrayBuffer(length) : new ArrayBuffer(length))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}

/**
 * Encodes a value with a codec; the dual form of `codec.encode`.
 *
 * **Example** (Schemaless bytes)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Codec } from "effect-joblib"
 *
 * const bytes = Effect.runPromise(Codec.encode(Codec.make(), { a: new Float64Array([1, 2]) }))
 * ```
 *
 * @category encoding
 * @since 0.1.0
 */
export const encode = <A>(codec: Codec<A>, value: A, options?: EncodeOptions) => codec.encode(value, options)

/**
 * Decodes bytes with a codec; the dual form of `codec.decode`.
 *
 * **Example** (Schemaless round trip)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Codec } from "effect-joblib"
 *
 * const codec = Codec.make()
 * const same = Effect.flatMap(Codec.encode(codec, [1, "two"]), (bytes) => Codec.decode(codec, bytes))
 * ```
 *
 * @category decoding
 * @since 0.1.0
 */
export const decode = <A>(codec: Codec<A>, bytes: Uint8Array, options?: DecodeOptions) => codec.decode(bytes, options)

/**
 * The typed-array constructors a Schema field can name with {@link typedArray}.
 *
 * @category models
 * @since 0.6.0
 */
export type TypedArrayConstructor =
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor

/**
 * A Schema field holding a typed array of one kind, over any buffer (a `SharedArrayBuffer` after a
 * `shared` load included). The codec stores it as a raw, aligned section of the dump, and loads it back
 * without a copy; a value of another kind fails with a `SchemaMismatch` that names the kind and the field.
 *
 * **Example** (A record with a vector)
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Codec, Persist } from "effect-joblib"
 *
 * const Embedding = Schema.Struct({ id: Schema.String, vector: Codec.typedArray(Float64Array) })
 *
 * const program = Persist.dump({ id: "a", vector: new Float64Array(1024) }, "/tmp/a.bin", { schema: Embedding }).pipe(
 *   Effect.andThen(Persist.load("/tmp/a.bin", Embedding)),
 *   Effect.map((embedding) => embedding.vector.length) // 1024
 * )
 * ```
 *
 * @category schemas
 * @since 0.6.0
 */
export const typedArray = <C extends TypedArrayConstructor>(
  constructor: C
): Schema.declare<InstanceType<C> extends { readonly [Symbol.toStringTag]: infer Kind } ? TypedArrayOf<Kind> : never> =>
  Schema.declare(
    (u: unknown): u is any => u instanceof constructor,
    {
      identifier: constructor.name,
      expected: `a ${constructor.name}`,
      title: constructor.name,
      [TYPED_ARRAY_ANNOTATION]: constructor
    }
  )

/**
 * The typed array of the kind named `Kind` (its `Symbol.toStringTag`), over any buffer: what a
 * {@link typedArray} field holds.
 *
 * **Example** (The type of a Float64Array field)
 *
 * ```ts
 * import type { Codec } from "effect-joblib"
 *
 * const vector: Codec.TypedArrayOf<"Float64Array"> = new Float64Array(new SharedArrayBuffer(16))
 * ```
 *
 * @category models
 * @since 0.6.0
 */
export type TypedArrayOf<Kind> = Kind extends "Int8Array" ? Int8Array<ArrayBufferLike>
  : Kind extends "Uint8Array" ? Uint8Array<ArrayBufferLike>
  : Kind extends "Uint8ClampedArray" ? Uint8ClampedArray<ArrayBufferLike>
  : Kind extends "Int16Array" ? Int16Array<ArrayBufferLike>
  : Kind extends "Uint16Array" ? Uint16Array<ArrayBufferLike>
  : Kind extends "Int32Array" ? Int32Array<ArrayBufferLike>
  : Kind extends "Uint32Array" ? Uint32Array<ArrayBufferLike>
  : Kind extends "Float32Array" ? Float32Array<ArrayBufferLike>
  : Kind extends "Float64Array" ? Float64Array<ArrayBufferLike>
  : Kind extends "BigInt64Array" ? BigInt64Array<ArrayBufferLike>
  : Kind extends "BigUint64Array" ? BigUint64Array<ArrayBufferLike>
  : never
