/**
 * Pools of worker threads or processes speaking the batch protocol, and the runner that every transport of
 * that protocol shares (a pool's slots, a Remote queue): it encodes and shares a batch's items, sends them,
 * decodes what comes back, and runs again the items after a worker replaced at a stuck one.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { spawn } from "node:child_process"
import { Worker } from "node:worker_threads"
import { InvalidOptions, type ParallelError } from "../../ParallelError.ts"
import * as Options from "../options.ts"
import * as Cpus from "./cpus.ts"
import { withHugePages } from "./hugePages.ts"
import { decode, exitsOf, makeSettled, type Outcome } from "./outcome.ts"
import { makeSlots, type Shipment, type Slot, type Spawn } from "./pool.ts"
import type { Encoded } from "./protocol.ts"
import type { Backend, PrepareOptions, Runner, RunOptions } from "./runner.ts"
import { countBuffers, MovedTwice, shareAll, Sharer } from "./share.ts"
import { identity, inlineEffect, type Work } from "./work.ts"
import { Status, workerSource } from "./workerRuntime.js"

/**
 * Runs batches of `work` over a transport: `send` carries a shipment to a slot's worker and returns its raw
 * results; `describe` names the worker in a defect's stack.
 */
export const transportRun = <I, A, E>(
  work: Work<I, A, E>,
  sharer: Sharer,
  send: (slot: number, shipment: Shipment) => Effect.Effect<Encoded, ParallelError>,
  describe: (slot: number) => string
) => {
  const ship = (slot: number, items: ReadonlyArray<I>, start: number, options: RunOptions) =>
    Effect.suspend((): Effect.Effect<Encoded, ParallelError> => {
      let encoded: ReadonlyArray<unknown> = items
      if (work.encodeItem !== identity) {
        // Pushed, not preallocated: structured clone copies packed arrays much faster than holey ones.
        const out: Array<unknown> = []
        for (let i = 0; i < items.length; i++) out.push(work.encodeItem(items[i]!))
        encoded = out
      }
      if (work.mayShare) {
        try {
          encoded = shareAll(sharer, encoded)
        } catch (error) {
          if (!(error instanceof MovedTwice)) throw error
          return Effect.fail(new InvalidOptions({ option: "transfer", message: error.message }))
        }
      }
      const onProgress = options.onProgress
      return send(slot, {
        items: encoded,
        start,
        failFast: options.failFast,
        timeout: options.timeout,
        refs: sharer.takeRefs(),
        transfer: sharer.takeTransfer(),
        timings: options.timings,
        parent: options.parent,
        onProgress: onProgress === undefined ? undefined : (index, data) => onProgress(start + index, data)
      })
    })
  const run = (
    slot: number,
    items: ReadonlyArray<I>,
    start: number,
    options: RunOptions
  ): Effect.Effect<Outcome<A, E>, ParallelError> =>
    Effect.flatMap(ship(slot, items, start, options), (raw) => {
      if (raw.status?.includes(Status.InlineEffect)) return Effect.fail(inlineEffect(work.label))
      const outcome = decode(work, raw, start, items.length, options.timeout, describe(slot))
      const stoppedAt = raw.stoppedAt
      if (stoppedAt === undefined || options.failFast || stoppedAt + 1 >= items.length) {
        return Effect.succeed(outcome)
      }
      // The worker was replaced at a stuck item: the items after it run on the replacement.
      const next = stoppedAt + 1
      return Effect.map(run(slot, items.slice(next), start + next, options), (rest): Outcome<A, E> => ({
        _tag: "Exits" as const,
        exits: [...exitsOf(outcome), ...exitsOf(rest)],
        duration: outcome.duration + rest.duration
        // No timings: the stuck item's end died with its worker, so they would not line up with the items.
      }))
    })
  return run
}

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
const workerEnv = (workers: number, user: Readonly<Record<string, string>> | undefined) => {
  const share = String(Math.max(1, Math.floor(Cpus.available() / workers)))
  const env: Record<string, string | undefined> = withHugePages({ ...process.env })
  for (const name of NATIVE_THREAD_VARIABLES) env[name] ??= share
  env[Cpus.BUDGET_VARIABLE] = share
  return { ...env, ...user }
}

const PoolOptionsFields = {
  workers: Schema.optional(Options.Jobs),
  maxBytes: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  interruptGrace: Schema.optional(Options.DurationInput),
  memoryLimitMb: Schema.optional(Options.Positive),
  execArgv: Schema.optional(Schema.Array(Schema.String)),
  stderr: Schema.optional(Schema.Literals(["forward", "capture"])),
  env: Schema.optional(Schema.Record(Schema.String, Schema.String)),
  warm: Schema.optional(Schema.Boolean),
  idleTimeout: Schema.optional(Options.PositiveDuration),
  oversubscribe: Schema.optional(Schema.Boolean)
}

/** More workers than this many per CPU is a mistake unless asked for with `oversubscribe`. */
const OVERSUBSCRIBED = 4

/** How long a worker may sit idle before it stops, by default: loky's 300 s. */
const IDLE_TIMEOUT = "5 minutes"

/** The options of `Backend.layerThreads`, as parsed. */
export const ThreadsOptions = Schema.Struct({
  ...PoolOptionsFields,
  resourceLimits: Schema.optional(Schema.Struct({
    maxOldGenerationSizeMb: Schema.optional(Options.Positive),
    maxYoungGenerationSizeMb: Schema.optional(Options.Positive),
    stackSizeMb: Schema.optional(Options.Positive)
  }))
})

/** The options of `Backend.layerProcesses`, as parsed. */
export const ProcessesOptions = Schema.Struct(PoolOptionsFields)

type PoolSettings = typeof ThreadsOptions.Type

/** A pool backend and its slots, which a Remote worker drives directly. */
export interface Pool {
  readonly backend: Backend
  readonly slots: ReadonlyArray<Slot>
}

interface PoolConfig {
  readonly name: string
  readonly workers: number
  readonly maxBytes: number
  readonly grace: number
  readonly memoryLimit: number | undefined
  /** Workers share no memory with this process: reused buffers are sent once per worker and referred to. */
  readonly isolated: boolean
  readonly forwardStderr: boolean
  readonly spawn: Spawn
  /** Start every worker when the pool is built; otherwise each starts with the first batch it gets. */
  readonly warm: boolean
  /** Stop a worker idle this long (undefined: never); the next batch starts a new one. */
  readonly idleTimeout: number | undefined
}

/** Which constructor builds a pool, and its option for the worker count: what a bad count's message names. */
interface Named {
  readonly where: string
  readonly option: string
}

/** Parses the options every pool has, resolving the worker count against the CPU budget. */
const resolvePool = Effect.fnUntraced(function*(parsed: PoolSettings, named: Named) {
  const { where, option } = named
  const requested = yield* Options.resolveJobs(option, parsed.workers ?? -1, `${where}: option "${option}"`)
  const cpus = Cpus.available()
  if (requested > OVERSUBSCRIBED * cpus && parsed.oversubscribe !== true) {
    return yield* new InvalidOptions({
      option,
      message: `${where}: option "${option}": ${requested} workers is more than ${OVERSUBSCRIBED}× the ${cpus} CPU${
        cpus === 1 ? "" : "s"
      } this process may use; ask for fewer (-1 is one per CPU), or pass oversubscribe: true`
    })
  }
  // Inside a worker, a nested pool gets no more workers than that worker's share of the CPUs.
  const budget = Cpus.budget()
  const workers = budget === undefined ? requested : Math.min(requested, budget)
  return {
    workers,
    maxBytes: parsed.maxBytes ?? 1024 * 1024,
    grace: Duration.toMillis(Duration.fromInputUnsafe(parsed.interruptGrace ?? 100)),
    memoryLimit: parsed.memoryLimitMb === undefined ? undefined : parsed.memoryLimitMb * 1024 * 1024,
    forwardStderr: parsed.stderr !== "capture",
    env: workerEnv(workers, parsed.env),
    warm: parsed.warm === true,
    idleTimeout: Options.limitMillis(parsed.idleTimeout ?? IDLE_TIMEOUT)
  }
})

/** Builds a pool backend on top of a spawn function. */
const makePool = Effect.fnUntraced(function*(config: PoolConfig) {
  const settled = makeSettled()
  const batchStates = new Map<number, WeakMap<object, unknown>>()
  const slots = yield* makeSlots(config.workers, config.spawn, {
    grace: config.grace,
    forwardStderr: config.forwardStderr,
    memoryLimit: config.memoryLimit,
    idleTimeout: config.idleTimeout,
    onSettle: settled.notify
  }, config.warm)
  const backend: Backend = {
    name: config.name,
    workers: config.workers,
    prepare: <I, A, E>(work: Work<I, A, E>, items?: ReadonlyArray<I>, options?: PrepareOptions) =>
      Effect.gen(function*() {
        const { key, spec } = yield* work.ship
        const counts = work.mayShare && items !== undefined ? countBuffers(items, config.maxBytes) : undefined
        const sharer = new Sharer(config.maxBytes, counts, config.isolated, options?.transfer === true)
        if (config.isolated) {
          // Buffers sent once per process for this map are dropped when it ends.
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              const ids = sharer.referenced()
              if (ids.length > 0) { for (const slot of slots) slot.release(ids) }
            })
          )
        }
        const run = transportRun(
          work,
          sharer,
          (index, shipment) => slots[index]!.run({ key, spec, ...shipment }),
          (index) => `${config.name} worker ${slots[index]!.workerId}`
        )
        return {
          slots: slots.length,
          outstanding: (slot) => slots[slot]!.outstanding,
          settled: settled.wait,
          batchState: batchStates.get(key) ?? batchStates.set(key, new WeakMap()).get(key),
          restarts: () => slots.reduce((sum, slot) => sum + Math.max(0, slot.spawned - 1), 0),
          run
        } satisfies Runner<I, A, E>
      })
  }
  return { backend, slots } satisfies Pool
})

/** A pool of worker threads for the life of the scope. */
export const makeThreads = Effect.fnUntraced(function*(
  parsed: PoolSettings,
  named: Named = { where: "Backend.layerThreads", option: "workers" }
) {
  const pool = yield* resolvePool(parsed, named)
  let count = 0
  return yield* makePool({
    ...pool,
    name: "threads",
    isolated: false,
    spawn: (control, handlers) => {
      const worker = new Worker(
        threadSource,
        {
          eval: true,
          workerData: { control, threshold: pool.maxBytes },
          resourceLimits: parsed.resourceLimits,
          execArgv: parsed.execArgv ? [...parsed.execArgv] : undefined,
          env: pool.env,
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
  })
})

/** A pool of worker processes for the life of the scope. */
export const makeProcesses = Effect.fnUntraced(function*(
  parsed: PoolSettings,
  named: Named = { where: "Backend.layerProcesses", option: "workers" }
) {
  const pool = yield* resolvePool(parsed, named)
  return yield* makePool({
    ...pool,
    name: "processes",
    isolated: true,
    spawn: (_control, handlers) => {
      const execArgv = parsed.execArgv ? [...parsed.execArgv] : inheritedExecArgv()
      const child = spawn(process.execPath, [...execArgv, "--eval", processBootstrap], {
        serialization: "advanced",
        env: { ...pool.env, EFFECT_JOBLIB_THRESHOLD: String(pool.maxBytes), [SOURCE_VARIABLE]: processSource },
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
  })
})
