/**
 * Huge inputs: 5M tiny items stream through each local backend in a process whose heap is capped at
 * 128 MB, which holds only if the stream's memory is bounded by its options rather than its input.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"

const fixture = new URL("./fixtures/hugeStream.ts", import.meta.url).pathname

const stream = (backend: string) =>
  Effect.callback<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resume) => {
    const child = execFile(
      process.execPath,
      ["--max-old-space-size=128", fixture, backend, "5000000"],
      { timeout: 120_000, maxBuffer: 1 << 20 },
      (error, stdout, stderr) =>
        resume(Effect.succeed({ code: error === null ? 0 : Number(error.code ?? -1), stdout, stderr }))
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("Parallel.stream over a huge input", () => {
  for (const backend of ["sequential", "threads", "processes"]) {
    it.live(`5M items through ${backend} in a 128 MB heap`, () =>
      Effect.gen(function*() {
        const { code, stdout, stderr } = yield* stream(backend)
        assert.strictEqual(code, 0, stderr.split("\n").slice(0, 5).join("\n"))
        assert.strictEqual(stdout.trim(), "streamed 5000000")
      }), 150_000)
  }
})
