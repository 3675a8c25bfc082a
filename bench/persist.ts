/**
 * `npm run bench -- persist`: D1–D3 of the persistence issue against
 * v8.serialize, msgpackr (records), JSON and joblib.dump/load in one run,
 * plus peak memory of a 400 MB dump and load.
 */
import { Effect } from "effect"
import { Packr } from "msgpackr"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as V8 from "node:v8"
import { Persist } from "../src/index.ts"
import { measure } from "./harness.ts"

const python = (script: string, ...args: Array<string>): Record<string, number> | undefined => {
  try {
    return JSON.parse(execFileSync("/usr/bin/python3", [new URL(script, import.meta.url).pathname, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      maxBuffer: 1 << 24
    }))
  } catch {
    return undefined
  }
}

const mbps = (
  bytes: number,
  ms: number | undefined
) => (ms === undefined ? "n/a" : `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`)

interface Line {
  readonly workload: string
  readonly peer: string
  readonly dump: number | undefined
  readonly load: number | undefined
  readonly bytes: number | undefined
}

export const run = async () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-bench-"))
  const walk = new Float64Array(10_000_000)
  let x = 0
  for (let i = 0; i < walk.length; i++) walk[i] = x += Math.random() - 0.5
  const names = Array.from({ length: 1000 }, (_, i) => `name-${i}`)
  const records = Array.from(
    { length: 1_000_000 },
    (_, i) => ({ id: i, name: names[i % 1000]!, score: (i * 7919 % 10007) / 10007 })
  )
  const packr = new Packr({ useRecords: true })
  const lines: Array<Line> = []
  const file = (name: string) => Path.join(dir, name)

  const collect = { collect: true }
  const ours = async (
    workload: string,
    value: unknown,
    compress: Persist.DumpOptions["compress"],
    runs: number,
    label = "effect-joblib"
  ) => {
    const target = file(`${workload}.ejlb`)
    // Each run from a collected heap: a load of a million records leaves them to the next run's collector.
    const dump = await measure(runs, () => Effect.runPromise(Persist.dump(value, target, { compress })), 1, collect)
    const load = await measure(runs, () => Effect.runPromise(Persist.load(target)), 1, collect)
    lines.push({ workload, peer: label, dump, load, bytes: Fs.statSync(target).size })
  }
  const peer = async (
    workload: string,
    peer: string,
    encode: () => Uint8Array,
    decode: (bytes: Buffer) => unknown,
    runs: number
  ) => {
    const target = file(`${workload}.${peer}`)
    const dump = await measure(runs, () => Fs.writeFileSync(target, encode()), 1, collect)
    const load = await measure(runs, () => decode(Fs.readFileSync(target)), 1, collect)
    lines.push({ workload, peer, dump, load, bytes: Fs.statSync(target).size })
  }

  await ours("D1 80 MB Float64Array", walk, false, 5)
  await peer("D1 80 MB Float64Array", "v8.serialize", () => V8.serialize(walk), (b) => V8.deserialize(b), 5)
  await peer("D1 80 MB Float64Array", "msgpackr", () => packr.pack(walk), (b) => packr.unpack(b), 5)

  await ours("D2 1M {id, name, score}", records, false, 3)
  await peer("D2 1M {id, name, score}", "msgpackr records", () => packr.pack(records), (b) => packr.unpack(b), 3)
  await peer("D2 1M {id, name, score}", "v8.serialize", () => V8.serialize(records), (b) => V8.deserialize(b), 3)
  await peer(
    "D2 1M {id, name, score}",
    "JSON",
    () => new TextEncoder().encode(JSON.stringify(records)),
    (b) => JSON.parse(b.toString("utf8")),
    1
  )

  await ours("D3 D1, default (zstd 3)", walk, true, 3)
  await ours("D3 D1, fast (lz4)", walk, "lz4", 3)
  await ours("D3 D1, zstd 1", walk, ["zstd", 1], 3)
  await ours("D3 D1, gzip 3", walk, ["gzip", 3], 3)
  await ours("D3 D2, default (zstd 3)", records, true, 3)
  await ours("D3 D2, fast (lz4)", records, "lz4", 3)
  await ours("D3 D2, zstd 1", records, ["zstd", 1], 3)

  // joblib gets the very same 80 MB: the walk's bytes, read with np.fromfile.
  const walkFile = file("walk.f64")
  Fs.writeFileSync(walkFile, new Uint8Array(walk.buffer))

  // D1 again in processes of their own, with and without glibc's huge pages (npm run bench turns them on).
  for (const [label, tunables] of [["huge pages on", "glibc.malloc.hugetlb=1"], ["huge pages off", ""]] as const) {
    const out = execFileSync(process.execPath, [new URL("./persist-d1.ts", import.meta.url).pathname, walkFile, dir], {
      encoding: "utf8",
      env: { ...process.env, GLIBC_TUNABLES: tunables }
    })
    const { dump, load, loadUnverified } = JSON.parse(out) as { dump: number; load: number; loadUnverified: number }
    lines.push({
      workload: "D1 80 MB Float64Array",
      peer: `effect-joblib, ${label}, own process`,
      dump,
      load,
      bytes: undefined
    }, {
      workload: "D1 80 MB Float64Array",
      peer: `effect-joblib, ${label}, own process, verify: false`,
      dump: undefined,
      load: loadUnverified,
      bytes: undefined
    })
  }
  const joblib = python("./joblib_persist.py", walkFile)
  const j = (workload: string, key: string, note: string) =>
    lines.push({
      workload,
      peer: `joblib ${note}`,
      dump: joblib?.[`${key}_dump`],
      load: joblib?.[`${key}_load`],
      bytes: joblib?.[`${key}_bytes`]
    })
  j("D1 80 MB Float64Array", "D1", "(numpy)")
  j("D2 1M {id, name, score}", "D2", "(list of dicts)")
  // Each of our settings against the joblib setting a user after the same trade-off would pick.
  j("D3 D1, default (zstd 3)", "D3_D1_zlib3", `compress=("zlib", 3)`)
  j("D3 D1, fast (lz4)", "D3_D1_lz4", `compress="lz4" (lz4's fast mode)`)
  j("D3 D2, default (zstd 3)", "D3_D2_zlib3", `compress=("zlib", 3)`)
  j("D3 D2, fast (lz4)", "D3_D2_lz4", `compress="lz4" (lz4's fast mode)`)

  const rows = [
    "| workload | implementation | dump | load | size | dump: ours ÷ this | load: ours ÷ this | size: ours ÷ this |",
    "|---|---|---:|---:|---:|---:|---:|---:|"
  ]
  for (const line of lines) {
    const mine = lines.find((l) => l.workload === line.workload && l.peer === "effect-joblib")!
    const ratio = (a: number | undefined, b: number | undefined) =>
      line === mine || a === undefined || b === undefined ? "" : (a / b).toFixed(2)
    const valueBytes = line.workload.startsWith("D1") || line.workload.startsWith("D3 D1")
      ? walk.byteLength
      : mine.bytes ?? 1
    rows.push(
      `| ${line.workload} | ${line.peer} | ${line.dump?.toFixed(0) ?? "n/a"} ms (${mbps(valueBytes, line.dump)}) | ${
        line.load?.toFixed(0) ?? "n/a"
      } ms | ${line.bytes === undefined ? "n/a" : (line.bytes / 1e6).toFixed(1) + " MB"} | ${
        ratio(mine.dump, line.dump)
      } | ${ratio(mine.load, line.load)} | ${ratio(mine.bytes, line.bytes)} |`
    )
  }
  console.log(rows.join("\n"))
  const d1 = lines.find((l) => l.workload.startsWith("D1") && l.peer === "effect-joblib")!
  console.log(`\nD1 throughput: dump ${mbps(walk.byteLength, d1.dump)}, load ${mbps(walk.byteLength, d1.load)}`)

  // Peak memory of a 400 MB value, each step in a fresh process.
  const big = file("big.ejlb")
  const rss = (mode: string, compress: boolean) => {
    const out = execFileSync(process.execPath, [
      new URL("./persist-rss.ts", import.meta.url).pathname,
      mode,
      big,
      "400",
      compress ? "1" : "0"
    ], { encoding: "utf8" })
    const { before, peak, value } = JSON.parse(out) as { before: number; peak: number; value: number }
    return `${mode}${compress ? " (zstd)" : ""}: peak RSS ${(peak / value).toFixed(2)}× the value (${
      ((peak - before) / value).toFixed(2)
    }× above the value already in memory)`
  }
  for (const compress of [false, true]) {
    console.log(rss("dump", compress))
    console.log(rss("load", compress))
  }
  if (joblib === undefined) console.log("joblib: /usr/bin/python3 with joblib and numpy not found")
  Fs.rmSync(dir, { recursive: true, force: true })
}
