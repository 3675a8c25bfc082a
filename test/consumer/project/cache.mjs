// Fills a filesystem cache with one entry, for `effect-joblib cache <dir> stats`.
import { Effect } from "effect"
import { Cache } from "effect-joblib"

const double = Cache.memoize(function double(x) {
  return Effect.succeed(x * 2)
})
const value = await Effect.runPromise(double(21).pipe(Effect.provide(Cache.layerFileSystem(process.argv[2]))))
console.log(JSON.stringify({ value }))
