/**
 * The store conformance suite: every Store layer must pass it.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Clock, Effect, type Layer } from "effect"
import { TestClock } from "effect/testing"
import { CacheError, Store } from "../src/index.ts"

/**
 * Every test runs under the TestClock that `layer` provides: access times, ages and lock expiry must follow it,
 * as they follow whatever Clock a caller provides.
 */
const entry = (key: string, text: string, accessed: number): Store.Entry => {
  const data = new TextEncoder().encode(text)
  return {
    meta: { key, function: "f", size: data.length, duration: 1, created: accessed, accessed, input: `(${text})` },
    data
  }
}

const text = (
  found: Store.Entry | undefined
) => (found === undefined ? undefined : new TextDecoder().decode(found.data))

export const suite = (name: string, make: () => Layer.Layer<Store.Store, unknown>) =>
  describe(name, () => {
    layer(make())("entries", (it) => {
      it.effect("a key outside letters, digits, ':', '_', '-' is a StoreError for every operation", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          const bad = "../escape"
          for (
            const operation of [
              store.get(bad),
              store.meta(bad),
              store.put(entry(bad, "x", 0)),
              store.remove(bad),
              store.lock(bad, 1000)
            ] as ReadonlyArray<Effect.Effect<unknown, unknown>>
          ) {
            const error = yield* Effect.flip(operation)
            assert.instanceOf(error, CacheError.StoreError)
            assert.include((error as CacheError.StoreError).message, "invalid key")
          }
        }))

      it.effect("put, get, meta, list, remove, clear", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          yield* store.clear
          assert.isUndefined(yield* store.get("xxh128:missing"))
          yield* store.put(entry("xxh128:a1", "one", 0))
          yield* store.put(entry("xxh128:b2", "two", 0))
          assert.strictEqual(text(yield* store.get("xxh128:a1")), "one")
          const meta = yield* store.meta("xxh128:b2")
          assert.strictEqual(meta?.input, "(two)")
          assert.strictEqual(meta?.size, 3)
          assert.deepStrictEqual((yield* store.list).map((m) => m.key).sort(), ["xxh128:a1", "xxh128:b2"])
          assert.isTrue(yield* store.remove("xxh128:a1"))
          assert.isFalse(yield* store.remove("xxh128:a1"))
          assert.isUndefined(yield* store.get("xxh128:a1"))
          yield* store.clear
          assert.deepStrictEqual(yield* store.list, [])
        }))

      it.effect("a put replaces the entry whole", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          yield* store.put(entry("xxh128:c3", "first", 0))
          yield* store.put(entry("xxh128:c3", "second, longer", 0))
          assert.strictEqual(text(yield* store.get("xxh128:c3")), "second, longer")
          assert.strictEqual((yield* store.meta("xxh128:c3"))?.size, 14)
        }))

      it.effect("a read records the access at the Clock's time; meta does not", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          yield* TestClock.setTime(1_000_000)
          yield* store.put(entry("xxh128:d4", "x", 1_000))
          assert.strictEqual((yield* store.meta("xxh128:d4"))?.accessed, 1_000)
          yield* TestClock.adjust("2 hours")
          const read = yield* store.get("xxh128:d4")
          const now = yield* Clock.currentTimeMillis
          assert.strictEqual(read?.meta.accessed, now)
          assert.strictEqual((yield* store.meta("xxh128:d4"))!.accessed, now)
        }))

      it.effect("a bad key is a typed error", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          const error = yield* Effect.flip(store.put(entry("../../etc/passwd", "x", 0)))
          assert.instanceOf(error, CacheError.StoreError)
          assert.include(error.message, "invalid key")
        }))

      it.effect("a lock is held once until released or expired on the Clock", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          const first = yield* store.lock("xxh128:e5", 60_000)
          assert.isDefined(first)
          assert.isUndefined(yield* store.lock("xxh128:e5", 60_000), "held")
          yield* first!.release
          const second = yield* store.lock("xxh128:e5", "10 minutes")
          assert.isDefined(second, "free again")
          yield* TestClock.adjust("9 minutes")
          assert.isUndefined(yield* store.lock("xxh128:e5", 60_000), "held until its ttl has passed on the Clock")
          yield* TestClock.adjust("2 minutes")
          const third = yield* store.lock("xxh128:e5", 60_000)
          assert.isDefined(third, "an expired lock is taken over")
          yield* second!.release // a stale holder's release leaves the new holder alone
          assert.isUndefined(yield* store.lock("xxh128:e5", 60_000))
          yield* third!.release
        }))
    })
  })

/** A store built with `maxItems: 3` evicts the least recently used entry on each put over the limit. */
export const limitsSuite = (name: string, make: (limits: Store.Limits) => Layer.Layer<Store.Store, unknown>) => {
  layer(make({ maxItems: 3 }))(`${name} with limits`, (it) => {
    it.effect("evicts the least recently used entries past maxItems, by access times on the Clock", () =>
      Effect.gen(function*() {
        const store = yield* Store.Store
        yield* store.clear
        yield* TestClock.setTime(1_000_000_000)
        const now = yield* Clock.currentTimeMillis
        for (let i = 1; i <= 3; i++) yield* store.put(entry(`xxh128:l${i}`, "x", now - (10 - i) * 1000))
        yield* TestClock.adjust("1 minute")
        yield* store.get("xxh128:l1") // now the most recently used
        yield* store.put(entry("xxh128:l4", "x", yield* Clock.currentTimeMillis))
        const keys = (yield* store.list).map((m) => m.key).sort()
        assert.deepStrictEqual(keys, ["xxh128:l1", "xxh128:l3", "xxh128:l4"])
      }))
  })
  layer(make({ maxAge: "1 day" }))(`${name} with maxAge`, (it) => {
    it.effect("removes entries unused for longer than maxAge on the Clock, at the next write", () =>
      Effect.gen(function*() {
        const store = yield* Store.Store
        yield* store.clear
        yield* TestClock.setTime(5_000_000_000)
        const start = yield* Clock.currentTimeMillis
        yield* store.put(entry("xxh128:m1", "old", start))
        yield* store.put(entry("xxh128:m2", "read", start))
        yield* TestClock.adjust("20 hours")
        yield* store.get("xxh128:m2")
        yield* TestClock.adjust("5 hours")
        yield* store.put(entry("xxh128:m3", "new", yield* Clock.currentTimeMillis))
        const keys = (yield* store.list).map((m) => m.key).sort()
        assert.deepStrictEqual(keys, ["xxh128:m2", "xxh128:m3"], "m1 unused for 25 hours; m2 read 5 hours ago")
      }))
  })
}

/** Both suites for one store: adding a store to the tests is one line. */
export const conformance = (
  name: string,
  make: (limits?: Store.Limits) => Layer.Layer<Store.Store, unknown>
) => {
  suite(name, () => make())
  limitsSuite(name, (limits) => make(limits))
}
