/**
 * Every file in examples/ runs to completion; each checks its own results with node:assert.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const dir = new URL("../examples/", import.meta.url)
const demoCache = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-demo-cache-"))
const examples = Fs.readdirSync(dir).filter((file) => file.endsWith(".ts")).sort()

const run = (file: string) =>
  Effect.scoped(Effect.gen(function*() {
    const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
    const handle = yield* spawner.spawn(
      ChildProcess.make(process.execPath, [new URL(file, dir).pathname], {
        env: { ...process.env, DEMO_RECORDS: "3000", DEMO_CACHE: demoCache },
        extendEnv: true
      })
    )
    const [stdout, stderr, exitCode] = yield* Effect.all([
      handle.stdout.pipe(Stream.decodeText(), Stream.mkString),
      handle.stderr.pipe(Stream.decodeText(), Stream.mkString),
      handle.exitCode
    ], { concurrency: "unbounded" })
    return { stdout, stderr, exitCode }
  })).pipe(Effect.provide(NodeServices.layer))

describe("examples", () => {
  it("there are examples to run", () => {
    assert.isAtLeast(examples.length, 4)
  })
  for (const file of examples) {
    it.live(file, () =>
      Effect.gen(function*() {
        const { stdout, stderr, exitCode } = yield* run(file)
        assert.strictEqual(exitCode, 0, `${file} failed:\n${stderr}`)
        if (file === "demo.ts") {
          assert.include(stdout, "speedup")
          assert.include(stdout, "results identical across backends")
          assert.include(stdout, "cache miss: scored and stored")
          const again = yield* run(file)
          assert.strictEqual(again.exitCode, 0, again.stderr)
          assert.include(again.stdout, "cache hit: the scoring step was read back")
        }
      }), 60_000)
  }
})
