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

/** Set in a worker's environment to the CPUs it may use, so that maps nested in its tasks do not oversubscribe. */
export const BUDGET_VARIABLE = "EFFECT_JOBLIB_CPU_BUDGET"

/** The CPU budget this process was given as a worker, if it is one. */
export const budget = (): number | undefined => {
  const value = Number(process.env[BUDGET_VARIABLE])
  return Number.isInteger(value) && value >= 1 ? value : undefined
}

let cached: number | undefined

/** CPUs this process may use: `os.availableParallelism()` capped by a cgroup CPU quota and a worker's budget. */
export const available = (): number => {
  if (cached === undefined) {
    const quota = readQuota()
    const parallelism = Os.availableParallelism()
    const hardware = quota === undefined ? parallelism : Math.max(1, Math.min(quota, parallelism))
    cached = Math.min(hardware, budget() ?? hardware)
  }
  return cached
}
