import { assert, describe, it } from "@effect/vitest"
import { analyze, canonicalSource } from "../src/internal/parallel/closure.ts"
import { reviveFunction as revive } from "../src/internal/parallel/workerRuntime.js"

const shipped = (fn: Function) => {
  const analysis = analyze(fn)
  assert.strictEqual(analysis._tag, "Ok", JSON.stringify(analysis))
  return revive((analysis as { source: string }).source) as (...args: Array<any>) => unknown
}

const captures = (fn: Function) => {
  const analysis = analyze(fn)
  assert.strictEqual(analysis._tag, "Captures", JSON.stringify(analysis))
  return (analysis as { identifiers: ReadonlyArray<string> }).identifiers
}

describe("closure analysis", () => {
  it("ships self-contained functions of every form", () => {
    assert.strictEqual(shipped((x: number) => Math.sqrt(x))(9), 3)
    assert.strictEqual(
      shipped(function fact(n: number): number {
        return n <= 1 ? 1 : n * fact(n - 1)
      })(5),
      120
    )
    const object = {
      double(x: number) {
        return x * 2
      }
    }
    assert.strictEqual(shipped(object.double)(4), 8)
    assert.strictEqual(
      shipped((x: number) => {
        let total = 0
        for (let i = 0; i < x; i++) total += i
        for (const k of [1, 2]) total += k
        try {
          JSON.parse("{")
        } catch (error) {
          total += String(error).length > 0 ? 1 : 0
        }
        function helper() {
          return hoisted
        }
        var hoisted = 100
        class Box {
          static value = x
        }
        const { a, ...rest } = { a: 1, b: 2 }
        return total + helper() + Box.value + a + Object.keys(rest).length
      })(3),
      3 + 3 + 1 + 100 + 3 + 1 + 1
    )
  })

  it("names every captured identifier", () => {
    const factor = 2
    const offset = 1
    assert.deepStrictEqual(captures((x: number) => x * factor + offset), ["factor", "offset"])
    assert.strictEqual(
      shipped((x: { factor: number }) => x.factor)({ factor: 7 }),
      7,
      "property names are not captures"
    )
  })

  it("sees captures in defaults, computed keys and nested functions", () => {
    const key = "k"
    const fallback = 1
    assert.deepStrictEqual(captures((x = fallback) => x), ["fallback"])
    assert.deepStrictEqual(captures(() => ({ [key]: 1 })), ["key"])
    assert.deepStrictEqual(captures(() => () => () => key), ["key"])
  })

  it("refuses native and bound functions", () => {
    assert.strictEqual(analyze(Math.sqrt)._tag, "Native")
    assert.strictEqual(analyze(((x: number) => x).bind(null))._tag, "Native")
  })
})

describe("canonicalSource: a task's code as Remote compares it", () => {
  const same = (a: string, b: string) => assert.strictEqual(canonicalSource(a), canonicalSource(b), `${a} / ${b}`)
  const different = (a: string, b: string) =>
    assert.notStrictEqual(canonicalSource(a), canonicalSource(b), `${a} / ${b}`)

  it("is the same for a test runner's rewritten imports: named, namespace and bare functions", () => {
    same(
      "(ms) => Effect.as(Effect.sleep(ms), ms)",
      "(ms) => __vite_ssr_import_0__.Effect.as(__vite_ssr_import_0__.Effect.sleep(ms), ms)"
    )
    same(
      "(x) => Path.join(Os.tmpdir(), `a-${x}`)",
      "(x) => __vite_ssr_import_4__.join(__vite_ssr_import_3__.tmpdir(), `a-${x}`)"
    )
    same("(x) => pipe(x, f)", "(x) => (0, __vite_ssr_import_1__.pipe)(x, f)")
    same("(x) => x * x", "(y) =>   /* squared */ y*y")
    same(
      "({ key }) => Effect.suspend(() => {\n  const file = Path.join(Os.tmpdir(), key)\n  Fs.appendFileSync(file, \"x\")\n  return file\n})",
      "({ key }) => __vite_ssr_import_0__.Effect.suspend(() => {\n\tconst file = __vite_ssr_import_4__.join(__vite_ssr_import_3__.tmpdir(), key);\n\t__vite_ssr_import_2__.appendFileSync(file, \"x\");\n\treturn file;\n})"
    )
  })

  it("tells code apart by its structure, literals and the properties it reads", () => {
    different("(x) => Effect.succeed(x)", "(x) => Effect.fail(x)")
    different("(x) => x * x", "(x) => x + x")
    different("(x) => x.length", "(x) => x.size")
    different("(x) => f(x, 1)", "(x) => f(x, 2)")
  })
})
