/**
 * Traces across workers, exported: Effect's OTLP tracer on the driver and, through a Task's layer, inside
 * every worker (threads, child processes, a Remote worker process), all sent to a real OTLP/HTTP receiver (an
 * HTTP server here that keeps the JSON payloads). One trace holds map → batch → task, with where each ran,
 * and the workers' own spans, flushed when their pools close. Metrics are read as Effect metrics.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric, Schedule } from "effect"
import { FetchHttpClient } from "effect/http"
import { OtlpSerialization, OtlpTracer } from "effect/observability"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Backend, Parallel, Remote } from "../src/index.ts"
import { Flaky, Traced } from "./fixtures/tasks.ts"
import { hasRedis, startRedis, startWorkerProcess } from "./redisServer.ts"

interface Span {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly attributes: Record<string, unknown>
  readonly service: unknown
}

/** An OTLP/HTTP receiver on a free loopback port: every span of every JSON payload to /v1/traces. */
const receiver = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ readonly url: string; readonly spans: Array<Span>; readonly server: Http.Server }>((resolve) => {
      const spans: Array<Span> = []
      const value = (v: Record<string, unknown>) => v["stringValue"] ?? Number(v["intValue"] ?? v["doubleValue"])
      const attributes = (list: ReadonlyArray<{ key: string; value: Record<string, unknown> }> | undefined) =>
        Object.fromEntries((list ?? []).map(({ key, value: v }) => [key, value(v)]))
      const server = Http.createServer((request, response) => {
        let body = ""
        request.on("data", (chunk) => (body += chunk))
        request.on("end", () => {
          if (request.url === "/v1/traces") {
            for (const resource of JSON.parse(body).resourceSpans ?? []) {
              const service = attributes(resource.resource?.attributes)["service.name"]
              for (const scope of resource.scopeSpans ?? []) {
                for (const span of scope.spans ?? []) {
                  spans.push({ ...span, attributes: attributes(span.attributes), service })
                }
              }
            }
          }
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(
        0,
        "127.0.0.1",
        () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, server })
      )
    })
  ),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)

/** The driver's tracer: Effect's OTLP exporter over fetch, flushed when the layer's scope closes. */
const driverTracer = (url: string) =>
  OtlpTracer.layer({ url: `${url}/v1/traces`, resource: { serviceName: "driver" }, exportInterval: "1 hour" }).pipe(
    Layer.provide(OtlpSerialization.layerJson),
    Layer.provide(FetchHttpClient.layer)
  )

describe.skipIf(!hasRedis)("traces exported over OTLP/HTTP", () => {
  it.live(
    "one trace: map → batch → task on threads, processes and a Remote worker, with where each ran",
    () =>
      Effect.gen(function*() {
        const otlp = yield* receiver
        process.env["EJL_OTLP_URL"] = `${otlp.url}/v1/traces`
        yield* Effect.addFinalizer(() => Effect.sync(() => delete process.env["EJL_OTLP_URL"]))
        const redis = yield* Effect.acquireRelease(
          Effect.promise(() => startRedis()),
          (server) => Effect.promise(() => server.stop())
        )
        const queue = `otlp-${process.pid}`
        const worker = startWorkerProcess(redis.url, queue, { concurrency: 2 })
        const exited = new Promise((resolve) => worker.once("exit", resolve))
        const maps = Effect.gen(function*() {
          yield* Parallel.map([1, 2, 3, 4], Traced, { batchSize: 2 }).pipe(
            Effect.provide(Backend.layerThreads({ workers: 2 }))
          )
          yield* Parallel.map([5, 6, 7, 8], Traced, { batchSize: 2 }).pipe(
            Effect.provide(Backend.layerProcesses({ workers: 2 }))
          )
          yield* Parallel.map([9, 10], Traced, { batchSize: 1 }).pipe(
            Effect.provide(Remote.layer({ redis: redis.url, queue, noWorkerTimeout: "20 seconds" }))
          )
        }).pipe(Effect.withSpan("pipeline"), Effect.provide(driverTracer(otlp.url)))
        yield* maps
        // The Remote worker flushes its threads' exporters as it stops.
        worker.kill("SIGTERM")
        yield* Effect.promise(() => exited)
        const fits = () => otlp.spans.filter((span) => span.name === "fit")
        for (let i = 0; i < 100 && fits().length < 10; i++) yield* Effect.sleep(50)

        const spans = otlp.spans
        const named = (name: string) => spans.filter((span) => span.name === name)
        const [pipeline] = named("pipeline")
        assert.isDefined(pipeline)
        assert.deepStrictEqual([...new Set(spans.map((span) => span.traceId))], [pipeline!.traceId], "one trace")
        const mapSpans = named("Parallel.map")
        assert.strictEqual(mapSpans.length, 3)
        for (const map of mapSpans) assert.strictEqual(map.parentSpanId, pipeline!.spanId)
        const batches = named("Parallel.batch")
        assert.strictEqual(batches.length, 2 + 2 + 2)
        const mapIds = new Set(mapSpans.map((span) => span.spanId))
        for (const batch of batches) assert.isTrue(mapIds.has(batch.parentSpanId!), "a batch is a child of its map")
        const batchIds = new Set(batches.map((span) => span.spanId))
        const tasks = named("Parallel.task")
        assert.strictEqual(tasks.length, 10)
        for (const task of tasks) assert.isTrue(batchIds.has(task.parentSpanId!), "a task is a child of its batch")

        // Where each task ran: threads of this process, child processes, the Remote worker's threads.
        const byMap = (i: number) =>
          tasks.filter((task) =>
            batches.find((batch) => batch.spanId === task.parentSpanId)!.parentSpanId === mapSpans[i]!.spanId
          )
        const order = mapSpans.map((map) => map.spanId)
        const indexOf = (kind: string) =>
          order.findIndex((_, i) => byMap(i).every((task) => String(task.attributes["worker.name"]).startsWith(kind)))
        const threads = byMap(indexOf("threads"))
        const processes = byMap(indexOf("processes"))
        const remote = byMap(
          order.findIndex((_, i) =>
            byMap(i).every((task) => / pid \d+ thread \d+$/.test(String(task.attributes["worker.name"])))
          )
        )
        assert.deepStrictEqual([threads.length, processes.length, remote.length], [4, 4, 2])
        for (const task of threads) {
          assert.strictEqual(task.attributes["process.pid"], process.pid)
          assert.isAbove(Number(task.attributes["thread.id"]), 0)
        }
        for (const task of processes) {
          assert.notStrictEqual(task.attributes["process.pid"], process.pid)
          assert.strictEqual(task.attributes["thread.id"], 0)
        }
        // The command line runs the worker in a process of its own below the one started here (for its node flags).
        const processPids = new Set(processes.map((task) => task.attributes["process.pid"]))
        for (const task of remote) {
          assert.isNumber(task.attributes["process.pid"])
          assert.notStrictEqual(task.attributes["process.pid"], process.pid)
          assert.isFalse(processPids.has(task.attributes["process.pid"]))
          assert.include([1, 2], task.attributes["thread.id"])
          assert.isString(task.attributes["host.name"])
        }

        // The workers' own spans, exported from inside each worker only when its pool closed.
        const fitSpans = fits()
        assert.strictEqual(fitSpans.length, 10)
        for (const fit of fitSpans) {
          assert.strictEqual(fit.service, "effect-joblib-worker")
          assert.isTrue(batchIds.has(fit.parentSpanId!), "a worker's span is a child of its batch")
        }
      }),
    { timeout: 90_000 }
  )
})

describe("metrics", () => {
  it.effect("items, batches, retries and workers are Effect metrics", () =>
    Effect.gen(function*() {
      const value = (name: string) =>
        Effect.map(Metric.snapshot, (all) => {
          const found = all.find((metric) => metric.id === name)
          return found === undefined
            ? 0
            : Number(
              (found.state as { count?: number; value?: number }).count ?? (found.state as { value: number }).value
            )
        })
      const before = yield* Effect.all([
        value("effect_joblib_tasks_completed"),
        value("effect_joblib_batches_completed")
      ])
      yield* Parallel.map([1, 2, 3, 4, 5, 6], (x) => x + 1, { batchSize: 2 }).pipe(
        Effect.provide(Backend.layerSequential({ concurrency: 3 }))
      )
      const after = yield* Effect.all([
        value("effect_joblib_tasks_completed"),
        value("effect_joblib_batches_completed")
      ])
      assert.deepStrictEqual([after[0] - before[0], after[1] - before[1]], [6, 3])
      assert.strictEqual(yield* value("effect_joblib_workers"), 3)
      // Two items that fail once each are run again by `retry`: two retries counted.
      const retriedBefore = yield* value("effect_joblib_batches_retried")
      const run = `${process.pid}-${Math.random().toString(36).slice(2)}`
      const flaky = Array.from({ length: 4 }, (_, i) => ({ key: `metrics-${run}-${i}`, failures: i % 2 }))
      yield* Parallel.map(flaky, Flaky, { batchSize: 1, retry: Schedule.recurs(1) }).pipe(
        Effect.provide(Backend.layerSequential({ concurrency: 2 }))
      )
      assert.strictEqual((yield* value("effect_joblib_batches_retried")) - retriedBefore, 2)
    }))
})
