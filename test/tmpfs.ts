/** A real small filesystem for fault tests: a tmpfs mounted for the test's scope (needs root, as in CI). */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Module from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"

/** Mounts a tmpfs with `options` (for example `"size=64k"` or `"size=64k,ro"`) and unmounts it afterwards. */
export const tmpfs = (options: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-tmpfs-"))
      ChildProcess.execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir])
      return dir
    }),
    (dir) =>
      Effect.sync(() => {
        ChildProcess.execFileSync("umount", [dir])
        Fs.rmSync(dir, { recursive: true, force: true })
      })
  )

/** Whether this machine lets tests mount a tmpfs (root, as in CI). */
export const canMount = (() => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-tmpfs-probe-"))
  try {
    ChildProcess.execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" })
    ChildProcess.execFileSync("umount", [dir], { stdio: "ignore" })
    return true
  } catch {
    return false
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
})()

const nodeFs = Module.createRequire(import.meta.url)("node:fs") as typeof Fs

/**
 * A full disk where a tmpfs cannot be mounted: while the scope lasts, every write through Node's file API to a
 * file under `dir` fails with ENOSPC, as on a disk with no space left. Code that writes through its own I/O (a
 * SQLite database) is not covered.
 */
export const noSpaceThroughFileApi = (dir: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const original = { openSync: nodeFs.openSync, writeSync: nodeFs.writeSync, writeFileSync: nodeFs.writeFileSync }
      const under = (path: unknown) => typeof path === "string" && Path.resolve(path).startsWith(Path.resolve(dir))
      const fds = new Set<number>()
      const noSpace = (syscall: string) =>
        Object.assign(new Error(`ENOSPC: no space left on device, ${syscall}`), { code: "ENOSPC", errno: -28, syscall })
      nodeFs.openSync = ((path: Fs.PathLike, ...rest: Array<any>) => {
        const fd = (original.openSync as any)(path, ...rest) as number
        if (under(path)) fds.add(fd)
        return fd
      }) as typeof Fs.openSync
      nodeFs.writeSync = ((fd: number, ...rest: Array<any>) => {
        if (fds.has(fd)) throw noSpace("write")
        return (original.writeSync as any)(fd, ...rest)
      }) as typeof Fs.writeSync
      nodeFs.writeFileSync = ((path: Fs.PathOrFileDescriptor, ...rest: Array<any>) => {
        if (under(path)) throw noSpace("write")
        return (original.writeFileSync as any)(path, ...rest)
      }) as typeof Fs.writeFileSync
      Module.syncBuiltinESMExports()
      return original
    }),
    (original) =>
      Effect.sync(() => {
        Object.assign(nodeFs, original)
        Module.syncBuiltinESMExports()
      })
  )
