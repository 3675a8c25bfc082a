/**
 * Timeouts, retries, crashes and progress on worker processes: a flaky,
 * sometimes-stuck, sometimes-crashing job still completes, and every event
 * is observed.
 * Run: `node examples/resilience.ts`
 */
import { Effect, Fiber, Schedule, Stream } from "effect"
import { Backend, Parallel, ParallelError, Progress } from "effect-joblib"
import * as assert from "node:assert/strict"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const scratch = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-joblib-resilience-"))

// Item 3 is stuck in a synchronous loop; item 5 crashes its worker the first time it runs.
const jobs = Array.from({ length: 8 }, (_, i) => ({ i, marker: Path.join(scratch, `ran-${i}`) }))
const work = ({ i, marker }: { i: number; marker: string }) => {
  const fs = (globalThis as any).process.getBuiltinModule("node:fs")
  if (i === 3) { while (true) {} }
  if (i === 5 && !fs.existsSync(marker)) {
    fs.writeFileSync(marker, "")
    ;(globalThis as any).process.exit(7)
  }
  return i * i
}

const program = Effect.gen(function*() {
  const events = yield* (yield* Progress.Events).subscribe
  const seen = yield* events.pipe(
    Stream.takeUntil((event) => event._tag === "Finished"),
    Stream.runCollect,
    Effect.forkScoped
  )
  const results = yield* Parallel.map(jobs, work, {
    timeout: "300 millis",
    // Retry crashed batches, but not the stuck item: it would only time out again.
    retry: { schedule: Schedule.recurs(2), while: (error) => error._tag === "WorkerCrashed" },
    mode: "result",
    batchSize: 1
  })
  const timedOut = results[3]!
  assert.ok(timedOut._tag === "Failure" && timedOut.failure instanceof ParallelError.TaskTimeout)
  assert.deepEqual(results.filter((r) => r._tag === "Success").map((r) => r.success), [0, 1, 4, 16, 25, 36, 49])
  const tags = (yield* Fiber.join(seen)).map((event) => event._tag)
  assert.equal(tags.filter((tag) => tag === "BatchCompleted").length, 8)
  console.log(`8 jobs: 7 succeeded (one after its worker crashed), 1 timed out; ${tags.length} progress events`)
}).pipe(
  Effect.scoped,
  Effect.provide(Backend.layerProcesses({ workers: 2, interruptGrace: 200 })),
  Effect.provide(Progress.layerEvents),
  Effect.ensuring(Effect.sync(() => Fs.rmSync(scratch, { recursive: true, force: true })))
)

await Effect.runPromise(program)
