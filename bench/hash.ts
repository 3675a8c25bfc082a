/**
 * `npm run bench -- hash`: H1 of the persistence issue. Hashing an 80 MB
 * Float64Array and 100k small objects, next to node:crypto and joblib.hash.
 */
import { Effect } from "effect"
import { createXXHash128 } from "hash-wasm"
import { execFileSync } from "node:child_process"
import * as Crypto from "node:crypto"
import { Hashing } from "../src/index.ts"
import { measure } from "./harness.ts"

export const run = async () => {
  const walk = new Float64Array(10_000_000)
  let x = 0
  for (let i = 0; i < walk.length; i++) walk[i] = x += Math.random() - 0.5
  const names = Array.from({ length: 1000 }, (_, i) => `name-${i}`)
  const small = Array.from({ length: 100_000 }, (_, i) => ({ id: i, name: names[i % 1000]!, score: 0.5 }))
  const bytes = new Uint8Array(walk.buffer)

  const xxh = await measure(9, () => Effect.runPromise(Hashing.hash(walk)), 3)
  const hasher = await createXXHash128()
  // The library's floor: xxh128 of the raw bytes, without canonical encoding. Interleaved with ours below.
  const floor = await measure(9, () => {
    hasher.init()
    for (let offset = 0; offset < bytes.length; offset += 1 << 24) {
      hasher.update(bytes.subarray(offset, offset + (1 << 24)))
    }
    return hasher.digest("hex")
  }, 3)
  const sha = await measure(3, () => Effect.runPromise(Hashing.hash(walk, { algorithm: "sha256" })))
  const raw = await measure(3, () => Crypto.createHash("sha256").update(bytes).digest("hex"))
  const md5 = await measure(3, () => Crypto.createHash("md5").update(bytes).digest("hex"))
  const smallMs = await measure(3, () => Effect.runPromise(Effect.forEach(small, (o) => Hashing.hash(o))))
  let joblib: Record<string, number> | undefined
  try {
    joblib = JSON.parse(execFileSync("/usr/bin/python3", [
      "-c",
      `
import json, time, statistics, numpy as np, joblib
walk = np.cumsum(np.random.default_rng(1).standard_normal(10_000_000))
names = [f"name-{i}" for i in range(1000)]
small = [{"id": i, "name": names[i % 1000], "score": 0.5} for i in range(100_000)]
def m(runs, f):
    f(); ts = []
    for _ in range(runs):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)
print(json.dumps({"big": m(3, lambda: joblib.hash(walk)), "small": m(1, lambda: [joblib.hash(o) for o in small])}))
`
    ], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }))
  } catch {
    joblib = undefined
  }
  const gbps = (
    ms: number | undefined
  ) => (ms === undefined ? "n/a" : `${(walk.byteLength / 1e9 / (ms / 1000)).toFixed(2)} GB/s`)
  const rows = [
    "| workload | implementation | median ms | throughput | ours ÷ this |",
    "|---|---|---:|---:|---:|",
    `| H1 80 MB Float64Array | Hashing.hash (xxh128, default) | ${xxh.toFixed(1)} | ${gbps(xxh)} | |`,
    `| H1 80 MB Float64Array | hash-wasm xxh128 of the raw bytes (the floor) | ${floor.toFixed(1)} | ${gbps(floor)} | ${
      (xxh / floor).toFixed(2)
    } |`,
    `| H1 80 MB Float64Array | Hashing.hash (sha256) | ${sha.toFixed(1)} | ${gbps(sha)} | ${(xxh / sha).toFixed(2)} |`,
    `| H1 80 MB Float64Array | node:crypto sha256 of the raw bytes | ${raw.toFixed(1)} | ${gbps(raw)} | ${
      (xxh / raw).toFixed(2)
    } |`,
    `| H1 80 MB Float64Array | node:crypto md5 of the raw bytes | ${md5.toFixed(1)} | ${gbps(md5)} | ${
      (xxh / md5).toFixed(2)
    } |`,
    `| H1 80 MB Float64Array | joblib.hash (md5 of a pickle) | ${joblib?.big.toFixed(1) ?? "n/a"} | ${
      gbps(joblib?.big)
    } | ${joblib ? (xxh / joblib.big).toFixed(2) : ""} |`,
    `| H1 100k small objects | Hashing.hash (xxh128) | ${smallMs.toFixed(0)} | ${
      (100_000 / (smallMs / 1000) / 1000).toFixed(0)
    }k objects/s | |`,
    `| H1 100k small objects | joblib.hash | ${joblib?.small.toFixed(0) ?? "n/a"} | ${
      joblib ? (100_000 / (joblib.small / 1000) / 1000).toFixed(0) + "k objects/s" : "n/a"
    } | ${joblib ? (smallMs / joblib.small).toFixed(2) : ""} |`
  ]
  console.log(rows.join("\n"))
}
