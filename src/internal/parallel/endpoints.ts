/**
 * The endpoints a pool's slots talk to: a worker thread or a child process started from the worker runtime's
 * source, with the environment and Node options a worker gets.
 */
import { spawn } from "node:child_process"
import { type ResourceLimits, Worker } from "node:worker_threads"
import * as Cpus from "./cpus.ts"
import { withHugePages } from "./hugePages.ts"
import type { Spawn } from "./pool.ts"
import { workerSource } from "./workerRuntime.js"

// Workers start from source text rather than a file of this package, so that they start the same way
// from an installed package, a single-file bundle or a test runner.
const threadSource = workerSource("startThread")
const processSource = workerSource("startProcess")
const SOURCE_VARIABLE = "EFFECT_JOBLIB_WORKER_SOURCE"
const processBootstrap = `new Function(process.env.${SOURCE_VARIABLE})()`

/** Options of this process that would make a worker process run something else, or nothing. */
const NOT_INHERITED = new Set(["-e", "--eval", "-p", "--print", "-c", "--check", "-i", "--interactive", "--test"])
const TAKES_VALUE = new Set(["-e", "--eval", "-p", "--print"])

/** The Node options a worker process inherits from this one (as `fork` would), less any entry point. */
const inheritedExecArgv = (): Array<string> => {
  const out: Array<string> = []
  const argv = process.execArgv
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const name = flag.split("=", 1)[0]!
    if (
      NOT_INHERITED.has(name) || name.startsWith("--watch") || name.startsWith("--test-") || name === "--input-type"
    ) {
      if (TAKES_VALUE.has(flag)) i++
      continue
    }
    out.push(flag)
  }
  return out
}

/** Native thread pools that a worker should size to its share of the CPUs, as joblib does for BLAS. */
const NATIVE_THREAD_VARIABLES = [
  "UV_THREADPOOL_SIZE",
  "OMP_NUM_THREADS",
  "OPENBLAS_NUM_THREADS",
  "MKL_NUM_THREADS",
  "VECLIB_MAXIMUM_THREADS",
  "NUMEXPR_NUM_THREADS",
  "BLIS_NUM_THREADS"
]

/**
 * The environment of a worker: glibc's huge pages for big allocations, its CPU budget for nested maps,
 * native thread pool sizes, then the user's.
 */
export const workerEnv = (workers: number, user: Readonly<Record<string, string>> | undefined) => {
  const share = String(Math.max(1, Math.floor(Cpus.available() / workers)))
  const env: Record<string, string | undefined> = withHugePages({ ...process.env })
  for (const name of NATIVE_THREAD_VARIABLES) env[name] ??= share
  env[Cpus.BUDGET_VARIABLE] = share
  return { ...env, ...user }
}

export interface EndpointOptions {
  /** Buffers from this size are shared or moved rather than copied. */
  readonly maxBytes: number
  readonly env: Record<string, string | undefined>
  readonly execArgv?: ReadonlyArray<string> | undefined
}

/** Starts worker threads, named in order. */
export const spawnThread = (
  options: EndpointOptions & { readonly resourceLimits?: ResourceLimits | undefined }
): Spawn => {
  let count = 0
  return (control, handlers) => {
    const worker = new Worker(
      threadSource,
      {
        eval: true,
        workerData: { control, threshold: options.maxBytes },
        resourceLimits: options.resourceLimits,
        execArgv: options.execArgv ? [...options.execArgv] : undefined,
        env: options.env,
        stderr: true,
        name: `effect-joblib-${++count}`
      } as ConstructorParameters<typeof Worker>[1]
    )
    worker.stderr.on("data", handlers.onStderr)
    worker.on("message", handlers.onMessage)
    worker.on("error", handlers.onError)
    worker.on("exit", (code) => handlers.onExit(code, undefined))
    return {
      id: worker.threadId,
      post: (message, transfer) => worker.postMessage(message, transfer as Array<ArrayBuffer> | undefined),
      terminate: () => worker.terminate().then(() => undefined)
    }
  }
}

/** Starts worker processes running this Node with the options this process was started with. */
export const spawnProcess = (options: EndpointOptions): Spawn => (_control, handlers) => {
  const execArgv = options.execArgv ? [...options.execArgv] : inheritedExecArgv()
  const child = spawn(process.execPath, [...execArgv, "--eval", processBootstrap], {
    serialization: "advanced",
    env: { ...options.env, EFFECT_JOBLIB_THRESHOLD: String(options.maxBytes), [SOURCE_VARIABLE]: processSource },
    stdio: ["ignore", "inherit", "pipe", "ipc"]
  })
  child.stderr!.on("data", handlers.onStderr)
  child.on("message", (message) => handlers.onMessage(message as never))
  child.on("error", handlers.onError)
  child.on("exit", (code, signal) => {
    const report = () => handlers.onExit(code ?? undefined, signal ?? undefined)
    // A crash report is read whole once stderr ends; a grandchild holding the pipe open delays it little.
    const stderr = child.stderr!
    if (stderr.readableEnded) return report()
    const timer = setTimeout(report, 200)
    stderr.once("end", () => {
      clearTimeout(timer)
      report()
    })
  })
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  return {
    id: child.pid ?? -1,
    // A failed send means the channel closed: the exit handler reports the worker as crashed.
    post: (message) => void child.send(message, () => {}),
    terminate: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      return exited
    }
  }
}
