import { type Effect, Schema } from "effect"
import { describe, expect, it } from "tstyche"
import { Cache, type CacheError } from "../src/index.ts"

class Summary extends Schema.Class<Summary>("Summary")({ mean: Schema.Number }) {}
class Boom extends Schema.TaggedError<Boom>()("Boom", { n: Schema.Number }) {}
const Row = Schema.Struct({ id: Schema.Int, name: Schema.String })

declare const summarize: (xs: ReadonlyArray<number>) => Summary
declare const rows: (n: number) => Array<{ readonly id: number; readonly name: string }>
declare const risky: (n: number) => Effect.Effect<number, Boom>

type Added = CacheError.StoreError | CacheError.InvalidMemoize | CacheError.Unstorable

describe("Cache.memoize", () => {
  it("takes a success Schema of the function's result, and refuses one of another type", () => {
    expect(Cache.memoize).type.toBeCallableWith(summarize, { success: Summary })
    expect(Cache.memoize).type.not.toBeCallableWith(summarize, { success: Schema.String })
    expect(Cache.memoize).type.not.toBeCallableWith(summarize, { success: Schema.Struct({ total: Schema.Number }) })
  })

  it("a readonly Schema describes a function that returns a mutable array", () => {
    expect(Cache.memoize).type.toBeCallableWith(rows, { success: Schema.Array(Row) })
    expect(Cache.memoize).type.not.toBeCallableWith(rows, { success: Schema.Array(Schema.String) })
  })

  it("takes a failure Schema of the function's error, and refuses one of another type", () => {
    expect(Cache.memoize).type.toBeCallableWith(risky, { failure: Boom, cacheFailures: true })
    expect(Cache.memoize).type.not.toBeCallableWith(risky, { failure: Schema.String, cacheFailures: true })
  })

  it("the memoized function keeps the result type, and adds the cache's errors", () => {
    const memoized = Cache.memoize(summarize, { success: Summary, name: "summarize" })
    expect(memoized([1])).type.toBe<Effect.Effect<Summary, Added, Cache.Cache>>()
    const effectful = Cache.memoize(risky, { name: "risky" })
    expect(effectful(1)).type.toBe<Effect.Effect<number, Boom | Added, Cache.Cache>>()
  })

  it("onUnstorable is \"fail\" or \"warn\"", () => {
    expect(Cache.memoize).type.toBeCallableWith(summarize, { onUnstorable: "warn" })
    expect(Cache.memoize).type.not.toBeCallableWith(summarize, { onUnstorable: "ignore" })
  })
})
