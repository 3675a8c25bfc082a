/**
 * glibc (2.35 and later) reads `GLIBC_TUNABLES` when a process starts. With `glibc.malloc.hugetlb=1`,
 * malloc asks for transparent huge pages (`madvise`) for its big allocations, as numpy does: fresh
 * memory then faults in 2 MB at a time, and reading an 80 MB dump into it takes about half as long.
 * It cannot be turned on from inside a running process, so processes this library starts get it.
 */
import { spawn } from "node:child_process"
import * as Net from "node:net"

export const HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"

/** `env` with the huge-pages tunable, unless it already says something about glibc's tunables. */
export const withHugePages = <E extends Record<string, string | undefined>>(env: E): E =>
  env.GLIBC_TUNABLES === undefined ? { ...env, GLIBC_TUNABLES: HUGE_PAGES_TUNABLE } : env

/** Names the pipe by which a restarted command learns that the command that started it is gone. */
const PARENT_PIPE = "EFFECT_JOBLIB_PARENT_PIPE"

/**
 * Runs this very command again with the tunable, when it is missing on Linux, and exits as the copy exits,
 * passing on the signals that stop it. Returns false, to carry on, when there is nothing to do.
 */
export const reexecWithHugePages = (): boolean => {
  if (process.platform !== "linux" || process.env.GLIBC_TUNABLES !== undefined) return false
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ["inherit", "inherit", "inherit", "pipe"],
    env: { ...withHugePages(process.env), [PARENT_PIPE]: "3" }
  })
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const
  for (const signal of signals) process.on(signal, () => child.kill(signal))
  child.on("exit", (code, signal) => {
    for (const s of signals) process.removeAllListeners(s)
    if (signal !== null) process.kill(process.pid, signal)
    else process.exit(code ?? 1)
  })
  return true
}

/**
 * In a command restarted by {@link reexecWithHugePages}: dies with the command that started it. Its end of
 * the pipe closes however it ends, SIGKILL included, and the copy is then killed the same way, so that
 * whoever killed the first process sees the worker gone as it expects.
 */
export const followParent = (): void => {
  if (process.env[PARENT_PIPE] === undefined) return
  delete process.env[PARENT_PIPE]
  const pipe = new Net.Socket({ fd: 3, readable: true, writable: false })
  pipe.on("data", () => {})
  pipe.on("close", () => process.kill(process.pid, "SIGKILL"))
  pipe.on("error", () => process.kill(process.pid, "SIGKILL"))
  pipe.unref()
}
