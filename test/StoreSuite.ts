/**
 * The store conformance suite: every Store layer must pass it.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Cause, Clock, Effect, Exit, type Layer } from "effect"
import { TestClock } from "effect/testing"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Cache, CacheError, Store } from "../src/index.ts"
import { canMount, noSpaceThroughFileApi, tmpfs } from "./tmpfs.ts"

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

/** Temporary files anywhere under `dir`. */
const tempFiles = (dir: string): Array<string> =>
  Fs.existsSync(dir)
    ? Fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((file) => /\.tmp\b/.test(file))
    : []

/** What a memoized call on a full disk gave: its value, a typed error, or a defect (which must never be). */
export type FullDiskOutcome = "value" | `typed ${string}` | "defect"

/**
 * A store on a real full disk (a 4 MB tmpfs holding a filler file), at 0 B, 64 KB, 128 KB and 512 KB free, with
 * values of 88 KB and 1 MB, filled before the call (the lock cannot be written) or by the call's own computation
 * (the entry, a blob or the release cannot be): every call ends with its value or a typed StoreError, never a
 * defect; `onStoreError: "compute"` always gives the value; no temp file is left; and once space is freed, the
 * next call returns the value at once rather than waiting for a lock of its own process, after which no lock or
 * orphaned file is left either (a lock the full disk kept from being deleted goes with that call).
 * `leftovers(dir)` names what the store left that it should not have (its own temp files, its locks).
 */
export const fullDiskSuite = (
  name: string,
  make: (dir: string, options?: { readonly onStoreError?: "fail" | "compute" }) => Layer.Layer<Cache.Cache, unknown>,
  leftovers: (dir: string) => ReadonlyArray<string>,
  /** The store writes only through Node's file API: where no tmpfs can be mounted, a fallback fills its disk. */
  fileApiOnly = false
) =>
  describe(`${name} on a full disk`, () => {
    // Only for a store whose every write goes through Node's file API: the fallback cannot fill another's disk.
    if (fileApiOnly) {
      it.live(
        "through the file API (the fallback where no tmpfs can be mounted): every write fails",
        () =>
          Effect.gen(function*() {
            const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-nospace-"))
            yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
            let calls = 0
            const f = Cache.memoize(function noSpace(n: number) {
              calls++
              return new Uint8Array(n).fill(3)
            })
            yield* Effect.scoped(Effect.provide(Effect.void, make(dir)))
            const [failed, computed, temps] = yield* Effect.scoped(Effect.gen(function*() {
              yield* noSpaceThroughFileApi(dir)
              const failed = yield* Effect.exit(Effect.scoped(Effect.provide(f(90_000), make(dir))))
              const computed = yield* Effect.scoped(Effect.provide(f(90_000), make(dir, { onStoreError: "compute" })))
              return [failed, computed, tempFiles(dir)] as const
            }))
            assert.isTrue(Exit.isFailure(failed) && failed.cause.reasons.every(Cause.isFailReason), "typed, no defect")
            assert.instanceOf(Cause.squash((failed as Exit.Failure<unknown, unknown>).cause), CacheError.StoreError)
            assert.strictEqual(computed.length, 90_000)
            assert.deepStrictEqual(temps, [])
            // Writable again: the next call stores at once, and nothing is left behind.
            assert.strictEqual((yield* Effect.scoped(Effect.provide(f(90_000), make(dir)))).length, 90_000)
            assert.isAtLeast(calls, 2, "computed with the disk full (compute), and again once writable")
            assert.deepStrictEqual(leftovers(dir), [])
          }),
        60_000
      )
    }

    const levels = [0, 64 * 1024, 128 * 1024, 512 * 1024]
    const sizes = [88 * 1024, 1024 * 1024]
    for (const when of ["before the call", "during the call"] as const) {
      it.live.skipIf(!canMount)(
        `filled ${when}: a value or a typed error, never a defect; nothing left; no wait once freed`,
        () =>
          Effect.gen(function*() {
            const dir = yield* tmpfs("size=4m")
            const filler = Path.join(dir, "filler")
            const fill = (free: number) => {
              Fs.rmSync(filler, { force: true })
              const stat = Fs.statfsSync(dir)
              try {
                Fs.writeFileSync(filler, Buffer.alloc(Math.max(0, stat.bavail * stat.bsize - free)))
              } catch (error) {
                // Full a little early (the filler's own blocks): full is what is wanted.
                if ((error as NodeJS.ErrnoException).code !== "ENOSPC") {
                  throw error
                }
              }
            }
            const outcomes: Array<string> = []
            for (const free of levels) {
              for (const size of sizes) {
                for (const onStoreError of ["fail", "compute"] as const) {
                  const cacheDir = Path.join(dir, `cache-${free}-${size}-${onStoreError}`)
                  Fs.rmSync(filler, { force: true })
                  yield* Effect.scoped(Effect.provide(Effect.void, make(cacheDir))) // made while there is room
                  if (when === "before the call") {
                    fill(free)
                  }
                  let calls = 0
                  const f = Cache.memoize(function filled(n: number) {
                    calls++
                    if (when === "during the call" && calls === 1) {
                      fill(free)
                    }
                    return new Uint8Array(n).fill(7)
                  }, { name: `filled${free}x${size}` })
                  const exit = yield* Effect.exit(
                    Effect.scoped(Effect.provide(f(size), make(cacheDir, { onStoreError })))
                  )
                  const outcome: FullDiskOutcome = Exit.isSuccess(exit)
                    ? "value"
                    : exit.cause.reasons.every(Cause.isFailReason)
                    ? `typed ${
                      exit.cause.reasons.map((reason) => {
                        const error = reason.error as { _tag: string; operation?: string }
                        return error.operation === undefined ? error._tag : `${error._tag}(${error.operation})`
                      }).join("+")
                    }`
                    : "defect"
                  outcomes.push(`${free / 1024}K ${size / 1024}K ${onStoreError}: ${outcome}`)
                  assert.notStrictEqual(
                    outcome,
                    "defect",
                    `${free} B free, ${size} B: ${Cause.pretty((exit as any).cause ?? Cause.empty)}`
                  )
                  if (outcome !== "value") {
                    assert.match(outcome, /^typed StoreError\(\w+\)$/)
                  }
                  if (onStoreError === "compute") {
                    assert.strictEqual(outcome, "value", `${free} B free: compute`)
                  }
                  if (Exit.isSuccess(exit)) {
                    assert.strictEqual((exit.value as Uint8Array).length, size)
                  }
                  assert.deepStrictEqual(
                    tempFiles(cacheDir),
                    [],
                    `${free} B free, ${size} B: temp files left on the full disk`
                  )
                  // Space freed: the next call gives the value at once (a stale lock of its own would make it wait).
                  Fs.rmSync(filler, { force: true })
                  const again = yield* Effect.scoped(Effect.provide(f(size), make(cacheDir))).pipe(
                    Effect.timeoutOption("20 seconds")
                  )
                  assert.isTrue(again._tag === "Some", `${free} B free, ${size} B: the next call waited`)
                  if (again._tag === "Some") {
                    assert.strictEqual(again.value.length, size)
                  }
                  assert.isAtMost(calls, 2)
                  // A lock the full disk kept from being deleted goes with the next call: none outlives that.
                  assert.deepStrictEqual(leftovers(cacheDir), [], `${free} B free, ${size} B: left behind`)
                  Fs.rmSync(cacheDir, { recursive: true, force: true })
                }
              }
            }
            console.log(`${name}, filled ${when}: ${outcomes.join("; ")}`)
          }),
        120_000
      )
    }
  })
