/**
 * joblib's Memory, the Effect way: a memoized function on a disk cache, its
 * methods, and a shelved result.
 * Run: `node examples/caching.ts`
 */
import { Effect } from "effect"
import { Cache } from "effect-joblib"
import * as assert from "node:assert/strict"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const location = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-joblib-caching-"))
let computed = 0

// `debug` does not change the result, so it is left out of the key (joblib's ignore=['debug']).
const squareRoots = Cache.memoize(function squareRoots(n: number, debug = false) {
  computed++
  if (debug) console.log(`computing ${n} square roots`)
  return Float64Array.from({ length: n }, (_, i) => Math.sqrt(i))
}, { ignore: ["debug"] })

const program = Effect.gen(function*() {
  const first = yield* squareRoots(1_000)
  const again = yield* squareRoots(1_000, true) // read back from the disk
  assert.deepEqual(again, first)
  assert.equal(computed, 1)
  assert.equal(yield* squareRoots.check(2_000), false)

  const shelved = yield* squareRoots.shelve(2_000) // computes, stores, returns a small reference
  assert.equal((yield* Cache.get(shelved)).length, 2_000)
  yield* Cache.clearShelved(shelved)
  const gone = yield* Effect.flip(Cache.get(shelved))
  assert.equal(gone._tag, "EntryNotFound")

  const stats = yield* Cache.stats
  console.log(`${computed} computations, ${stats.items} cached entries, ${stats.bytes} bytes in ${location}`)
}).pipe(
  Effect.provide(Cache.layerFileSystem(location)),
  Effect.ensuring(Effect.sync(() => Fs.rmSync(location, { recursive: true, force: true })))
)

await Effect.runPromise(program)
