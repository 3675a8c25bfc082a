/**
 * Task modules that a worker cannot import: one that starts a program at its top level, and a test
 * runner's test file.
 */
import * as Effect from "effect/Effect"
import * as Url from "node:url"
import { TaskModuleError } from "../../ParallelError.ts"

interface WorkerGuard {
  /** The module a worker is importing to find a task, while it does. */
  readonly importing: string | undefined
  /** Tells the pool at once, before the module's program can end the worker. */
  readonly report: (message: string) => void
}

const workerGuard = (): WorkerGuard | undefined => (globalThis as any)[Symbol.for("effect-joblib/worker")]

/**
 * Fails when this thread is a worker importing a task module and that module, at its top level, is
 * doing `what` (building a pool, running a map): the worker would start workers that import the same
 * module again, without end.
 */
export const checkNotImportingTaskModule = (what: string): Effect.Effect<void, TaskModuleError> =>
  Effect.suspend(() => {
    const guard = workerGuard()
    const module = guard?.importing
    if (guard === undefined || module === undefined) return Effect.void
    const message = `A worker imported ${module} to find a task, and the module ${what} at its top level, ` +
      `which would start workers of its own. Guard the module's program with \`if (import.meta.main) { ... }\`, ` +
      `or define the tasks in a module of their own.`
    guard.report(message)
    return Effect.fail(new TaskModuleError({ module, reason: "TopLevelProgram", message }))
  })

const TEST_FILE = /\.(?:test|spec)\.[cm]?[jt]sx?$/

/** The test file a test runner (vitest, jest) is running in this thread, if any. */
const currentTestFile = (): string | undefined => {
  const vitest = (globalThis as any).__vitest_worker__
  return typeof vitest?.filepath === "string" ? vitest.filepath : undefined
}

/**
 * Fails when a task's module is a test file under a test runner: a worker outside the runner cannot
 * import it (its `describe` and `it` need the runner).
 */
export const checkImportable = (task: string, url: string): Effect.Effect<void, TaskModuleError> =>
  Effect.suspend(() => {
    const underRunner = process.env.VITEST !== undefined || process.env.JEST_WORKER_ID !== undefined
    if (!underRunner || !url.startsWith("file:")) return Effect.void
    const path = Url.fileURLToPath(url)
    if (!TEST_FILE.test(path) && path !== currentTestFile()) return Effect.void
    return Effect.fail(
      new TaskModuleError({
        module: url,
        reason: "TestFile",
        message: `The task ${task} is defined in the test file ${path}, which a worker cannot import outside ` +
          `the test runner. Define the task in an ordinary module and import it from the test ` +
          `(the sequential backend runs it anywhere).`
      })
    )
  })
