/**
 * `Progress.layerReport`: the HTML timeline of real maps (worker threads and child processes, with failures,
 * retries and a timeout), checked as data and opened in a real headless Chromium.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Logger, Schedule } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Backend, Parallel, ParallelError, Progress, Remote } from "../src/index.ts"
import { renderReport } from "../src/internal/progress/reportHtml.ts"
import { record, type Timeline } from "../src/internal/progress/timeline.ts"
import { Flaky, Sleep, SquareRoot } from "./fixtures/tasks.ts"
import { hasRedis, startRedis, startWorkerProcess } from "./redisServer.ts"

const CHROMIUM = "/usr/bin/chromium"
// Where Debian's chromium is not installed the browser test cannot run; CI installs it (`.ci/run`), and there
// the test runs, and fails, without it.
const hasChromium = Fs.existsSync(CHROMIUM) || process.env["CI"] !== undefined

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-report-"))

/** The events of what ran, beside the report. */
const collected = () => {
  const events: Array<Progress.Event> = []
  return { events, layer: Progress.layer((event) => Effect.sync(() => void events.push(event))) }
}

/**
 * A map of 40 items on the sequential backend with 2 slots, where items 7 and 23 fail once each and are
 * retried; then a map on 2 child processes that fails at item 5.
 */
const knownMaps = (file: string) =>
  Effect.gen(function*() {
    const { events, layer } = collected()
    const report = Progress.layerReport(file)
    const both = Layer.mergeAll(report, layer)
    const run = `${process.pid}-${Math.random().toString(36).slice(2)}`
    const flaky = Array.from(
      { length: 40 },
      (_, i) => ({ key: `report-${run}-${i}`, failures: i === 7 || i === 23 ? 1 : 0 })
    )
    yield* Parallel.map(flaky, Flaky, { batchSize: 4, retry: Schedule.recurs(1) }).pipe(
      Effect.provide(Backend.layerSequential({ concurrency: 2 })),
      Effect.provide(both)
    )
    const items = Array.from({ length: 40 }, (_, i) => i)
    const failed = yield* Effect.exit(
      Parallel.map(items.map((x) => (x === 5 ? -1 : x)), SquareRoot, { batchSize: 5 }).pipe(
        Effect.provide(Backend.layerProcesses({ workers: 2 })),
        Effect.provide(both)
      )
    )
    return { events, failed }
  })

/** Events as a map on Remote would send them: a batch stalled on a lost worker, a timed-out item. */
const remoteEvents = (): Array<Progress.Event> => {
  const base = { mapId: 7, label: "<script>alert(1)</script>", total: 6, eta: undefined, exhausted: true, batches: 3 }
  let completed = 0
  const at = (elapsed: number) => ({ ...base, completed, dispatched: 6, elapsed })
  const done = (start: number, elapsed: number, worker: string, failed = 0): Progress.Event => {
    completed += 2
    return { ...at(elapsed), _tag: "BatchCompleted", start, size: 2, duration: 40, failed, worker }
  }
  return [
    { ...at(0), _tag: "Started", workers: 2, backend: "remote", preDispatch: 4 },
    done(0, 50, "build-1 pid 41 thread 1"),
    { ...at(60), _tag: "BatchRetried", start: 2, size: 2, reason: "stalled" },
    done(4, 90, "build-1 pid 41 thread 2", 1),
    done(2, 140, "build-2 pid 77 thread 1"),
    { ...at(150), _tag: "Failed", reason: "TaskTimeout: item 5 ran past 30 ms" }
  ]
}

describe("Progress.layerReport", () => {
  it("draws Remote lanes by host and pid, stalled batches, timeouts, and escapes what a map names", () => {
    const timelines = new Map<number, Timeline>()
    let ended: Timeline | undefined
    for (const event of remoteEvents()) ended = record(timelines, event) ?? ended
    const html = renderReport([ended!], "now")
    const lanes = [...html.matchAll(/<g class="lane" data-worker="([^"]+)"/g)].map((match) => match[1])
    assert.deepStrictEqual(lanes, ["build-1 pid 41 thread 1", "build-1 pid 41 thread 2", "build-2 pid 77 thread 1"])
    assert.strictEqual((html.match(/<path class="retry stalled"/g) ?? []).length, 1)
    assert.strictEqual((html.match(/<rect class="bar failed"/g) ?? []).length, 1)
    assert.include(html, "Failed: TaskTimeout: item 5 ran past 30 ms")
    assert.notInclude(html, "<script>")
    assert.include(html, "&lt;script&gt;alert(1)&lt;/script&gt;")
  })

  it("draws a map of 200,000 batches (one item each), too many to spread into Math.max", () => {
    const timelines = new Map<number, Timeline>()
    const base = { mapId: 9, label: "many", total: 200_000, eta: undefined, exhausted: true, batches: 200_000 }
    const at = (completed: number, elapsed: number) => ({ ...base, completed, dispatched: 200_000, elapsed })
    record(timelines, { ...at(0, 0), _tag: "Started", workers: 2, backend: "threads", preDispatch: 4 })
    for (let i = 0; i < 200_000; i++) {
      const worker = `threads worker ${1 + (i % 2)}`
      record(timelines, {
        ...at(i + 1, 1 + i / 100),
        _tag: "BatchCompleted",
        start: i,
        size: 1,
        duration: 0.01,
        failed: 0,
        worker
      })
    }
    const ended = record(timelines, { ...at(200_000, 2001), _tag: "Finished" })!
    const html = renderReport([ended], "now")
    assert.strictEqual((html.match(/<rect class="bar/g) ?? []).length, 200_000)
    assert.include(html, `<dd data-key="items">200000 of 200000</dd>`)
    assert.include(html, `<dd data-key="wall time">2001 ms</dd>`)
  })

  it.effect.skipIf(!hasRedis)(
    "a Remote map's report has a lane per worker thread, named by host and pid",
    () =>
      Effect.gen(function*() {
        const redis = yield* Effect.acquireRelease(
          Effect.promise(() => startRedis()),
          (server) => Effect.promise(() => server.stop())
        )
        const queue = `report-${process.pid}`
        yield* Effect.acquireRelease(
          Effect.sync(() => startWorkerProcess(redis.url, queue, { concurrency: 2 })),
          (worker) => Effect.sync(() => worker.kill("SIGKILL"))
        )
        const file = Path.join(tmp(), "remote.html")
        yield* Parallel.map(Array.from({ length: 8 }, () => 30), Sleep, { batchSize: 1 }).pipe(
          Effect.provide(Remote.layer({ redis: redis.url, queue, noWorkerTimeout: "20 seconds" })),
          Effect.provide(Progress.layerReport(file))
        )
        const html = Fs.readFileSync(file, "utf8")
        const lanes = [...html.matchAll(/<g class="lane" data-worker="([^"]+)"/g)].map((match) => match[1]!)
        assert.isAtLeast(lanes.length, 1)
        for (const lane of lanes) assert.match(lane, new RegExp(`^${Os.hostname()} pid \\d+ thread [12]$`))
        assert.strictEqual((html.match(/<rect class="bar/g) ?? []).length, 8)
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )

  it.effect("writes one self-contained page per program: lanes, bars, failures, retries, a summary", () =>
    Effect.gen(function*() {
      const file = Path.join(tmp(), "report.html")
      const { events, failed } = yield* knownMaps(file)
      assert.isTrue(Exit.isFailure(failed))
      const html = Fs.readFileSync(file, "utf8")
      const completed = events.filter((event) => event._tag === "BatchCompleted")
      assert.strictEqual((html.match(/<rect class="bar/g) ?? []).length, completed.length)
      assert.strictEqual((html.match(/<section class="map/g) ?? []).length, 2)
      assert.include(html, `<section class="map failed"`)
      assert.include(html, "Failed: ")
      const retried = events.filter((event) => event._tag === "BatchRetried")
      assert.isAtLeast(retried.length, 2)
      assert.strictEqual((html.match(/<path class="retry/g) ?? []).length, retried.length)
      assert.notInclude(html, "<script")
      assert.notMatch(html, /(src|href)="https?:/)
      assert.notInclude(html, ".tmp")
      assert.deepStrictEqual(Fs.readdirSync(Path.dirname(file)), ["report.html"], "no temporary file is left")
    }))

  it.effect("a report that cannot be written is logged as an error, and the map goes on", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const file = Path.join(dir, "report.html")
      const lines: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        lines.push(`${logLevel} ${(Array.isArray(message) ? message : [message]).join(" ")}`)
      })
      const out = yield* Effect.gen(function*() {
        // Gone after the layer was built: the write at the map's end fails.
        Fs.rmSync(dir, { recursive: true })
        const out = yield* Parallel.map([1, 2, 3], (x) => x * 2)
        yield* Effect.yieldNow
        return out
      }).pipe(Effect.provide(Progress.layerReport(file)), Effect.provide(Logger.layer([logger])))
      assert.deepStrictEqual(out, [2, 4, 6])
      assert.isFalse(Fs.existsSync(dir))
      assert.isTrue(
        lines.some((line) => line.startsWith("Error") && line.includes(`could not write ${file}`)),
        lines.join("\n")
      )
    }))

  it.effect("a directory that does not exist fails the layer with InvalidOptions", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Parallel.map([1], (x) => x).pipe(Effect.provide(Progress.layerReport("/no/such/dir/report.html")))
      )
      assert.instanceOf(error, ParallelError.InvalidOptions)
      assert.include(error.message, "/no/such/dir")
    }))

  it.effect("a 100k-item map with auto batching writes a report of at most a few MB", () =>
    Effect.gen(function*() {
      const file = Path.join(tmp(), "big.html")
      yield* Parallel.map(Array.from({ length: 100_000 }, (_, i) => i), (x) => x * 2).pipe(
        Effect.provide(Backend.layerThreads({ workers: 2 })),
        Effect.provide(Progress.layerReport(file))
      )
      const size = Fs.statSync(file).size
      assert.isBelow(size, 3_000_000, `${size} bytes`)
      assert.include(Fs.readFileSync(file, "utf8"), `<dd data-key="items">100000 of 100000</dd>`)
    }))

  describe.runIf(hasChromium)("in a real browser (Debian's chromium, driven by playwright-core)", () => {
    // Live: the page says when it was written, by the Clock, and the README shows this screenshot.
    it.live(
      "shows a lane per worker, a bar per batch, failures marked, and no console errors",
      () =>
        Effect.gen(function*() {
          const dir = tmp()
          const file = Path.join(dir, "report.html")
          const { events } = yield* knownMaps(file)
          const { chromium } = yield* Effect.promise(() => import("playwright-core"))
          const browser = yield* Effect.acquireRelease(
            Effect.promise(() =>
              chromium.launch({
                executablePath: CHROMIUM,
                args: [
                  "--no-sandbox",
                  "--disable-gpu",
                  "--disable-quic",
                  "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update",
                  "--disable-sync"
                ]
              })
            ),
            (browser) => Effect.promise(() => browser.close())
          )
          const seen = yield* Effect.promise(async () => {
            const page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
            const errors: Array<string> = []
            page.on("console", (message) => message.type() === "error" && errors.push(message.text()))
            page.on("pageerror", (error) => errors.push(error.message))
            page.on(
              "request",
              (request) => !request.url().startsWith("file:") && errors.push(`fetched ${request.url()}`)
            )
            await page.goto(`file://${file}`)
            const maps = await page.$$eval("section.map", (sections) =>
              sections.map((section) => ({
                lanes: section.querySelectorAll("g.lane").length,
                bars: section.querySelectorAll("rect.bar").length,
                failedBars: section.querySelectorAll("rect.bar.failed").length,
                retries: section.querySelectorAll("path.retry").length,
                failed: section.classList.contains("failed"),
                visibleBars: [...section.querySelectorAll("rect.bar")].filter((bar) =>
                  bar.getBoundingClientRect().width > 0
                ).length
              })))
            await page.screenshot({ path: Path.join(dir, "report.png"), fullPage: true })
            return { maps, errors }
          })
          const byMap = [
            ...new Set(events.map((event) => event.mapId))
          ].map((id) => events.filter((event) => event.mapId === id))
          seen.maps.forEach((map, i) => {
            const mine = byMap[i]!.filter((event) => event._tag === "BatchCompleted")
            assert.strictEqual(map.bars, mine.length, `map ${i}: a bar per batch`)
            assert.strictEqual(map.visibleBars, mine.length, `map ${i}: every bar drawn`)
            assert.strictEqual(
              map.lanes,
              new Set(mine.map((event) => event.worker)).size,
              `map ${i}: a lane per worker`
            )
          })
          assert.strictEqual(seen.maps.length, 2)
          assert.isAtLeast(seen.maps[0]!.lanes, 2)
          assert.isAtLeast(seen.maps[0]!.retries, 2)
          assert.isTrue(seen.maps[1]!.failed)
          assert.isAtLeast(seen.maps[1]!.failedBars, 1)
          assert.deepStrictEqual(seen.errors, [])
          assert.isAbove(Fs.statSync(Path.join(dir, "report.png")).size, 10_000)
          // The README shows this test's screenshot.
          if (process.env["UPDATE_REPORT_SCREENSHOT"] === "1") {
            Fs.copyFileSync(Path.join(dir, "report.png"), new URL("../examples/report.png", import.meta.url))
          }
        }).pipe(Effect.scoped),
      { timeout: 60_000 }
    )
  })
})
