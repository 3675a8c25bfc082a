import { type Effect, pipe, Schema, type Stream } from "effect"
import { describe, expect, it } from "tstyche"
import { Codec, type Compression, Hashing, Persist, type PersistError } from "../src/index.ts"

class Point extends Schema.Class<Point>("Point")({ x: Schema.Number }) {}
declare const bytes: Stream.Stream<Uint8Array, "NetworkError">

describe("Persist", () => {
  it("load without a Schema is unknown; with one, the Schema's type", () => {
    expect(Persist.load("/tmp/x")).type.toBe<Effect.Effect<unknown, Persist.LoadError>>()
    expect(Persist.load("/tmp/x", Schema.Array(Point))).type.toBe<
      Effect.Effect<ReadonlyArray<Point>, Persist.LoadError>
    >()
    expect(Persist.load(bytes, Point)).type.toBe<Effect.Effect<Point, Persist.LoadError | "NetworkError">>()
  })

  it("dump, data-first and data-last, checks the value against the Schema", () => {
    expect(Persist.dump({ any: "thing" }, "/tmp/x")).type.toBe<
      Effect.Effect<ReadonlyArray<string>, Persist.DumpError>
    >()
    expect(pipe(new Point({ x: 1 }), Persist.dump("/tmp/x", { schema: Point }))).type.toBe<
      Effect.Effect<ReadonlyArray<string>, Persist.DumpError>
    >()
    expect(Persist.dump).type.not.toBeCallableWith("not a point", "/tmp/x", { schema: Point })
  })
})

describe("Codec and Hashing", () => {
  it("a Schema codec decodes to the Schema's type", () => {
    const codec = Codec.make(Point)
    expect(codec.decode(new Uint8Array())).type.toBe<
      Effect.Effect<
        Point,
        PersistError.DecodeError | PersistError.InvalidPersistOptions | Compression.CompressionError
      >
    >()
  })

  it("hash gives an algorithm-prefixed string; the algorithm is one of the supported names", () => {
    expect(Hashing.hash({ a: 1 })).type.toBe<
      Effect.Effect<string, Hashing.UnhashableValue | PersistError.SchemaMismatch | Hashing.InvalidHashOptions>
    >()
    expect(Hashing.hash).type.toBeCallableWith({ a: 1 }, { algorithm: "md5" })
    expect(Hashing.hash).type.not.toBeCallableWith({ a: 1 }, { algorithm: "invalid" })
  })
})

declare module "../src/Compression.ts" {
  interface Methods {
    readonly mine: true
  }
}

describe("compression method names", () => {
  it("are the built-in methods and those added to Compression.Methods; a typo fails", () => {
    expect<Compression.Method>().type.toBe<
      "zstd" | "gzip" | "zlib" | "brotli" | "lz4" | "xz" | "lzma" | "bz2" | "mine"
    >()
    expect(Persist.dump).type.toBeCallableWith([1], "/tmp/x", { compress: "zstd" })
    expect(Persist.dump).type.toBeCallableWith([1], "/tmp/x", { compress: ["lz4", 3] as const })
    expect(Persist.dump).type.toBeCallableWith([1], "/tmp/x", { compress: "mine" })
    expect(Persist.dump).type.not.toBeCallableWith([1], "/tmp/x", { compress: "ztsd" })
    expect(Persist.dump).type.not.toBeCallableWith([1], "/tmp/x", { compress: ["ztsd", 3] as const })
  })
})

describe("Codec.typedArray", () => {
  it("types a field as the typed array of its kind, over any buffer", () => {
    const Embedding = Schema.Struct({ vector: Codec.typedArray(Float64Array), ids: Codec.typedArray(BigInt64Array) })
    expect<typeof Embedding.Type>().type.toBe<
      { readonly vector: Float64Array<ArrayBufferLike>; readonly ids: BigInt64Array<ArrayBufferLike> }
    >()
    expect(Persist.dump).type.not.toBeCallableWith(
      { vector: new Float32Array(2), ids: new BigInt64Array(1) },
      "/tmp/x",
      { schema: Embedding }
    )
  })
})
