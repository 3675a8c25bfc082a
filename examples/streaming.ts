/**
 * Lazy input and streamed results: an endless generator, pulled only as far
 * as needed, results as they complete (joblib's `return_as="generator_unordered"`).
 * Run: `node examples/streaming.ts`
 */
import { Effect, Stream } from "effect"
import { Backend, Parallel } from "effect-joblib"
import * as assert from "node:assert/strict"

let produced = 0
function* naturals() {
  for (let n = 0;; n++) {
    produced++
    yield n
  }
}

const program = Parallel.stream(
  naturals(),
  (n) => ({ n, isPrime: n > 1 && [...Array(n).keys()].slice(2).every((d) => n % d !== 0) }),
  {
    ordered: false,
    batchSize: 8
  }
).pipe(
  Stream.filter(({ value }) => value.isPrime),
  Stream.take(10),
  Stream.runCollect
)

const primes = await Effect.runPromise(program.pipe(Effect.provide(Backend.layerThreads({ workers: 2 }))))
const sorted = primes.map(({ value }) => value.n).sort((a, b) => a - b)
console.log(`first primes found: ${sorted.join(", ")}; generator advanced ${produced} times`)
assert.ok(sorted.length === 10)
assert.ok(produced < 1000, "the endless input is pulled lazily")
