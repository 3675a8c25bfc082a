import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Logger, Metric, Stream, Tracer } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Backend, Parallel, Progress } from "../src/index.ts"
import { TraceProbe } from "./fixtures/tasks.ts"
import { recordingTracer } from "./tracing.ts"

const node = Path.join(process.cwd(), "node_modules/.bin/node")
const barScript = Path.join(import.meta.dirname, "fixtures/bar.ts")

/** Waits ~2 ms in a worker or in process, without needing anything from outside. */
const napping = (x: number) => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2)
  return x
}

/** Runs `effect` with a Logger that keeps the messages. */
const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = Logger.make(({ message }) => {
      lines.push((Array.isArray(message) ? message : [message]).join(" "))
    })
    yield* effect.pipe(Effect.provide(Logger.layer([logger])))
    return lines
  })

/** joblib's lines with the times taken out: `elapsed:    0.1s` becomes `elapsed: T`. */
const withoutTimes = (lines: ReadonlyArray<string>) =>
  lines.map((line) => line.replace(/(elapsed|remaining): +[\d.]+(s|min)/g, "$1: T"))

/** The Started event of a 2-worker threads map with 4 batches pre-dispatched. */
const started = (base: Pick<Progress.Snapshot, "mapId" | "label" | "total">): Progress.Event => ({
  ...base,
  _tag: "Started",
  workers: 2,
  backend: "threads",
  preDispatch: 4,
  completed: 0,
  dispatched: 0,
  batches: 0,
  exhausted: false,
  elapsed: 0,
  eta: undefined
})

describe("Progress", () => {
  it.effect("layerEvents streams every map's events to subscribers", () =>
    Effect.gen(function*() {
      const events = yield* (yield* Progress.Events).subscribe
      const collected = yield* events.pipe(
        Stream.takeUntil((event) => event._tag === "Finished"),
        Stream.runCollect,
        Effect.forkScoped
      )
      yield* Parallel.map(Array.from({ length: 10 }, (_, i) => i), napping, { batchSize: 3 })
      const tags = (yield* Fiber.join(collected)).map((event) => event._tag)
      assert.deepStrictEqual(tags.filter((tag) => tag === "BatchCompleted").length, 4)
      assert.strictEqual(tags[0], "Started")
      assert.strictEqual(tags.at(-1), "Finished")
    }).pipe(Effect.provide(Progress.layerEvents)))

  describe("reporters add up however their Layers are combined", () => {
    type Combine = (
      handler: Layer.Layer<never>,
      events: Layer.Layer<Progress.Events>
    ) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, Progress.Events>>
    const forms: ReadonlyArray<readonly [string, Combine]> = [
      ["Layer.mergeAll", (handler, events) => Effect.provide(Layer.mergeAll(events, handler))],
      ["Layer.mergeAll, the other order", (handler, events) => Effect.provide(Layer.mergeAll(handler, events))],
      ["Layer.provideMerge", (handler, events) => Effect.provide(Layer.provideMerge(events, handler))],
      [
        "nested Effect.provide",
        (handler, events) => (effect) => effect.pipe(Effect.provide(events), Effect.provide(handler))
      ]
    ]
    for (const [name, combine] of forms) {
      it.effect(`${name}: a handler Layer, layerEvents and a provided Progress all see every event`, () => {
        const seen: Array<string> = []
        const direct: Array<string> = []
        const handler = Progress.layer((event) => Effect.sync(() => void seen.push(event._tag)))
        return Effect.gen(function*() {
          const events = yield* (yield* Progress.Events).subscribe
          const streamed = yield* events.pipe(
            Stream.takeUntil((event) => event._tag === "Finished"),
            Stream.map((event) => event._tag),
            Stream.runCollect,
            Effect.forkScoped
          )
          yield* Parallel.map([1, 2, 3], napping, { batchSize: 1 })
          const tags = yield* Fiber.join(streamed)
          assert.deepStrictEqual(tags, ["Started", ...tags.slice(1, -1), "Finished"])
          assert.strictEqual(tags.filter((tag) => tag === "BatchCompleted").length, 3)
          assert.deepStrictEqual(direct, tags)
          // The handler Layer forks each handler: let them run before comparing.
          yield* Effect.yieldNow
          assert.deepStrictEqual(seen, tags)
        }).pipe(
          combine(handler, Progress.layerEvents),
          Effect.provideService(Progress.Progress, (event) => void direct.push(event._tag))
        )
      })
    }

    it.effect("the same reporter Layer provided twice reports each event once", () => {
      const seen: Array<string> = []
      const handler = Progress.layer((event) => Effect.sync(() => void seen.push(event._tag)))
      return Effect.gen(function*() {
        yield* Parallel.map([1], napping)
        yield* Effect.yieldNow
        assert.deepStrictEqual(seen.filter((tag) => tag === "Started"), ["Started"])
      }).pipe(Effect.provide(Layer.mergeAll(handler, handler)), Effect.provide(handler))
    })
  })

  describe("verbose", () => {
    // joblib 1.2 (Debian's python3-joblib) printed these for Parallel(n_jobs=2, verbose=v, batch_size=1)
    // over n tasks of 20 ms, with the times taken out.
    const joblib: Record<string, ReadonlyArray<string>> = {
      "10/10": [
        "Done   1 tasks      | elapsed: T",
        "Done   4 tasks      | elapsed: T",
        "Done  10 out of  10 | elapsed: T finished"
      ],
      "40/5": ["Done  14 tasks      | elapsed: T", "Done  40 out of  40 | elapsed: T finished"],
      "100/2": ["Done  37 tasks      | elapsed: T", "Done 100 out of 100 | elapsed: T finished"]
    }
    /**
     * The lines `verboseLines` prints for n one-task batches that complete one by one: `batchesAt(k)` is the
     * dispatched count the k-th completion sees, and the input is found exhausted from completion
     * `exhaustedFrom` on. The first line is the Started one.
     */
    const replay = (verbose: number, n: number, batchesAt: (k: number) => number, exhaustedFrom: number) => {
      const lines = Progress.verboseLines(verbose)
      const base = { mapId: 1, label: "f", total: n, eta: undefined, elapsed: 100 }
      const out = [lines(started(base))]
      for (let k = 1; k <= n; k++) {
        const batches = batchesAt(k)
        out.push(lines({
          ...base,
          _tag: "BatchCompleted",
          start: k - 1,
          size: 1,
          duration: 1,
          failed: 0,
          worker: "slot 1",
          completed: k,
          dispatched: batches,
          batches,
          exhausted: k >= exhaustedFrom
        }))
      }
      out.push(lines({ ...base, _tag: "Finished", completed: n, dispatched: n, batches: n, exhausted: true }))
      return out.filter((line) => line !== undefined)
    }

    for (const [key, expected] of Object.entries(joblib)) {
      const [n, verbose] = key.split("/").map(Number) as [number, number]
      it(`reproduces joblib's lines and thinning for ${n} tasks at verbose=${verbose}`, () => {
        // joblib's timeline: 4 batches pre-dispatched, each completion reported before the next dispatch,
        // and the input found exhausted by the dispatch after the last item's.
        const printed = replay(verbose, n, (k) => Math.min(n, 3 + k), n - 2)
        assert.strictEqual(printed[0], "[Parallel(workers=2)]: Using backend threads with 2 concurrent workers.")
        assert.deepStrictEqual(withoutTimes(printed.slice(1)), expected.map((line) => `[Parallel(workers=2)]: ${line}`))
      })
    }

    it("completions that arrive together, or batches waiting for a worker, thin as joblib thins", () => {
      // Here the dispatcher runs after a completion is reported, and a batch counts as dispatched only once
      // a worker is free: two completions in one instant see the same count. joblib's lines must not change.
      const printed = replay(10, 10, (k) => Math.min(10, 2 + 2 * Math.floor((k + 1) / 2)), 8)
      assert.deepStrictEqual(
        withoutTimes(printed.slice(1)),
        joblib["10/10"]!.map((line) => `[Parallel(workers=2)]: ${line}`)
      )
    })

    it.live("logs through the Effect Logger while a map runs", () =>
      Effect.gen(function*() {
        const lines = yield* logged(
          Parallel.map(Array.from({ length: 40 }, (_, i) => i), napping, { batchSize: 1, verbose: 10 })
        )
        assert.strictEqual(lines[0], "[Parallel(workers=2)]: Using backend sequential with 2 concurrent workers.")
        assert.match(lines.at(-1)!, /^\[Parallel\(workers=2\)\]: Done  40 out of  40 \| elapsed: +[\d.]+s finished$/)
        for (const line of lines.slice(1, -1)) {
          assert.match(line, /^\[Parallel\(workers=2\)\]: Done +\d+ (tasks      |out of  40 )\| elapsed: +[\d.]+s/)
        }
        assert.isBelow(lines.length, 40, "thinned")
      }).pipe(Effect.provide(Backend.layerSequential({ concurrency: 2 }))))

    it.effect("verbose=0 (the default) logs nothing", () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* logged(Parallel.map([1, 2, 3], (x) => x)), [])
      }))

    it("the 'out of' form estimates the time remaining", () => {
      const lines = Progress.verboseLines(100)
      const base = { mapId: 1, label: "f", batches: 4, total: 4, exhausted: true, eta: undefined }
      lines(started(base))
      const line = lines({
        ...base,
        _tag: "BatchCompleted",
        start: 0,
        size: 1,
        duration: 1,
        failed: 0,
        worker: "slot 1",
        completed: 1,
        dispatched: 4,
        elapsed: 2000
      })
      assert.strictEqual(line, "[Parallel(workers=2)]: Done   1 out of   4 | elapsed:    2.0s remaining:    6.0s")
    })
  })

  describe("terminal bar", () => {
    it("a line shows the label, bar, count, rate and ETA, within the terminal's width", () => {
      const line = Progress.barLine({ label: "score", completed: 40, total: 100, elapsed: 2000, eta: 3000 }, 60)
      const bar = /^score \[(█*)(░*)\] 40\/100  20\.0 it\/s  ETA 3\.0s$/.exec(line)!
      assert.isNotNull(bar, line)
      assert.approximately(bar[1]!.length / (bar[1]!.length + bar[2]!.length), 0.4, 0.05)
      assert.isAtMost(line.length, 60)
      assert.isAtLeast(line.length, 55, "the bar fills the width")
      assert.strictEqual(
        Progress.barLine({ label: "lazy", completed: 7, total: undefined, elapsed: 1000, eta: undefined }, 60),
        "lazy 7 done  7.0 it/s  1.0s"
      )
      assert.isAtMost(
        Progress.barLine({ label: "x".repeat(50), completed: 1, total: 9, elapsed: 1, eta: 1 }, 30).length,
        30
      )
    })

    const hasTmux = ChildProcess.spawnSync("tmux", ["-V"]).status === 0

    it.skipIf(!hasTmux)("draws in a real terminal (tmux) and stays silent in CI", () => {
      const report = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-bar-")), "report.html")
      const screen = (ci: boolean) => {
        // A server per screen: kill-server returns before the old server has gone, and a new session on
        // the same socket can reach the dying one ("server exited unexpectedly").
        const socket = `effect-joblib-test-${process.pid}-${ci ? "ci" : "tty"}`
        const tmux = (...args: Array<string>) =>
          ChildProcess.execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" })
        const command = `${ci ? "env CI=1" : "env -u CI"} EJL_REPORT=${report} ${node} ${barScript}; sleep 60`
        tmux("new-session", "-d", "-s", "bar", "-x", "100", "-y", "12", command)
        try {
          const deadline = Date.now() + 20_000
          let text = ""
          while (Date.now() < deadline) {
            text = tmux("capture-pane", "-p", "-t", "bar")
            if (text.includes("DONE")) return text
            ChildProcess.execFileSync("sleep", ["0.2"])
          }
          throw new Error(`the script did not finish:\n${text}`)
        } finally {
          tmux("kill-server")
        }
      }
      const drawn = screen(false)
      assert.match(drawn, /squares \[█{10,}\] 40\/40 +[\d.]+ it\/s +ETA 0\.0s/)
      // With Progress.layerReport as well, the report's path follows the bar's last line.
      assert.match(drawn, new RegExp(`ETA 0\\.0s *\\n+report: ${report}\\n`))
      const quiet = screen(true)
      assert.notInclude(quiet, "█", "no bar when CI is set")
      assert.notInclude(quiet, "report:", "nor the report's path")
    }, 60_000)

    it("stays silent when output is piped", () => {
      const out = ChildProcess.spawnSync(node, [barScript], { encoding: "utf8", env: { ...process.env, CI: "" } })
      assert.strictEqual(out.status, 0, out.stderr)
      assert.include(out.stdout, "DONE")
      assert.notInclude(out.stderr, "█")
      assert.notInclude(out.stderr, "\r")
    }, 30_000)
  })

  it.effect("counts tasks, task durations and worker restarts as metrics", () =>
    Effect.gen(function*() {
      const count = (name: string) => Effect.map(Metric.snapshot, (all) => all.find((m) => m.id === name)?.state as any)
      const before = (yield* count("effect_joblib_tasks_completed"))?.count ?? 0
      yield* Parallel.map(Array.from({ length: 25 }, (_, i) => i), (x) => x, { batchSize: 5 })
      assert.strictEqual((yield* count("effect_joblib_tasks_completed")).count - before, 25)
      assert.isAtLeast((yield* count("effect_joblib_task_duration_ms")).count, 5)
    }))

  it.effect("each map runs in a span of its own, with its backend", () =>
    Effect.gen(function*() {
      const { spans, tracer } = recordingTracer()
      yield* Parallel.map([1, 2], (x) => x).pipe(
        Effect.withSpan("pipeline"),
        Effect.provideService(Tracer.Tracer, tracer)
      )
      yield* Parallel.stream([1, 2], (x) => x).pipe(Stream.runDrain, Effect.provideService(Tracer.Tracer, tracer))
      const map = spans.find((span) => span.name === "Parallel.map")!
      assert.strictEqual(
        map.parent?._tag === "Some" ? map.parent.value.spanId : undefined,
        spans.find((s) => s.name === "pipeline")!.spanId
      )
      assert.strictEqual(map.attributes.get("backend"), "sequential")
      assert.isDefined(spans.find((span) => span.name === "Parallel.stream"))
    }))

  it.live("a trace shows map → batch → task, with each task where its worker ran it, on every local backend", () =>
    Effect.gen(function*() {
      for (
        const backend of [
          Backend.layerSequential(),
          Backend.layerThreads({ workers: 2 }),
          Backend.layerProcesses({ workers: 2 })
        ]
      ) {
        const { spans, tracer } = recordingTracer()
        yield* Parallel.map([1, 2, 3, 4, 5, 6], (x) => x, { batchSize: 2 }).pipe(
          Effect.provide(backend),
          Effect.provideService(Tracer.Tracer, tracer)
        )
        const map = spans.find((span) => span.name === "Parallel.map")!
        const batches = spans.filter((span) => span.name === "Parallel.batch")
        assert.strictEqual(batches.length, 3)
        for (const batch of batches) {
          assert.strictEqual(batch.parent?._tag === "Some" ? batch.parent.value.spanId : undefined, map.spanId)
          assert.strictEqual(batch.attributes.get("batch.size"), 2)
          assert.strictEqual(batch.status._tag, "Ended")
        }
        assert.deepStrictEqual(batches.map((b) => b.attributes.get("batch.start")).sort(), [0, 2, 4])
        const tasks = spans.filter((span) => span.name === "Parallel.task")
        assert.deepStrictEqual(tasks.map((t) => t.attributes.get("task.index")).sort(), [0, 1, 2, 3, 4, 5])
        for (const task of tasks) {
          const parent = batches.find((b) => task.parent?._tag === "Some" && task.parent.value.spanId === b.spanId)
          assert.isDefined(parent, "a task's parent is its batch")
          const index = task.attributes.get("task.index") as number
          assert.strictEqual(parent!.attributes.get("batch.start"), index - (index % 2))
          assert.strictEqual(task.traceId, map.traceId)
          assert.strictEqual(task.status._tag, "Ended")
          if (task.status._tag === "Ended" && parent!.status._tag === "Ended") {
            // Placed on the worker's clock, which is this machine's: within its batch, give or take 50 ms.
            const slack = 50_000_000n
            assert.isTrue(task.status.startTime >= parent!.status.startTime - slack, "starts in its batch")
            assert.isTrue(task.status.endTime <= parent!.status.endTime + slack, "ends in its batch")
            assert.isTrue(task.status.endTime >= task.status.startTime)
          }
        }
      }
    }))

  it.live("a Task's own spans and logs join its batch's trace, in whichever process it runs", () =>
    Effect.gen(function*() {
      for (
        const backend of [
          Backend.layerSequential(),
          Backend.layerThreads({ workers: 2 }),
          Backend.layerProcesses({ workers: 1 })
        ]
      ) {
        const { spans, tracer } = recordingTracer()
        const probes = yield* Parallel.map([1, 2], TraceProbe, { batchSize: 1 }).pipe(
          Effect.provide(backend),
          Effect.provideService(Tracer.Tracer, tracer)
        )
        const map = spans.find((span) => span.name === "Parallel.map")!
        const batchIds = new Set(spans.filter((span) => span.name === "Parallel.batch").map((span) => span.spanId))
        for (const probe of probes) {
          assert.strictEqual(probe.traceId, map.traceId)
          assert.isTrue(batchIds.has(probe.parentSpanId), "the task's own span is a child of its batch")
          assert.strictEqual(probe.logTraceId, map.traceId)
          assert.isTrue(batchIds.has(probe.logSpanId!), "its logs carry the batch's span id")
        }
      }
    }))

  it.live("without a tracer of its own, a map asks its workers for no timings", () =>
    Effect.gen(function*() {
      const record = { timings: [] as Array<boolean | undefined> }
      const layer = Backend.make({
        name: "spy",
        workers: 1,
        runBatch: (batch) =>
          Effect.map(batch.runHere, (outcome) => {
            record.timings.push(outcome.timings !== undefined)
            return outcome
          })
      })
      yield* Parallel.map([1, 2, 3], (x) => x, { batchSize: 1 }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(record.timings, [false, false, false])
    }))
})
