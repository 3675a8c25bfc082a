/**
 * joblib's dump/load, Schema-typed and safe to load, plus content hashes.
 * Run: `node examples/persistence.ts`
 */
import { Effect, Schema } from "effect"
import { Hashing, Persist } from "effect-joblib"
import * as assert from "node:assert/strict"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-joblib-example-"))

// joblib: joblib.dump([('a', [1, 2, 3]), ('b', np.arange(10))], 'data.pkl.gz', compress=('gzip', 3))
const data = [["a", [1, 2, 3]], ["b", Float64Array.from({ length: 10 }, (_, i) => i)]]

class Measurement extends Schema.Class<Measurement>("Measurement")({
  sensor: Schema.String,
  at: Schema.Date,
  samples: Schema.Uint8Array
}) {}

const program = Effect.gen(function*() {
  yield* Persist.dump(data, Path.join(dir, "data.pkl.gz"), { compress: ["gzip", 3] })
  const back = yield* Persist.load(Path.join(dir, "data.pkl.gz")) // the method is read from the file's header
  console.log(back)
  assert.deepEqual(back, data)

  // The extension picks the method when none is given: .zst, .gz, .z, .br
  yield* Persist.dump(data, Path.join(dir, "data.zst"))

  // With a Schema, class instances round-trip and loads are validated.
  const readings = [new Measurement({ sensor: "t1", at: new Date(0), samples: new Uint8Array([1, 2, 3]) })]
  const file = Path.join(dir, "readings.bin")
  yield* Persist.dump(readings, file, { schema: Schema.Array(Measurement) })
  const loaded = yield* Persist.load(file, Schema.Array(Measurement))
  assert.ok(loaded[0] instanceof Measurement)

  // A wrong Schema is a typed error naming the field, never a crash or code execution.
  const wrong = yield* Effect.flip(Persist.load(file, Schema.Array(Schema.Struct({ sensor: Schema.Number }))))
  console.log(`${wrong._tag}: ${wrong.message.split("\n")[0]}`)

  // Content hashes: key order does not matter, the algorithm is part of the result.
  const a = yield* Hashing.hash({ x: 1, y: [1, 2] })
  const b = yield* Hashing.hash({ y: [1, 2], x: 1 })
  console.log(a)
  assert.equal(a, b)
})

await Effect.runPromise(program).finally(() => Fs.rmSync(dir, { recursive: true, force: true }))
