import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { runNode } from "./subprocess.ts"

describe("on a Node without zstd or node:sqlite", () => {
  it.live("they fail with typed errors naming the version they need, and the rest works", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-older-node-"))
      const { code, stdout, stderr } = yield* runNode(new URL("./fixtures/olderNode.ts", import.meta.url), [dir])
      Fs.rmSync(dir, { recursive: true, force: true })
      assert.strictEqual(code, 0, stderr)
      const outcome = JSON.parse(stdout)
      assert.strictEqual(outcome.zstdDump._tag, "CompressionError")
      assert.match(outcome.zstdDump.message, /^zstd needs Node 22\.15 or later; this is Node /)
      assert.deepStrictEqual(outcome.gzipDump, { _tag: "Success" })
      assert.strictEqual(outcome.sqlite._tag, "StoreError")
      assert.match(outcome.sqlite.message, /needs node:sqlite, from Node 22\.13 on/)
    }))
})
