/**
 * D1 in a process of its own, so that glibc's tunables can differ from the bench's:
 * `node bench/persist-d1.ts <walk.f64> <dir>`. Prints JSON: median dump and load ms of the 80 MB walk, and
 * load with `verify: false`.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Persist } from "../src/index.ts"
import { measure } from "./harness.ts"

const [walkFile, dir] = process.argv.slice(2)
const bytes = Fs.readFileSync(walkFile!)
const walk = new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8).slice()
const target = Path.join(dir!, `d1-${process.pid}.ejlb`)
const dump = await measure(5, () => Effect.runPromise(Persist.dump(walk, target, { compress: false })))
const load = await measure(5, () => Effect.runPromise(Persist.load(target)))
// Without the checksum pass, which joblib does not have.
const loadUnverified = await measure(5, () => Effect.runPromise(Persist.load(target, undefined, { verify: false })))
Fs.rmSync(target)
console.log(JSON.stringify({ dump, load, loadUnverified }))
