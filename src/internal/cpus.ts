import * as Fs from "node:fs"
import * as Os from "node:os"

const readQuota = (): number | undefined => {
  // cgroup v2: "max 100000" or "200000 100000" (quota, period)
  try {
    const [quota, period] = Fs.readFileSync("/sys/fs/cgroup/cpu.max", "utf8").trim().split(/\s+/)
    if (quota === undefined || quota === "max" || period === undefined) return undefined
    const cpus = Math.floor(Number(quota) / Number(period))
    return Number.isFinite(cpus) && cpus >= 1 ? cpus : undefined
  } catch {
    return undefined
  }
}

let cached: number | undefined

/** CPUs this process may use: `os.availableParallelism()` capped by a cgroup CPU quota. */
export const available = (): number => {
  if (cached === undefined) {
    const quota = readQuota()
    const parallelism = Os.availableParallelism()
    cached = quota === undefined ? parallelism : Math.max(1, Math.min(quota, parallelism))
  }
  return cached
}
