/**
 * The joblib one-liner, `Parallel(n_jobs=2)(delayed(sqrt)(i ** 2) for i in range(10))`,
 * as an Effect. Run: `node examples/quickstart.ts`
 */
import { Effect } from "effect"
import { Backend, Parallel } from "effect-joblib"
import * as assert from "node:assert/strict"

const program = Parallel.map(Array.from({ length: 10 }, (_, i) => i ** 2), (x) => Math.sqrt(x))

const roots = await Effect.runPromise(program.pipe(Effect.provide(Backend.layerThreads({ workers: 2 }))))
console.log(roots) // [0, 1, 2, ..., 9]
assert.deepEqual(roots, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])

// No Layer: the same program runs sequentially, in this thread (joblib's n_jobs=None).
assert.deepEqual(await Effect.runPromise(program), roots)
