/** Runs a fixture program in a Node process of its own, to its end (killed after 30 s), for tests. */
import { Effect } from "effect"
import { execFile } from "node:child_process"

export const runNode = (
  file: URL,
  args: ReadonlyArray<string>,
  options?: {
    readonly cwd?: string
    readonly env?: NodeJS.ProcessEnv
    /** Node's own flags, before the file (V8 flags that NODE_OPTIONS does not take). */
    readonly execArgv?: ReadonlyArray<string>
  }
) =>
  Effect.callback<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resume) => {
    const child = execFile(
      process.execPath,
      [...(options?.execArgv ?? []), file.pathname, ...args],
      { timeout: 30_000, ...options },
      (error, stdout, stderr) =>
        resume(Effect.succeed({ code: error === null ? 0 : Number(error.code ?? -1), stdout, stderr }))
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })
