/** A real small filesystem for fault tests: a tmpfs mounted for the test's scope (needs root, as in CI). */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
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
