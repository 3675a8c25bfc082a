/**
 * The README's TypeScript blocks as doc tests: each block is a complete program, typechecked with the
 * project's settings and run; `<!-- output: … -->` before a block is what it must print (besides the Effect
 * logger's timestamped lines, such as a Remote worker's), and `<!-- doctest: redis -->` gives it a Redis server
 * of its own.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { hasRedis, startRedis } from "./redisServer.ts"
import { runNode } from "./subprocess.ts"

interface Block {
  readonly line: number
  readonly code: string
  readonly output: string | undefined
  readonly redis: boolean
}

const readme = Fs.readFileSync(new URL("../README.md", import.meta.url), "utf8")

const blocks: Array<Block> = []
for (const match of readme.matchAll(/((?:<!--[\s\S]*?-->\n)*)```ts\n([\s\S]*?)```/g)) {
  const notes = match[1]!
  blocks.push({
    line: readme.slice(0, match.index! + notes.length).split("\n").length,
    code: match[2]!,
    output: /<!-- output: ([\s\S]*?) -->/.exec(notes)?.[1],
    redis: notes.includes("<!-- doctest: redis -->")
  })
}

// Inside the repository, so that `effect-joblib` resolves to this package (from source, by condition).
const dir = new URL(".readme/", import.meta.url)
Fs.rmSync(dir, { recursive: true, force: true })
Fs.mkdirSync(dir)
const files = blocks.map((block) => {
  const file = new URL(`line-${block.line}.ts`, dir)
  Fs.writeFileSync(file, block.code)
  return file
})
Fs.writeFileSync(
  new URL("tsconfig.json", dir),
  JSON.stringify({ extends: "../../tsconfig.json", include: ["*.ts"], compilerOptions: { noUnusedLocals: false } })
)

describe("README", () => {
  it("has TypeScript blocks to test, each with the output it prints", () => {
    assert.isAtLeast(blocks.length, 10)
    for (const block of blocks) assert.isDefined(block.output, `the block at line ${block.line} says no output`)
  })

  it("every TypeScript block typechecks as it stands, imports included", () => {
    const tsc = new URL("../node_modules/typescript/bin/tsc", import.meta.url).pathname
    try {
      execFileSync(process.execPath, [tsc, "-p", new URL("tsconfig.json", dir).pathname], { encoding: "utf8" })
    } catch (error) {
      assert.fail(`README blocks do not typecheck:\n${(error as { stdout: string }).stdout}`)
    }
  })

  blocks.forEach((block, i) => {
    const test = block.redis && !hasRedis ? it.live.skip : it.live
    test(`the block at line ${block.line} runs and prints what the README says`, () =>
      Effect.gen(function*() {
        const redis = block.redis ? yield* Effect.promise(() => startRedis()) : undefined
        const cwd = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-readme-"))
        const { code, stdout, stderr } = yield* runNode(files[i]!, [], {
          cwd,
          env: { ...process.env, ...(redis === undefined ? {} : { REDIS_URL: redis.url }) }
        }).pipe(Effect.ensuring(Effect.promise(async () => {
          await redis?.stop()
          Fs.rmSync(cwd, { recursive: true, force: true })
        })))
        assert.strictEqual(code, 0, stderr)
        const printed = stdout.split("\n").filter((line) => !/^\[\d\d:\d\d:\d\d\.\d{3}\] [A-Z]+ /.test(line)).join("\n")
        assert.strictEqual(printed.trim().replace(/\s+/g, " "), block.output!.replace(/\s+/g, " "))
      }))
  })
})
