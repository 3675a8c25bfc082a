/** Workloads and the joblib runner shared by the parallel benchmarks. */
import { execFileSync } from "node:child_process"
import { now } from "./harness.ts"

export const spin = (n: number) => {
  let x = 0
  for (let i = 0; i < n; i++) x = (x + Math.sqrt(i)) % 1000
  return x
}

export const sum = (array: Float64Array) => {
  let total = 0
  for (let i = 0; i < array.length; i++) total += array[i]!
  return total
}

/**
 * How many `spin` steps take `targetMs`: the median of several timings, after enough short calls that V8 has
 * fully optimized the function (its first tiers box the doubles and run about half as fast).
 */
export const calibrate = (targetMs: number) => {
  const steps = 50_000
  for (let i = 0; i < 300; i++) spin(steps)
  const timings = Array.from({ length: 9 }, () => {
    const start = now()
    for (let i = 0; i < 20; i++) spin(steps)
    return (now() - start) / 20
  }).sort((a, b) => a - b)
  return Math.max(1, Math.round((targetMs / timings[4]!) * steps))
}

/** The inputs of P1–P3: 100k small numbers, 200 tasks of 10 ms CPU each, 50 arrays of 8 MB. */
export const parallelInputs = () => {
  const spinN = calibrate(10)
  return {
    xs: Array.from({ length: 100_000 }, (_, i) => i),
    spins: Array.from({ length: 200 }, () => spinN),
    arrays: Array.from({ length: 50 }, () => new Float64Array(1_000_000).map(() => Math.random()))
  }
}

/** joblib (loky, 2 workers) on P1–P4, from Debian's python3-joblib; undefined when it is not installed. */
export const joblib = (which: "warm" | "cold"): Record<string, number> | undefined => {
  try {
    const out = execFileSync("/usr/bin/python3", [new URL("./joblib_parallel.py", import.meta.url).pathname, which], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"]
    })
    return JSON.parse(out)
  } catch {
    return undefined
  }
}
