import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { createXXHash128 } from "hash-wasm"
import * as Crypto from "node:crypto"
import { Codec, Hashing } from "../src/index.ts"
import { Encoder } from "../src/internal/codec/encoder.ts"
import { everything, joblibExample } from "./fixtures/values.ts"

const hash = <S extends Schema.Top = never>(value: unknown, options?: Hashing.HashOptions<S>) =>
  Hashing.hash(value as never, options)

class Point extends Schema.Class<Point>("Point")({ x: Schema.Number, y: Schema.Number }) {}

const Record = Schema.Struct({
  n: Schema.Number,
  s: Schema.String,
  big: Schema.BigInt,
  list: Schema.Array(Schema.Int),
  bytes: Schema.Uint8Array,
  maybe: Schema.optional(Schema.Boolean)
})

describe("Hashing", () => {
  it.effect("golden values: the output is stable across versions", () =>
    Effect.gen(function*() {
      // Changing any of these is a breaking change: bump the domain version instead.
      assert.strictEqual(yield* hash(null), "xxh128:dc5ee6e9291bb291bc62e9411415cb56")
      assert.strictEqual(yield* hash(0), "xxh128:c7787b3cd5f3c3372ff87746f2956acd")
      assert.strictEqual(yield* hash({ x: 1, y: [1, 2] }), "xxh128:2400c1635b463a11be6d3b9ba376054c")
      assert.strictEqual(yield* hash(joblibExample()), "xxh128:cb32a2e159a337e0d9549386d60ee04e")
      assert.strictEqual(yield* hash(everything()), "xxh128:8b95c8189f87e86e27d4af979751e51e")
      assert.strictEqual(
        yield* hash({ a: 1 }, { algorithm: "sha256" }),
        "sha256:f97e8e3c5f28291e9946051d1c1831632dd8b93a259623665521dd6f5b27f8f9"
      )
    }))

  it.effect("each algorithm is the one its prefix names, over the same canonical bytes", () =>
    Effect.gen(function*() {
      const value = joblibExample()
      // The canonical stream, built apart from Hashing: the domain tag, then the canonical encoding.
      const parts: Array<Uint8Array> = [new TextEncoder().encode("effect-joblib/hash/v1\u0000")]
      const encoder = new Encoder({ sectionBytes: 4096, canonical: true }, (bytes) => void parts.push(bytes.slice()))
      encoder.value(value)
      parts.push(encoder.result().slice())
      for (const algorithm of ["sha256", "sha1", "md5"] as const) {
        const reference = Crypto.createHash(algorithm)
        for (const part of parts) reference.update(part)
        assert.strictEqual(yield* hash(value, { algorithm }), `${algorithm}:${reference.digest("hex")}`)
      }
      const xxh = yield* Effect.promise(() => createXXHash128())
      xxh.init()
      for (const part of parts) xxh.update(part)
      assert.strictEqual(yield* hash(value), `xxh128:${xxh.digest("hex")}`)
      // Golden values of the two algorithms joblib's hash_name offers.
      assert.strictEqual(yield* hash({ a: 1 }, { algorithm: "md5" }), "md5:59c4638e5835365c670973ae558fce6a")
      assert.strictEqual(yield* hash({ a: 1 }, { algorithm: "sha1" }), "sha1:98ec697ca404fa092863bf193c1282270f055800")
    }))

  it.effect("an unknown algorithm, an unknown key or a wrong type is InvalidHashOptions, before any hashing", () =>
    Effect.gen(function*() {
      const cases: Array<readonly [unknown, string, string]> = [
        [{ algorithm: "invalid" }, "algorithm", `got "invalid"`],
        [{ algorithm: "MD5" }, "algorithm", `got "MD5"`],
        [{ algorithm: 5 }, "algorithm", "got 5"],
        [{ algorithm: "md5", salt: "x" }, "salt", "excess property"],
        [{ schema: "Point" }, "schema", "a Schema"],
        ["sha256", "options", `got "sha256"`]
      ]
      for (const [options, option, text] of cases) {
        const error = yield* Effect.flip(hash({ foo: "bar" }, options as Hashing.HashOptions))
        assert.instanceOf(error, Hashing.InvalidHashOptions, JSON.stringify(options))
        assert.strictEqual((error as Hashing.InvalidHashOptions).option, option)
        assert.include(error.message, text)
      }
    }))

  it.effect("key, Map and Set order do not matter", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* hash({ a: 1, b: { c: 2, d: 3 } }), yield* hash({ b: { d: 3, c: 2 }, a: 1 }))
      assert.strictEqual(yield* hash(new Map([[1, "a"], [2, "b"]])), yield* hash(new Map([[2, "b"], [1, "a"]])))
      assert.strictEqual(yield* hash(new Set(["x", "y", 3])), yield* hash(new Set([3, "y", "x"])))
      assert.notStrictEqual(yield* hash([1, 2]), yield* hash([2, 1]), "array order does")
    }))

  it.effect("canonical rules: -0, NaN, bigint, Date, typed arrays, holes", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* hash(-0), yield* hash(0))
      assert.strictEqual(yield* hash(NaN), yield* hash(Number("not a number")))
      assert.notStrictEqual(yield* hash(1n), yield* hash(1))
      assert.strictEqual(yield* hash(new Date(5)), yield* hash(new Date(5)))
      assert.notStrictEqual(yield* hash(new Date(5)), yield* hash(5))
      assert.notStrictEqual(yield* hash(new Float32Array([1])), yield* hash(new Int32Array([1])))
      assert.notStrictEqual(yield* hash(new Float64Array(2)), yield* hash(new Float64Array(3)))
      assert.notStrictEqual(yield* hash(new Uint8Array([1, 2])), yield* hash([1, 2]))
      // oxlint-disable-next-line no-sparse-arrays
      assert.notStrictEqual(yield* hash([1, , 3]), yield* hash([1, undefined, 3]))
      assert.notStrictEqual(yield* hash("1"), yield* hash(1))
      assert.notStrictEqual(yield* hash("\ud800"), yield* hash("\ufffd"), "lone surrogates are kept")
    }))

  it.effect("big buffers hash by content, wherever their view starts", () =>
    Effect.gen(function*() {
      const data = Float64Array.from({ length: 100_000 }, (_, i) => i)
      const copy = new Float64Array(new SharedArrayBuffer(data.byteLength))
      copy.set(data)
      assert.strictEqual(yield* hash({ data }), yield* hash({ data: copy }))
      copy[50_000] = -1
      assert.notStrictEqual(yield* hash({ data }), yield* hash({ data: copy }))
    }))

  it.effect("class instances hash through their Schema", () =>
    Effect.gen(function*() {
      const a = yield* hash(new Point({ x: 1, y: 2 }), { schema: Point })
      assert.strictEqual(a, yield* hash(new Point({ x: 1, y: 2 }), { schema: Point }))
      assert.notStrictEqual(a, yield* hash(new Point({ x: 2, y: 1 }), { schema: Point }))
      const error = yield* Effect.flip(hash(new Point({ x: 1, y: 2 })))
      assert.instanceOf(error, Hashing.UnhashableValue)
      assert.include(error.message, "Point")
    }))

  it.effect("functions and symbols are typed errors, not random hashes", () =>
    Effect.gen(function*() {
      for (const [value, path] of [[() => 1, "the root"], [{ k: Symbol("s") }, `["k"]`]] as const) {
        const error = yield* Effect.flip(hash(value))
        assert.instanceOf(error, Hashing.UnhashableValue)
        assert.strictEqual((error as Hashing.UnhashableValue).path, path)
      }
    }))

  it.effect.prop("a value and its decoded dump hash alike", [Record], ([value]) =>
    Effect.gen(function*() {
      const codec = Codec.make()
      const back = yield* Effect.flatMap(codec.encode(value, { compress: true }), codec.decode)
      assert.strictEqual(yield* hash(back), yield* hash(value))
    }))
})
