/**
 * Peak memory of one big dump or load, in a process of its own:
 * `node bench/persist-rss.ts dump|load <file> <megabytes> [compress]`. Prints JSON.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import { Persist } from "../src/index.ts"

const [mode, file, megabytes, compress] = process.argv.slice(2)
const length = (Number(megabytes) * 1024 * 1024) / 8
const rss = () => process.memoryUsage().rss
/** This process's own peak RSS (VmHWM): getrusage's maxRSS carries the parent's over exec. */
const peakRss = () => Number(/VmHWM:\s+(\d+) kB/.exec(Fs.readFileSync("/proc/self/status", "utf8"))![1]) * 1024

if (mode === "dump") {
  const walk = new Float64Array(length)
  let x = 0
  for (let i = 0; i < length; i++) walk[i] = x += Math.sin(i) // a random-ish walk, every page touched
  const before = rss()
  await Effect.runPromise(Persist.dump({ walk }, file!, { compress: compress === "1" }))
  console.log(JSON.stringify({ before, peak: peakRss(), value: walk.byteLength }))
} else {
  const before = rss()
  const loaded = (await Effect.runPromise(Persist.load(file!))) as { walk: Float64Array }
  console.log(JSON.stringify({ before, peak: peakRss(), value: loaded.walk.byteLength }))
}
