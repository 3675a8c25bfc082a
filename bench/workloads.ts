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

export const calibrate = (targetMs: number) => {
  spin(1e6)
  const start = now()
  spin(1e6)
  return Math.max(1, Math.round((targetMs / (now() - start)) * 1e6))
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
