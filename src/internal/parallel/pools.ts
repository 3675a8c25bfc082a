/**
 * Pools of worker threads or processes speaking the batch protocol: their options, their size against the
 * CPU budget, and the backend over their slots. The endpoints are in `endpoints.ts`; the runner every
 * transport shares is in `transport.ts`.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Os from "node:os"
import { InvalidOptions } from "../../ParallelError.ts"
import * as Options from "../options.ts"
import * as Cpus from "./cpus.ts"
import { spawnProcess, spawnThread, workerEnv } from "./endpoints.ts"
import { makeSettled } from "./outcome.ts"
import { makeSlots, type Slot, type Spawn } from "./pool.ts"
import type { Backend, PrepareOptions, Runner } from "./runner.ts"
import { countBuffers, Sharer } from "./share.ts"
import { transportRun } from "./transport.ts"
import type { Work } from "./work.ts"

const PoolOptionsFields = {
  workers: Schema.optional(Options.Jobs),
  maxBytes: Schema.optional(Schema.Union([
    Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
    Schema.TemplateLiteral([Schema.Number, Schema.Literals(["K", "M", "G"])]).check(
      Schema.makeFilter((size: string) => Number.parseFloat(size) > 0 || "a size is positive, as \"1M\"")
    ),
    Schema.Null
  ])),
  interruptGrace: Schema.optional(Options.DurationInput),
  memoryLimitMb: Schema.optional(Options.Positive),
  execArgv: Schema.optional(Schema.Array(Schema.String)),
  stderr: Schema.optional(Schema.Literals(["forward", "capture"])),
  env: Schema.optional(Schema.Record(Schema.String, Schema.String)),
  warm: Schema.optional(Schema.Boolean),
  idleTimeout: Schema.optional(Options.PositiveDuration),
  oversubscribe: Schema.optional(Schema.Boolean)
}

/** This machine's name, read once: every batch names where it ran. */
const host = Os.hostname()

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

const UNITS = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as const

/** joblib's `max_nbytes`: a count, a size such as `"1M"` (powers of 1024, as joblib's), or null for none shared. */
const bytesOf = (given: number | `${number}${"K" | "M" | "G"}` | null | undefined): number => {
  if (given === undefined) return 1024 * 1024
  if (given === null) return Infinity
  if (typeof given === "number") return given
  return Math.ceil(Number.parseFloat(given) * UNITS[given.at(-1) as keyof typeof UNITS])
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
    maxBytes: bytesOf(parsed.maxBytes),
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
          (index) => `${config.name} worker ${slots[index]!.workerId}`,
          // An endpoint's id is its thread id in this process, or its child process's pid.
          (index) =>
            config.isolated
              ? { host, pid: slots[index]!.workerId, thread: 0 }
              : { host, pid: process.pid, thread: slots[index]!.workerId }
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
  return yield* makePool({
    ...pool,
    name: "threads",
    isolated: false,
    spawn: spawnThread({
      maxBytes: pool.maxBytes,
      env: pool.env,
      resourceLimits: parsed.resourceLimits,
      execArgv: parsed.execArgv
    })
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
    spawn: spawnProcess({ maxBytes: pool.maxBytes, env: pool.env, execArgv: parsed.execArgv })
  })
})
