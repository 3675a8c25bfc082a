import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Schema } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { Codec, Compression, PersistError } from "../src/index.ts"
import { Encoder } from "../src/internal/codec/encoder.ts"
import { everything } from "./fixtures/values.ts"

// A custom compressor's name, added to the names `compress` takes, as a user adds theirs.
declare module "../src/Compression.ts" {
  interface Methods {
    readonly reverse: true
  }
}

const codec = Codec.make()
const roundTrip = (value: unknown, options?: Codec.EncodeOptions & Codec.DecodeOptions) =>
  Effect.flatMap(
    codec.encode(value, options?.compress === undefined ? undefined : { compress: options.compress }),
    (bytes) => codec.decode(bytes, options?.shared === undefined ? undefined : { shared: options.shared })
  )

const methods: ReadonlyArray<Codec.CompressOption> = [false, true, "zstd", "gzip", ["zlib", 6], "brotli"]

/** A plain-data schema covering what Schema arbitraries generate well. */
const Record = Schema.Struct({
  n: Schema.Number,
  i: Schema.Int,
  s: Schema.String,
  b: Schema.Boolean,
  big: Schema.BigInt,
  list: Schema.Array(Schema.Union([Schema.String, Schema.Number, Schema.Null])),
  maybe: Schema.optional(Schema.String),
  bytes: Schema.Uint8Array,
  nested: Schema.Array(Schema.Struct({ k: Schema.String, v: Schema.Array(Schema.Int) }))
})

class Point extends Schema.Class<Point>("Point")({ x: Schema.Number, y: Schema.Number }) {}
class Shape extends Schema.Class<Shape>("Shape")({
  name: Schema.String,
  points: Schema.Array(Point),
  created: Schema.Date,
  weights: Schema.Uint8Array
}) {}

describe("Codec", () => {
  describe("schemaless round trips", () => {
    for (const compress of methods) {
      it.effect(`every supported type, compress: ${JSON.stringify(compress)}`, () =>
        Effect.gen(function*() {
          const value = everything()
          assert.deepStrictEqual(yield* roundTrip(value, { compress }), value)
        }))
    }

    it.effect.prop("generated records survive schemaless encoding", [Record], ([value]) =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* roundTrip(value), value)
      }))

    it.effect.prop("generated records survive every compressor", [Record], ([value]) =>
      Effect.gen(function*() {
        for (const compress of methods) assert.deepStrictEqual(yield* roundTrip(value, { compress }), value)
      }), { arbitrary: { runs: 25 } })

    it.effect("sparse arrays keep their holes; -0 stays -0", () =>
      Effect.gen(function*() {
        // oxlint-disable-next-line no-sparse-arrays
        const sparse = [1, , 3]
        // oxlint-disable-next-line no-sparse-arrays
        const trailing = [1, 2, ,]
        const back = (yield* roundTrip({ sparse, trailing, zero: -0 })) as {
          sparse: Array<number>
          trailing: Array<number>
          zero: number
        }
        assert.isFalse(1 in back.sparse)
        assert.strictEqual(back.sparse.length, 3)
        assert.strictEqual(back.trailing.length, 3, "a trailing hole keeps the length")
        assert.isFalse(2 in back.trailing)
        // Small arrays are read into literals: holes anywhere, and inside nested small arrays, stay holes.
        // oxlint-disable-next-line no-sparse-arrays
        const nested = [[, 1], [1, , [, , 2]], , [3]]
        const nestedBack = (yield* roundTrip(nested)) as typeof nested
        assert.deepStrictEqual(nestedBack, nested)
        assert.deepStrictEqual(Array.from(nestedBack, (_, i) => i in nestedBack), [true, true, false, true])
        assert.isFalse(0 in (nestedBack[0] as Array<unknown>))
        assert.isFalse(1 in (nestedBack[1] as Array<unknown>))
        const inner = (nestedBack[1] as Array<unknown>)[2] as Array<unknown>
        assert.deepStrictEqual(Array.from(inner, (_, i) => i in inner), [false, false, true])
        assert.isTrue(Object.is(back.zero, -0))
      }))
  })

  describe("raw sections", () => {
    it.effect("big typed arrays decode as aligned views over the input, without copies", () =>
      Effect.gen(function*() {
        const walk = Float64Array.from({ length: 100_000 }, (_, i) => i / 3)
        const bytes = yield* codec.encode({ walk, ints: new Int32Array(1001).fill(7) })
        const back = (yield* codec.decode(bytes)) as { walk: Float64Array; ints: Int32Array }
        assert.strictEqual(back.walk.buffer, bytes.buffer, "a view over the decoded bytes, not a copy")
        assert.strictEqual(back.walk.byteOffset % 64, 0)
        assert.strictEqual(back.ints.byteOffset % 64, 0)
        assert.deepStrictEqual(back.walk, walk)
      }))

    it.effect("decoding into shared memory gives SharedArrayBuffer-backed arrays", () =>
      Effect.gen(function*() {
        for (const compress of [false, true]) {
          const bytes = yield* codec.encode({ walk: new Float64Array(1000).fill(1) }, { compress })
          const back = (yield* codec.decode(bytes, { shared: true })) as { walk: Float64Array }
          assert.instanceOf(back.walk.buffer, SharedArrayBuffer)
          assert.strictEqual(back.walk[999], 1)
        }
      }))
  })

  describe("schema mode", () => {
    it.effect("Codec.typedArray fields of every kind keep raw, aligned sections, read back in place", () =>
      Effect.gen(function*() {
        const kinds = [
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
          BigUint64Array
        ] as const
        for (const kind of kinds) {
          const Row = Schema.Struct({ name: Schema.String, data: Codec.typedArray(kind) })
          const codec = Codec.make(Row)
          const data = new kind(1000)
          const value = { name: kind.name, data } as typeof Row.Type
          const bytes = yield* codec.encode(value)
          const back = yield* codec.decode(bytes)
          assert.isTrue(back.data instanceof kind, kind.name)
          assert.deepStrictEqual(back.data, data, kind.name)
          assert.strictEqual(back.data.byteOffset % kind.BYTES_PER_ELEMENT, 0, `${kind.name} aligned`)
          assert.strictEqual(back.data.buffer, bytes.buffer, `${kind.name} read in place, not copied`)
        }
        const Row = Schema.Struct({ vector: Codec.typedArray(Float64Array) })
        const wrong = yield* Effect.flip(Codec.make(Row).encode({ vector: new Float32Array(2) } as never))
        assert.instanceOf(wrong, PersistError.SchemaMismatch)
        assert.include(wrong.message, "Float64Array")
        assert.include(wrong.message, "vector")
      }))

    it.effect("class instances, Dates and bytes round-trip through their Schema", () =>
      Effect.gen(function*() {
        const shapes = Codec.make(Schema.Array(Shape))
        const value = [
          new Shape({
            name: "triangle",
            points: [new Point({ x: 0, y: 0 }), new Point({ x: 1, y: 0 }), new Point({ x: 0, y: 1 })],
            created: new Date(0),
            weights: new Uint8Array(512).fill(3)
          })
        ]
        for (const compress of methods) {
          const back = yield* Effect.flatMap(shapes.encode(value, { compress }), (bytes) => shapes.decode(bytes))
          assert.instanceOf(back[0], Shape)
          assert.instanceOf(back[0]!.points[2], Point)
          assert.deepStrictEqual(back, value)
        }
        const header = yield* Codec.readHeader(yield* shapes.encode(value))
        assert.strictEqual(header.mode, "schema")
        assert.isTrue(header.fingerprint.some((byte) => byte !== 0))
      }))

    it.effect.prop("generated values survive schema mode", [Record], ([value]) =>
      Effect.gen(function*() {
        const typed = Codec.make(Record)
        assert.deepStrictEqual(yield* Effect.flatMap(typed.encode(value, { compress: true }), typed.decode), value)
      }), { arbitrary: { runs: 25 } })

    it.effect("compatible evolution: a new optional field, a removed field", () =>
      Effect.gen(function*() {
        const V1 = Schema.Struct({ id: Schema.Int, name: Schema.String, legacy: Schema.String })
        const V2 = Schema.Struct({ id: Schema.Int, name: Schema.String, email: Schema.optional(Schema.String) })
        const bytes = yield* Codec.make(V1).encode({ id: 1, name: "ada", legacy: "x" })
        assert.deepStrictEqual(yield* Codec.make(V2).decode(bytes), { id: 1, name: "ada" })
      }))

    it.effect("incompatible data fails with SchemaMismatch naming the field", () =>
      Effect.gen(function*() {
        const V1 = Schema.Struct({ id: Schema.Int, profile: Schema.Struct({ age: Schema.String }) })
        const V3 = Schema.Struct({ id: Schema.Int, profile: Schema.Struct({ age: Schema.Number }) })
        const bytes = yield* Codec.make(V1).encode({ id: 1, profile: { age: "old" } })
        const error = yield* Effect.flip(Codec.make(V3).decode(bytes))
        assert.instanceOf(error, PersistError.SchemaMismatch)
        assert.include((error as PersistError.SchemaMismatch).path, `["profile"]["age"]`)
        const missing = yield* Effect.flip(
          Codec.make(Schema.Struct({ id: Schema.Int, email: Schema.String })).decode(bytes)
        )
        assert.include((missing as PersistError.SchemaMismatch).path, `["email"]`)
      }))

    it.effect("encoding a value that does not match the Schema fails", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Codec.make(Schema.Struct({ n: Schema.Int })).encode({ n: 1.5 }))
        assert.instanceOf(error, PersistError.SchemaMismatch)
      }))
  })

  describe("records", () => {
    const codec = Codec.make()
    const roundTrip = (value: unknown) => Effect.flatMap(codec.encode(value), (bytes) => codec.decode(bytes))

    it.effect("many objects of one shape come back equal, with their keys in order", () =>
      Effect.gen(function*() {
        const rows = Array.from({ length: 1000 }, (_, i) => ({ id: i, name: `n${i % 7}`, score: i / 3, tags: [i] }))
        const back = (yield* roundTrip(rows)) as typeof rows
        assert.deepStrictEqual(back, rows)
        assert.deepStrictEqual(Object.keys(back[999]!), ["id", "name", "score", "tags"])
        // Shapes that differ in one key, interleaved.
        const mixed = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? { a: i, b: i } : { a: i, c: i }))
        assert.deepStrictEqual(yield* roundTrip(mixed), mixed)
      }))

    it.effect("a field of strings that do not repeat stops being interned; one that repeats later is again", () =>
      Effect.gen(function*() {
        const uuids = Array.from({ length: 10_000 }, () => ({ id: Crypto.randomUUID(), city: "Paris" }))
        const names = Array.from({ length: 1000 }, (_, i) => `name-${i}`)
        const cyclic = Array.from({ length: 20_000 }, (_, i) => ({ name: names[i % 1000]! }))
        const kept = (value: unknown) => {
          const encoder = new Encoder({ sectionBytes: 1 << 20, canonical: false })
          encoder.value(value)
          return encoder["strings"].size
        }
        // Kept: the keys, "Paris", and the ids of the first windows only (10,000 otherwise).
        assert.isBelow(kept(uuids), 600)
        // Names come back after 1,000 rows: the field is turned off, then on again when they are found.
        assert.isAtLeast(kept(cyclic), 1000)
        for (const value of [uuids, cyclic, [...uuids, ...cyclic, ...uuids.slice(0, 300)]]) {
          const bytes = yield* codec.encode(value)
          assert.deepStrictEqual(yield* codec.decode(bytes), value)
          assert.deepStrictEqual(yield* codec.encode(value), bytes, "the same value gives the same bytes")
        }
      }))

    it.effect("a key is only ever data, whatever it holds", () =>
      Effect.gen(function*() {
        const canary = globalThis as { ejlPwned?: number }
        delete canary.ejlPwned
        const keys = [
          `"]);process.exit(1);//`,
          `"}; globalThis.ejlPwned = 1; ({"`,
          "`${globalThis.ejlPwned = 2}`",
          "\\\"",
          "\u2028\u2029 line separators",
          "\ud800 a lone surrogate",
          "constructor",
          "toString",
          "",
          "0",
          "-1"
        ]
        const row = Object.fromEntries(keys.map((key, i) => [key, i]))
        const rows = Array.from({ length: 50 }, () => ({ ...row }))
        const back = (yield* roundTrip(rows)) as Array<Record<string, number>>
        assert.deepStrictEqual(back, rows)
        assert.deepStrictEqual(Object.keys(back[49]!).sort(), Object.keys(row).sort())
        assert.isUndefined(canary.ejlPwned)
      }))

    it.effect("a __proto__ key stays an own property, in records too", () =>
      Effect.gen(function*() {
        const make = (i: number) =>
          JSON.parse(`{"__proto__": {"polluted": ${i}}, "x": ${i}}`) as Record<string, unknown>
        const rows = Array.from({ length: 50 }, (_, i) => make(i))
        const back = (yield* roundTrip(rows)) as Array<Record<string, unknown>>
        assert.deepStrictEqual(
          back.map((row) => Object.getOwnPropertyDescriptor(row, "__proto__")?.value),
          rows.map((_, i) => ({ polluted: i }))
        )
        assert.strictEqual(Object.getPrototypeOf(back[49]), Object.prototype)
        assert.isUndefined(({} as Record<string, unknown>).polluted)
      }))
  })

  describe("values that cannot be encoded", () => {
    it.effect("functions, symbols, cycles and class instances without a Schema", () =>
      Effect.gen(function*() {
        const cycle: Record<string, unknown> = {}
        cycle.self = cycle
        for (
          const [value, path, words] of [
            [{ f: () => 1 }, `["f"]`, "function"],
            [[1, Symbol("s")], "[1]", "symbol"],
            [cycle, `["self"]`, "circular"],
            [{ p: new Point({ x: 1, y: 2 }) }, `["p"]`, "Point"]
          ] as const
        ) {
          const error = yield* Effect.flip(codec.encode(value))
          assert.instanceOf(error, PersistError.UnsupportedValue)
          assert.isTrue((error as PersistError.UnsupportedValue).path.startsWith(path), error.message)
          assert.include(error.message, words)
        }
      }))
  })

  describe("big and deep values", () => {
    it.effect("bigints of any size round-trip, in linear time (a 1 MB bigint, both signs)", () =>
      Effect.gen(function*() {
        const bytes = Crypto.randomBytes(1 << 20)
        const big = BigInt(`0x${bytes.toString("hex")}`)
        const values = [0n, 1n, -1n, 255n, 256n, -65536n, 2n ** 64n + 1n, big, -big]
        assert.deepStrictEqual(yield* roundTrip(values), values)
      }))

    it.effect("whatever dump writes, load reads: nesting is capped at the same depth on both sides", () =>
      Effect.gen(function*() {
        const nest = (levels: number) => {
          let value: unknown = []
          for (let i = 1; i < levels; i++) value = [value]
          return value
        }
        const deepest = nest(1000)
        assert.deepStrictEqual(yield* roundTrip(deepest), deepest)
        const error = yield* Effect.flip(codec.encode(nest(3000)))
        assert.instanceOf(error, PersistError.UnsupportedValue)
        assert.include(error.message, "nested deeper than 1000 levels")
        // The message keeps the path's two ends; the error's path field has all of it.
        assert.isBelow(error.message.length, 200)
        assert.include(error.message, "…(984 more)…")
        assert.strictEqual((error as PersistError.UnsupportedValue).path, "[0]".repeat(1000))
      }))

    it.effect("a cycle found deep down is named by a short message", () =>
      Effect.gen(function*() {
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        const error = yield* Effect.flip(codec.encode(cyclic))
        assert.instanceOf(error, PersistError.UnsupportedValue)
        assert.match(
          error.message,
          /^cannot encode a circular reference at (\["self"\]){8}…\(\d+ more\)…(\["self"\]){8}$/
        )
      }))

    it.effect("a crafted bigint length is rejected, not allocated", () =>
      Effect.gen(function*() {
        const bytes = yield* codec.encode(123n)
        // The structure is [tag, sign, varint length, bytes]: claim a length far past the end.
        const body = Array.from(bytes).findIndex((_, i) => bytes[i] === 0x88 && bytes[i + 2] === 1)
        assert.isAbove(body, 63, "the bigint is in the body")
        const crafted = bytes.slice()
        crafted[body + 2] = 0x7f
        const exit = yield* Effect.exit(codec.decode(crafted, { verify: false }))
        assert.isTrue(Exit.isFailure(exit))
        assert.isFalse(Cause.hasDies((exit as Exit.Failure<unknown, unknown>).cause))
      }))

    it.effect("mutated files are rejected or loaded, each within a generous time budget", () =>
      Effect.gen(function*() {
        const whole = yield* codec.encode({ ...everything(), big: 2n ** 4000n, deep: [[[[[1]]]]] })
        let state = 42
        const random = () => (state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x80000000
        for (let round = 0; round < 200; round++) {
          const mutated = whole.slice()
          for (let flips = 1 + Math.floor(random() * 4); flips > 0; flips--) {
            mutated[64 + Math.floor(random() * (mutated.length - 88))] = Math.floor(random() * 256)
          }
          const started = performance.now()
          const exit = yield* Effect.exit(codec.decode(mutated, { verify: false }))
          const elapsed = performance.now() - started
          // Linear work on a few kilobytes takes well under a millisecond; a quadratic or runaway path does not.
          assert.isBelow(elapsed, 2000, `round ${round} took ${elapsed} ms`)
          if (Exit.isFailure(exit)) assert.isFalse(Cause.hasDies(exit.cause), Cause.pretty(exit.cause))
        }
      }))
  })

  describe("bad input", () => {
    const sample = () => codec.encode(everything())

    it.effect("wrong magic", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(codec.decode(new TextEncoder().encode("PK\u0003\u0004 not a dump at all")))
        assert.instanceOf(error, PersistError.BadMagic)
      }))

    it.effect("a newer format version", () =>
      Effect.gen(function*() {
        const bytes = (yield* sample()).slice()
        bytes[8] = 2
        const error = yield* Effect.flip(codec.decode(bytes))
        assert.instanceOf(error, PersistError.UnsupportedVersion)
        assert.strictEqual((error as PersistError.UnsupportedVersion).version, 2)
      }))

    it.effect("an unknown compression method", () =>
      Effect.gen(function*() {
        const custom: Compression.Compressor = {
          id: 201,
          name: "reverse",
          extensions: [],
          levels: { min: 0, max: 0, default: 0 },
          compress: (parts) => Effect.succeed(parts.map((part) => part.slice().reverse()).reverse()),
          decompress: (data) => Effect.sync(() => data.slice().reverse())
        }
        const bytes = yield* codec.encode([1, 2, 3], { compress: "reverse" }).pipe(
          Effect.provide(Compression.layerWith(custom))
        )
        assert.deepStrictEqual(
          yield* codec.decode(bytes).pipe(Effect.provide(Compression.layerWith(custom))),
          [1, 2, 3],
          "a custom compressor provided by a Layer works"
        )
        const error = yield* Effect.flip(codec.decode(bytes))
        assert.instanceOf(error, PersistError.UnknownCompression)
        assert.include(error.message, "201")
      }))

    it.effect("truncation at every boundary: header, structure, each section, trailer", () =>
      Effect.gen(function*() {
        const bytes = yield* sample()
        const view = new DataView(bytes.buffer, bytes.byteOffset + Codec.HEADER_BYTES)
        const count = view.getUint32(8, true)
        const cuts = new Set([0, 1, 7, 8, 63, 64, 65, 80, bytes.length - 24, bytes.length - 1])
        for (let i = 0; i < count; i++) {
          const offset = Codec.HEADER_BYTES + view.getUint32(16 + i * 24 + 8, true)
          cuts.add(offset)
          cuts.add(offset + 1)
          cuts.add(offset + view.getUint32(16 + i * 24 + 16, true) - 1)
        }
        assert.isAtLeast(count, 4, "the sample has several sections")
        for (const cut of cuts) {
          const error = yield* Effect.flip(codec.decode(bytes.subarray(0, cut)))
          assert.instanceOf(error, PersistError.Truncated, `cut at ${cut}: ${error._tag}`)
        }
      }))

    it.effect("a flipped byte anywhere is caught", () =>
      Effect.gen(function*() {
        const bytes = yield* sample()
        // Every header and trailer byte, and a spread of body bytes.
        const positions = [
          ...Array.from({ length: 64 }, (_, i) => i),
          ...Array.from({ length: 200 }, (_, i) => 64 + Math.floor((i * (bytes.length - 88)) / 200)),
          ...Array.from({ length: 24 }, (_, i) => bytes.length - 24 + i)
        ]
        for (const [i, at] of positions.entries()) {
          const flipped = bytes.slice()
          flipped[at]! ^= 1 << (i % 8)
          const error = yield* Effect.flip(codec.decode(flipped))
          assert.include(["Corrupted", "BadMagic", "UnsupportedVersion", "Truncated", "UnknownCompression"], error._tag)
        }
      }))

    it.effect("a crafted structure cannot pollute prototypes", () =>
      Effect.gen(function*() {
        const hostile = JSON.parse(`{"__proto__": {"polluted": true}, "a": 1}`)
        const back = (yield* roundTrip(hostile)) as Record<string, unknown>
        assert.isUndefined(({} as Record<string, unknown>).polluted)
        assert.strictEqual(Object.getPrototypeOf(back), Object.prototype)
        assert.deepStrictEqual(Object.getOwnPropertyDescriptor(back, "__proto__")?.value, { polluted: true })
      }))

    it.effect("bad compression options are typed errors", () =>
      Effect.gen(function*() {
        for (const compress of ["snappy", ["zstd", 99], ["gzip", 1.5], ["lz4", 17]] as const) {
          // @ts-expect-error: "snappy" is no method's name, which tsc refuses; a JavaScript caller gets the error
          const error = yield* Effect.flip(codec.encode([1], { compress }))
          assert.instanceOf(error, PersistError.InvalidPersistOptions)
        }
      }))
  })

  describe("golden files", () => {
    const golden = (name: string) => new URL(`./fixtures/golden/${name}`, import.meta.url)
    // Regenerate with UPDATE_GOLDEN=1 only together with a format version bump.
    const update = process.env.UPDATE_GOLDEN === "1"

    it.effect("the format is locked: encoding a fixed value gives the committed bytes", () =>
      Effect.gen(function*() {
        const bytes = yield* codec.encode(everything())
        if (update) Fs.writeFileSync(golden("everything.v1.ejlb"), bytes)
        assert.deepStrictEqual(bytes, new Uint8Array(Fs.readFileSync(golden("everything.v1.ejlb"))))
      }))

    it.effect("committed dumps still decode, every method", () =>
      Effect.gen(function*() {
        for (const method of ["zstd", "gzip", "zlib", "brotli", "lz4", "xz", "lzma"] as const) {
          const file = golden(`everything.v1.${method}.ejlb`)
          if (update) Fs.writeFileSync(file, yield* codec.encode(everything(), { compress: method }))
          assert.deepStrictEqual(yield* codec.decode(new Uint8Array(Fs.readFileSync(file))), everything())
        }
        const header = yield* Codec.readHeader(new Uint8Array(Fs.readFileSync(golden("everything.v1.ejlb"))))
        assert.strictEqual(header.version, Codec.VERSION)
      }))
  })
})

describe("Compression", () => {
  const parts = [new TextEncoder().encode("hello ".repeat(1000)), new Uint8Array(5000).fill(7)]
  const joined = Codec.concat(parts)
  const all = [
    Compression.zstd,
    Compression.gzip,
    Compression.zlib,
    Compression.brotli,
    Compression.fflateGzip,
    Compression.fflateZlib
  ]

  it.effect("every compressor round-trips parts without joining them", () =>
    Effect.gen(function*() {
      for (const compressor of all) {
        const compressed = Codec.concat(yield* compressor.compress(parts, compressor.levels.default))
        assert.isBelow(compressed.length, joined.length / 10, compressor.name)
        assert.deepStrictEqual(yield* compressor.decompress(compressed, joined.length), joined)
      }
    }))

  it.effect("fflate and node:zlib read each other's gzip and zlib", () =>
    Effect.gen(function*() {
      for (
        const [a, b] of [[Compression.gzip, Compression.fflateGzip], [
          Compression.zlib,
          Compression.fflateZlib
        ]] as const
      ) {
        for (const [writer, reader] of [[a, b], [b, a]] as const) {
          assert.deepStrictEqual(
            yield* reader.decompress(Codec.concat(yield* writer.compress(parts, 3)), joined.length),
            joined
          )
        }
      }
    }))

  it.effect("corrupt or mis-sized compressed data is a CompressionError", () =>
    Effect.gen(function*() {
      for (const compressor of all) {
        const compressed = Codec.concat(yield* compressor.compress(parts, compressor.levels.default))
        for (const size of [joined.length - 1, joined.length + 1]) {
          const wrongSize = yield* Effect.flip(compressor.decompress(compressed, size))
          assert.instanceOf(wrongSize, Compression.CompressionError, `${compressor.name} to ${size}`)
        }
        const garbage = yield* Effect.flip(compressor.decompress(new Uint8Array(64).fill(0xab), 100))
        assert.instanceOf(garbage, Compression.CompressionError, compressor.name)
        if (["zstd", "gzip", "zlib", "brotli"].includes(compressor.name)) {
          assert.isDefined((garbage as Compression.CompressionError).cause, `${compressor.name}: its own error is kept`)
        }
        assert.isTrue(PersistError.isPersistError(garbage), "a compressor's error is one of the family")
      }
    }))

  it.effect("the fflate layer compresses with gzip by default", () =>
    Effect.gen(function*() {
      const bytes = yield* Codec.make().encode([1, 2, 3], { compress: true }).pipe(
        Effect.provide(Compression.layerFflate)
      )
      assert.strictEqual((yield* Codec.readHeader(bytes)).compression, Compression.Ids.gzip)
      assert.deepStrictEqual(yield* Codec.make().decode(bytes), [1, 2, 3], "read back by node:zlib")
      const zstd = yield* Codec.make().encode([1], { compress: "zstd" }).pipe(
        Effect.provide(Compression.layerFflate),
        Effect.flip
      )
      assert.instanceOf(zstd, PersistError.InvalidPersistOptions)
      assert.include(zstd.message, "available here: gzip, zlib")
    }))

  it.effect("compressors added by layerWith add up under Layer.mergeAll, provideMerge and nested provide", () =>
    Effect.gen(function*() {
      const one: Compression.Compressor = { ...Compression.gzip, id: 151, name: "one", extensions: [".one"] }
      const two: Compression.Compressor = { ...Compression.gzip, id: 152, name: "two", extensions: [".two"] }
      const names = Effect.map(Compression.current, (set) => set.compressors.map((c) => c.name))
      const forms = [
        names.pipe(Effect.provide(Layer.mergeAll(Compression.layerWith(one), Compression.layerWith(two)))),
        names.pipe(Effect.provide(Layer.provideMerge(Compression.layerWith(one), Compression.layerWith(two)))),
        names.pipe(Effect.provide(Compression.layerWith(one)), Effect.provide(Compression.layerWith(two)))
      ]
      for (const form of forms) {
        const found = yield* form
        assert.include(found, "one")
        assert.include(found, "two")
        assert.include(found, "zstd", "Node's own set stays under the additions")
      }
      const fflate = yield* names.pipe(
        Effect.provide(Layer.mergeAll(Compression.layerFflate, Compression.layerWith(one)))
      )
      assert.deepStrictEqual(fflate, ["gzip", "zlib", "one"], "additions go on the provided set")
    }))

  it.effect("layerWith can make a custom compressor the default", () =>
    Effect.gen(function*() {
      const tagged: Compression.Compressor = { ...Compression.gzip, id: 150, name: "tagged-gzip" }
      const bytes = yield* Codec.make().encode("x", { compress: true }).pipe(
        Effect.provide(Layer.fresh(Compression.layerWith(tagged, { asDefault: true })))
      )
      assert.strictEqual((yield* Codec.readHeader(bytes)).compression, 150)
    }))
})
