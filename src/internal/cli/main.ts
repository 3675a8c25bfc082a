/**
 * The commands of `effect-joblib` (see `src/bin.ts`, the entry point that checks the Node version first).
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Clock, Config, Console, Duration, Effect, Layer, Option, Schedule } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Fs from "node:fs"
import * as Cache from "../../Cache.ts"
import * as Remote from "../../Remote.ts"
import { followParent, reexecWithHugePages } from "../parallel/hugePages.ts"

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12
}

/** Parses "1GB", "500 MB", "64k" or a plain number of bytes. */
export const parseSize = (text: string): number | undefined => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = match === null ? undefined : UNITS[match[2]!.toLowerCase()]
  return match === null || unit === undefined ? undefined : Math.round(Number(match[1]) * unit)
}

const formatBytes = (bytes: number) =>
  bytes >= 1e9
    ? `${(bytes / 1e9).toFixed(2)} GB`
    : bytes >= 1e6
    ? `${(bytes / 1e6).toFixed(2)} MB`
    : bytes >= 1e3
    ? `${(bytes / 1e3).toFixed(1)} kB`
    : `${bytes} B`

/** A `.sqlite`/`.db` path, or an existing SQLite file, is a SQLite cache; anything else a directory. */
const isSqlite = (location: string) => {
  if (/\.(sqlite3?|db)$/i.test(location)) return true
  try {
    const fd = Fs.openSync(location, "r")
    try {
      const head = Buffer.alloc(16)
      Fs.readSync(fd, head, 0, 16, 0)
      return head.toString("latin1") === "SQLite format 3\u0000"
    } finally {
      Fs.closeSync(fd)
    }
  } catch {
    return false
  }
}

/** A failure of the command: its message is what the user sees. */
class CommandFailed extends Error {}

const fail = (message: string) => Effect.fail(new CommandFailed(message))

/**
 * Any failure of a command, typed errors of the library included, is one line on stderr and exit code 1,
 * not a stack trace: what went wrong is in the message.
 */
const reportFailure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.catch((error: unknown) =>
      Effect.andThen(
        Console.error(`effect-joblib: ${error instanceof Error ? error.message : String(error)}`),
        Effect.sync(() => {
          process.exitCode = 1
        })
      )
    )
  )

const cache = Command.make("cache", {
  location: Argument.String("location").pipe(
    Argument.withDescription("the cache directory, or its SQLite file (.sqlite, .db)")
  ),
  action: Argument.Literals("action", ["ls", "stats", "prune", "clear"]).pipe(
    Argument.withDescription("ls: list entries; stats: totals; prune: evict to the limits; clear: remove all")
  ),
  maxSize: Flag.String("max-size").pipe(
    Flag.optional,
    Flag.withDescription("prune: keep at most this many bytes (1GB, 500MB)")
  ),
  maxItems: Flag.Int("max-items").pipe(Flag.optional, Flag.withDescription("prune: keep at most this many entries")),
  maxAge: Flag.String("max-age").pipe(
    Flag.optional,
    Flag.withDescription("prune: remove entries unused for this long (30 days)")
  )
}, (config) =>
  Effect.gen(function*() {
    const location = config.location
    if (!Fs.existsSync(location)) return yield* fail(`no cache at ${location}`)
    const layer = isSqlite(location) ? Cache.layerSqlite(location) : Cache.layerFileSystem(location)
    const run = Effect.gen(function*() {
      switch (config.action) {
        case "ls": {
          const entries = [...yield* Cache.entries].sort((a, b) => b.accessed - a.accessed)
          if (entries.length > 0) {
            yield* Console.log(
              [
                "function".padEnd(20),
                "size".padStart(10),
                "computed".padStart(10),
                "last used".padEnd(24),
                "key",
                "input"
              ]
                .join("  ")
            )
          }
          for (const meta of entries) {
            yield* Console.log(
              [
                meta.function.padEnd(20),
                formatBytes(meta.size).padStart(10),
                `${meta.duration.toFixed(1)} ms`.padStart(10),
                new Date(meta.accessed).toISOString(),
                meta.key,
                meta.input
              ].join("  ")
            )
          }
          return yield* Console.log(`${entries.length} entries`)
        }
        case "stats": {
          const stats = yield* Cache.stats
          yield* Console.log(`${stats.items} entries, ${formatBytes(stats.bytes)}`)
          for (const [name, count] of Object.entries(stats.functions).sort((a, b) => b[1] - a[1])) {
            yield* Console.log(`  ${name}: ${count}`)
          }
          return
        }
        case "prune": {
          const maxBytes = Option.getOrUndefined(config.maxSize)
          const bytes = maxBytes === undefined ? undefined : parseSize(maxBytes)
          if (maxBytes !== undefined && bytes === undefined) return yield* fail(`--max-size: cannot read "${maxBytes}"`)
          const age = Option.getOrUndefined(config.maxAge)
          const maxAge = age === undefined ? undefined : Duration.fromInput(age as Duration.Input)
          if (maxAge !== undefined && maxAge._tag === "None") return yield* fail(`--max-age: cannot read "${age}"`)
          const limits = {
            maxBytes: bytes,
            maxItems: Option.getOrUndefined(config.maxItems),
            maxAge: maxAge?._tag === "Some" ? Duration.toMillis(maxAge.value) : undefined
          }
          if (limits.maxBytes === undefined && limits.maxItems === undefined && limits.maxAge === undefined) {
            return yield* fail("prune needs --max-size, --max-items or --max-age")
          }
          const removed = yield* Cache.reduceSize(limits)
          const stats = yield* Cache.stats
          return yield* Console.log(`removed ${removed} entries; ${stats.items} left, ${formatBytes(stats.bytes)}`)
        }
        case "clear": {
          const before = (yield* Cache.stats).items
          yield* Cache.clear
          return yield* Console.log(`removed ${before} entries`)
        }
      }
    })
    return yield* Effect.provide(run, layer)
  }).pipe(reportFailure)).pipe(Command.withDescription("inspect and maintain a cache"))

/** The Redis server: `--redis`, or `REDIS_URL`, which `ps` does not show to others on the machine. */
const redisFlag = Flag.Redacted("redis").pipe(
  Flag.withFallbackConfig(Config.Redacted("REDIS_URL")),
  Flag.withDescription("the Redis server, redis://[user:password@]host:port/db (default: $REDIS_URL)")
)

const worker = Command.make("worker", {
  redis: redisFlag,
  tasks: Flag.String("tasks").pipe(
    Flag.withDescription("modules whose Tasks this worker runs, comma-separated (./tasks.ts,./more.ts)")
  ),
  queue: Flag.String("queue").pipe(Flag.withDefault("effect-joblib"), Flag.withDescription("the queue's name")),
  concurrency: Flag.Int("concurrency").pipe(
    Flag.optional,
    Flag.withDescription("threads running batches (default: every CPU)")
  ),
  allowInline: Flag.Boolean("allow-inline").pipe(
    Flag.withDefault(false),
    Flag.withDescription("also run inline functions sent by source (off: only the given Tasks run)")
  ),
  lockDuration: Flag.Int("lock-duration").pipe(
    Flag.optional,
    Flag.withDescription(
      "milliseconds a batch's lock lasts unrenewed before a dead worker's batch runs elsewhere (3000)"
    )
  ),
  stalledInterval: Flag.Int("stalled-interval").pipe(
    Flag.optional,
    Flag.withDescription("milliseconds between checks for batches of dead workers (1500)")
  ),
  maxStalledCount: Flag.Int("max-stalled-count").pipe(
    Flag.optional,
    Flag.withDescription("times one batch may lose its worker before it fails (2)")
  )
}, (config) =>
  Layer.launch(Remote.layerWorker({
    redis: config.redis,
    queue: config.queue,
    modules: config.tasks.split(",").map((module) => module.trim()).filter((module) => module !== ""),
    concurrency: Option.getOrUndefined(config.concurrency),
    allowInline: config.allowInline,
    lockDuration: Option.getOrUndefined(config.lockDuration),
    stalledInterval: Option.getOrUndefined(config.stalledInterval),
    maxStalledCount: Option.getOrUndefined(config.maxStalledCount)
  })).pipe(reportFailure)).pipe(Command.withDescription("pull batches from a Remote queue and run them"))

const formatAge = (millis: number) => {
  const seconds = Math.max(0, Math.round(millis / 1000))
  return seconds < 120
    ? `${seconds}s`
    : seconds < 7200
    ? `${Math.round(seconds / 60)}m`
    : `${Math.round(seconds / 3600)}h`
}

/** A queue's status as text: what `status` prints, and redraws on a terminal. */
const formatStatus = (status: Remote.Status, now: number): string => {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`
  const lines = [
    `queue "${status.queue}": ${plural(status.workers.length, "worker")}, ${plural(status.capacity, "thread")}`
  ]
  if (status.workers.length > 0) {
    lines.push(`  ${"host:pid".padEnd(32)}${"threads".padStart(8)}${"up".padStart(8)}`)
    for (const worker of [...status.workers].sort((a, b) => a.id.localeCompare(b.id))) {
      lines.push(
        `  ${`${worker.host}:${worker.pid}`.padEnd(32)}${String(worker.threads).padStart(8)}${
          formatAge(now - worker.started).padStart(8)
        }`
      )
    }
  }
  lines.push(
    `batches: ${status.waiting} waiting, ${status.running} running, ${status.stalled} stalled, ${status.failed} failed`,
    `throughput over the last minute: ${status.throughput.items.toFixed(1)} items/s, ${
      status.throughput.batches.toFixed(2)
    } batches/s`
  )
  return lines.join("\n")
}

const status = Command.make("status", {
  redis: redisFlag,
  queue: Flag.String("queue").pipe(Flag.withDefault("effect-joblib"), Flag.withDescription("the queue's name")),
  json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("print once, as JSON"))
}, (config) =>
  Effect.gen(function*() {
    const read = yield* Remote.monitor({ redis: config.redis, queue: config.queue })
    if (config.json) return yield* Effect.flatMap(read, (now) => Console.log(JSON.stringify(now, null, 2)))
    if (!process.stdout.isTTY) {
      return yield* Effect.flatMap(
        Effect.zip(read, Clock.currentTimeMillis),
        ([now, millis]) => Console.log(formatStatus(now, millis))
      )
    }
    // On a terminal: redrawn every second until interrupted (Ctrl-C).
    const draw = Effect.flatMap(Effect.zip(read, Clock.currentTimeMillis), ([now, millis]) =>
      Effect.sync(() => process.stdout.write(`\x1b[H\x1b[2J${formatStatus(now, millis)}\n`)))
    return yield* Effect.repeat(draw, Schedule.spaced("1 second"))
  }).pipe(Effect.scoped, reportFailure)).pipe(
    Command.withDescription("show a Remote queue's workers, batches and throughput")
  )

const app = Command.make("effect-joblib").pipe(Command.withSubcommands([cache, worker, status]))

/** This package's version: package.json, three folders up from here in src/ and in dist/ alike. */
export const version = (): string =>
  (JSON.parse(Fs.readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string })
    .version

/**
 * Under npx, a worker stops when npx does: killing npx does not pass its signal on, and would leave the worker
 * running with no parent. Elsewhere a worker outlives its parent (a shell that started it in the background,
 * say), as a service should.
 */
const followNpx = () => {
  if (process.env.npm_command !== "exec") return
  const parent = process.ppid
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, "SIGTERM")
  }, 1000).unref()
}

/** Runs the command line on `process.argv`. */
export const main = () => {
  if (process.argv[2] === "worker") followNpx()
  // A worker moves big batches for as long as it runs: it restarts itself once with huge pages for them.
  if (process.argv[2] === "worker" && reexecWithHugePages()) return
  followParent()
  NodeRuntime.runMain(Command.run(app, { version: version() }).pipe(Effect.provide(NodeServices.layer)))
}
