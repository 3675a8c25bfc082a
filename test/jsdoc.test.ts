/**
 * Every `@example`-style TypeScript block of the JSDoc in `src/` as a doc test: each is a module of its own,
 * typechecked with the project's settings, imports included, as a user would paste it. Blocks that import
 * `./tasks.ts` get a module of Tasks beside them, as a user's project would have.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"

const src = new URL("../src/", import.meta.url)
const modules = Fs.readdirSync(src, { recursive: true, encoding: "utf8" }).filter((file) => file.endsWith(".ts"))

interface Block {
  readonly file: string
  readonly line: number
  readonly code: string
}

const blocks: Array<Block> = []
for (const file of modules) {
  const text = Fs.readFileSync(new URL(file, src), "utf8")
  for (const comment of text.matchAll(/\/\*\*[\s\S]*?\*\//g)) {
    for (const match of comment[0].matchAll(/```ts\n([\s\S]*?)\n\s*\*\s*```/g)) {
      const code = match[1]!.split("\n").map((line) => line.replace(/^\s*\* ?/, "")).join("\n")
      const offset = comment.index! + match.index!
      blocks.push({ file, line: text.slice(0, offset).split("\n").length + 1, code })
    }
  }
}

// Inside the repository, so that `effect-joblib` resolves to this package (from source, by condition).
const dir = new URL(".jsdoc/", import.meta.url)
Fs.rmSync(dir, { recursive: true, force: true })
Fs.mkdirSync(dir)
for (const block of blocks) {
  const name = `${block.file.replaceAll("/", "_").replace(/\.ts$/, "")}-${block.line}.ts`
  // A module of its own, whatever it declares.
  Fs.writeFileSync(new URL(name, dir), `${block.code}\nexport {}\n`)
}
Fs.writeFileSync(
  new URL("tasks.ts", dir),
  `import { Schema } from "effect"
import { Task } from "effect-joblib"
export const Square = Task.make("Square", { payload: Schema.Number, success: Schema.Number, run: (x) => x * x })
`
)
Fs.writeFileSync(
  new URL("tsconfig.json", dir),
  JSON.stringify({
    extends: "../../tsconfig.json",
    include: ["*.ts"],
    compilerOptions: { noUnusedLocals: false, noUnusedParameters: false }
  })
)

describe("the JSDoc examples of src/", () => {
  it("there are examples to test, in every public module", () => {
    assert.isAtLeast(blocks.length, 100)
    const publicModules = modules.filter((file) =>
      !file.startsWith("internal") && file !== "index.ts" && file !== "bin.ts"
    )
    for (const file of publicModules) {
      assert.isTrue(blocks.some((block) => block.file === file), `${file} has an example`)
    }
  })

  it("every example typechecks as it stands, imports included", () => {
    const tsc = new URL("../node_modules/typescript/bin/tsc", import.meta.url).pathname
    try {
      execFileSync(process.execPath, [tsc, "-p", new URL("tsconfig.json", dir).pathname], { encoding: "utf8" })
    } catch (error) {
      assert.fail(`JSDoc examples do not typecheck:\n${(error as { stdout: string }).stdout}`)
    }
  }, 120_000)
})
