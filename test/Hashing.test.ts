import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Codec, Hashing } from "../src/index.ts"
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
