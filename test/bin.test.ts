/** The `effect-joblib cache` command line, run as a real process on filesystem and SQLite caches. */
import { assert, describe, it } from "@effect/vitest"
import { Effect, type Layer } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Cache } from "../src/index.ts"
import { parseSize } from "../src/internal/cli/main.ts"

const bin = Path.join(import.meta.dirname, "..", "src", "bin.ts")
const cli = (...args: Array<string>) => {
  const out = ChildProcess.spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" })
  return { code: out.status, stdout: out.stdout, stderr: out.stderr }
}

const fill = (layer: Layer.Layer<Cache.Cache, unknown>) => {
  const f = Cache.memoize(function payload(n: number) {
    return new Uint8Array(n * 1000)
  })
  return Effect.runPromise(Effect.scoped(Effect.provide(Effect.all([f(1), f(2), f(3)]), layer)))
}

describe("effect-joblib", () => {
  it("--version prints package.json's version", () => {
    const { version } = JSON.parse(Fs.readFileSync(Path.join(import.meta.dirname, "..", "package.json"), "utf8"))
    const out = cli("--version")
    assert.strictEqual(out.code, 0)
    assert.strictEqual(out.stdout.trim(), `effect-joblib v${version}`)
  })
})

describe("effect-joblib cache", () => {
  for (
    const [kind, make] of [
      ["filesystem", (dir: string) => Path.join(dir, "cache")],
      ["sqlite", (dir: string) => Path.join(dir, "cache.sqlite")]
    ] as const
  ) {
    it(`ls, stats, prune and clear on a ${kind} cache`, async () => {
      const location = make(Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-cli-")))
      await fill(kind === "sqlite" ? Cache.layerSqlite(location) : Cache.layerFileSystem(location))
      const ls = cli("cache", location, "ls")
      assert.strictEqual(ls.code, 0, ls.stderr)
      assert.strictEqual(ls.stdout.split("\n").filter((line) => line.startsWith("payload")).length, 3)
      assert.match(ls.stdout.split("\n")[0]!, /^function\s+size\s+computed\s+last used\s+key\s+input$/, "a header")
      assert.include(ls.stdout, "3 entries")
      const stats = cli("cache", location, "stats")
      assert.match(stats.stdout, /^3 entries, [\d.]+ kB/)
      assert.include(stats.stdout, "payload: 3")
      const refused = cli("cache", location, "prune")
      assert.notStrictEqual(refused.code, 0, "prune without a limit is refused")
      const pruned = cli("cache", location, "prune", "--max-size", "5kB")
      assert.strictEqual(pruned.code, 0, pruned.stderr)
      assert.match(pruned.stdout, /removed [12] entries/)
      const cleared = cli("cache", location, "clear")
      assert.match(cleared.stdout, /removed \d entries/)
      assert.match(cli("cache", location, "stats").stdout, /^0 entries/)
    }, 30_000)
  }

  it("a file given as a cache directory is one line saying so", () => {
    const file = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-cli-file-")), "notadir")
    Fs.writeFileSync(file, "x")
    const out = cli("cache", file, "ls")
    assert.strictEqual(out.code, 1)
    assert.match(out.stderr.trim(), /^effect-joblib: [^\n]+$/, out.stderr)
    assert.include(out.stderr, "is a file, not a cache directory")
    assert.strictEqual(out.stderr.split("EEXIST").length, 1, "no system error repeated")
  })

  it("a missing cache is an error, not a new empty cache", () => {
    const out = cli("cache", Path.join(Os.tmpdir(), "no-such-cache-dir-ejl"), "ls")
    assert.notStrictEqual(out.code, 0)
    assert.include(out.stderr, "no cache at")
  })

  it("bad flags fail with one line naming the problem and exit code 1, never a stack trace", () => {
    const location = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-cli-bad-"))
    const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
      [["cache", location, "prune", "--max-size", "lots"], `--max-size: cannot read "lots"`],
      [["cache", location, "prune", "--max-items", "-5"], `option "maxItems"`],
      [["cache", location, "prune", "--max-age", "soon"], `--max-age: cannot read "soon"`],
      [["worker", "--redis", "redis://127.0.0.1:1", "--tasks", "./x.ts", "--concurrency", "0"], `"concurrency"`],
      [["worker", "--redis", "redis://127.0.0.1:1", "--tasks", "./x.ts", "--lock-duration", "0"], `"lockDuration"`],
      [["worker", "--redis", "", "--tasks", "./x.ts"], `option "redis"`]
    ]
    for (const [args, problem] of cases) {
      const out = cli(...args)
      assert.strictEqual(out.code, 1, args.join(" "))
      assert.include(out.stderr, problem, args.join(" "))
      assert.match(out.stderr.trim(), /^effect-joblib: [^\n]+$/, out.stderr)
    }
  })

  it("sizes read like humans write them", () => {
    assert.strictEqual(parseSize("1GB"), 1e9)
    assert.strictEqual(parseSize("500 MB"), 5e8)
    assert.strictEqual(parseSize("64k"), 64_000)
    assert.strictEqual(parseSize("12"), 12)
    assert.isUndefined(parseSize("lots"))
  })
})
