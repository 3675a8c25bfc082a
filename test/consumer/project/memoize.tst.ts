// The consumer's type test: Cache.memoize's Schemas are checked against the function's result and error.
import { type Effect, Schema } from "effect"
import { Cache, type CacheError } from "effect-joblib"
import { describe, expect, it } from "tstyche"

class Summary extends Schema.Class<Summary>("Summary")({ mean: Schema.Number }) {}
declare const summarize: (xs: ReadonlyArray<number>) => Summary

describe("Cache.memoize in a consumer", () => {
  it("a success Schema of another type fails in tsc", () => {
    expect(Cache.memoize).type.toBeCallableWith(summarize, { success: Summary })
    expect(Cache.memoize).type.not.toBeCallableWith(summarize, { success: Schema.String })
  })
  it("the result keeps its type; the cache's errors are added", () => {
    expect(Cache.memoize(summarize, { success: Summary, name: "summarize" })([1])).type.toBe<
      Effect.Effect<
        Summary,
        CacheError.StoreError | CacheError.InvalidMemoize | CacheError.Unstorable,
        Cache.Cache
      >
    >()
  })
})
