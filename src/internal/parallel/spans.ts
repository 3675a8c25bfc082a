/**
 * A map's trace: each batch runs under a span of its own, a child of the map's, and its tasks' spans are
 * placed below it afterwards, where the worker says each task ran. Task spans cost two clock reads an item:
 * they are taken only when a tracer other than Effect's default listens.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import type { Outcome } from "./outcome.ts"
import type { RunOptions, WorkerRef } from "./runner.ts"

/** Where a batch ran, as OpenTelemetry's attribute names (host.name, process.pid, thread.id). */
const whereAttributes = (worker: WorkerRef): Array<readonly [string, string | number]> => {
  const out: Array<readonly [string, string | number]> = [["worker.name", worker.name]]
  if (worker.host !== undefined) out.push(["host.name", worker.host])
  if (worker.pid !== undefined) out.push(["process.pid", worker.pid])
  if (worker.thread !== undefined) out.push(["thread.id", worker.thread])
  return out
}

export const makeTracing = Effect.gen(function*() {
  const tracer = yield* Tracer.Tracer
  const traced = tracer !== Tracer.nativeTracer
  /** One span per task, a child of its batch's. */
  const taskSpans = <A, E>(batch: Tracer.Span, start: number, outcome: Outcome<A, E>, worker: WorkerRef) => {
    const where = whereAttributes(worker)
    for (const [key, value] of where) batch.attribute(key, value)
    const timings = outcome.timings
    if (timings === undefined) return
    const parent = Option.some(batch)
    const exits = outcome._tag === "Exits" ? outcome.exits : undefined
    for (let i = 0; 2 * i + 1 < timings.length; i++) {
      const span = tracer.span({
        name: "Parallel.task",
        parent,
        annotations: Context.empty(),
        links: [],
        startTime: BigInt(Math.round(timings[2 * i]! * 1e6)),
        kind: "internal",
        root: false,
        sampled: batch.sampled
      })
      span.attribute("task.index", start + i)
      for (const [key, value] of where) span.attribute(key, value)
      span.end(BigInt(Math.round(timings[2 * i + 1]! * 1e6)), exits?.[i] ?? Exit.void)
    }
  }
  return {
    /** Whether workers should time each task. */
    traced,
    /**
     * Runs a batch with the current span as its tasks' parent, read once, so that their own spans and logs join
     * the trace wherever they run; then places the tasks' spans.
     */
    withinBatchSpan: <A, E, Err>(
      runOptions: RunOptions,
      start: number,
      worker: () => WorkerRef,
      run: (options: RunOptions) => Effect.Effect<Outcome<A, E>, Err>
    ): Effect.Effect<Outcome<A, E>, Err> =>
      Effect.flatMap(Effect.option(Effect.currentSpan), (span) => {
        if (span._tag === "None") return run(runOptions)
        const ran = run({ ...runOptions, parent: { traceId: span.value.traceId, spanId: span.value.spanId } })
        return traced
          ? Effect.tap(ran, (outcome) => Effect.sync(() => taskSpans(span.value, start, outcome, worker())))
          : ran
      })
  }
})
