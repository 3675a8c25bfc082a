/**
 * The store conformance suite: every Store layer must pass it.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, type Layer } from "effect"
import { CacheError, Store } from "../src/index.ts"

const entry = (key: string, text: string, accessed = Date.now()): Store.Entry => {
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
    layer(make(), { excludeTestServices: true })("entries", (it) => {
      it.effect("a key outside letters, digits, ':', '_', '-' is a StoreError for every operation", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          const bad = "../escape"
          for (
            const operation of [
              store.get(bad),
              store.meta(bad),
              store.put(entry(bad, "x")),
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
          yield* store.put(entry("xxh128:a1", "one"))
          yield* store.put(entry("xxh128:b2", "two"))
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
          yield* store.put(entry("xxh128:c3", "first"))
          yield* store.put(entry("xxh128:c3", "second, longer"))
          assert.strictEqual(text(yield* store.get("xxh128:c3")), "second, longer")
          assert.strictEqual((yield* store.meta("xxh128:c3"))?.size, 14)
        }))

      it.effect("a read records the access; meta does not", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          yield* store.put(entry("xxh128:d4", "x", 1_000))
          assert.strictEqual((yield* store.meta("xxh128:d4"))?.accessed, 1_000)
          const before = Date.now()
          yield* store.get("xxh128:d4")
          assert.isAtLeast((yield* store.meta("xxh128:d4"))!.accessed, before - 1000)
        }))

      it.effect("a bad key is a typed error", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          const error = yield* Effect.flip(store.put(entry("../../etc/passwd", "x")))
          assert.instanceOf(error, CacheError.StoreError)
          assert.include(error.message, "invalid key")
        }))

      it.effect("a lock is held once until released or expired", () =>
        Effect.gen(function*() {
          const store = yield* Store.Store
          const first = yield* store.lock("xxh128:e5", 60_000)
          assert.isDefined(first)
          assert.isUndefined(yield* store.lock("xxh128:e5", 60_000), "held")
          yield* first!.release
          const second = yield* store.lock("xxh128:e5", 1)
          assert.isDefined(second, "free again")
          yield* Effect.sleep(20)
          const third = yield* store.lock("xxh128:e5", 60_000)
          assert.isDefined(third, "an expired lock is taken over")
          yield* second!.release // a stale holder's release leaves the new holder alone
          assert.isUndefined(yield* store.lock("xxh128:e5", 60_000))
          yield* third!.release
        }))
    })
  })

/** A store built with `maxItems: 3` evicts the least recently used entry on each put over the limit. */
export const limitsSuite = (name: string, make: (limits: Store.Limits) => Layer.Layer<Store.Store, unknown>) =>
  layer(make({ maxItems: 3 }), { excludeTestServices: true })(`${name} with limits`, (it) => {
    it.effect("evicts the least recently used entries past maxItems", () =>
      Effect.gen(function*() {
        const store = yield* Store.Store
        yield* store.clear
        const now = Date.now()
        for (let i = 1; i <= 3; i++) yield* store.put(entry(`xxh128:l${i}`, "x", now - (10 - i) * 1000))
        yield* store.get("xxh128:l1") // now the most recently used
        yield* store.put(entry("xxh128:l4", "x", now))
        const keys = (yield* store.list).map((m) => m.key).sort()
        assert.deepStrictEqual(keys, ["xxh128:l1", "xxh128:l3", "xxh128:l4"])
      }))
  })

/** Both suites for one store: adding a store to the tests is one line. */
export const conformance = (
  name: string,
  make: (limits?: Store.Limits) => Layer.Layer<Store.Store, unknown>
) => {
  suite(name, () => make())
  limitsSuite(name, (limits) => make(limits))
}
