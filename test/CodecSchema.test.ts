/**
 * The Schema-compiled codec: every node it compiles round-trips, validates while writing and reading with
 * the path of what is wrong, reads the dumps 0.5.0 wrote, and follows the record codegen's safety rules.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Schema, SchemaTransformation } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import * as Fs from "node:fs"
import { Codec, Persist, PersistError } from "../src/index.ts"
import { Drawing, drawings, Options, options, Point } from "./fixtures/schemaGolden.ts"
import { runNode } from "./subprocess.ts"

const roundTrip = <S extends Schema.Top>(schema: S, value: S["Type"]) => {
  const codec = Codec.make(schema)
  return Effect.flatMap(codec.encode(value, { compress: true }), (bytes) => codec.decode(bytes))
}

const mismatch = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.flip(effect), (error) => {
    assert.instanceOf(error, PersistError.SchemaMismatch)
    return error as PersistError.SchemaMismatch
  })

interface Tree {
  readonly value: number
  readonly children: ReadonlyArray<Tree>
}
const Tree = Schema.Struct({
  value: Schema.Number,
  children: Schema.Array(Schema.suspend((): Schema.Codec<Tree> => Tree))
})

/** What Schema arbitraries generate for the nodes the compiler handles itself. */
const Generated = Schema.Struct({
  shape: Schema.Union([
    Schema.TaggedStruct("A", { n: Schema.Number, s: Schema.optionalKey(Schema.String) }),
    Schema.TaggedStruct("B", { items: Schema.Array(Schema.Tuple([Schema.Int, Schema.NullOr(Schema.Boolean)])) })
  ]),
  picked: Schema.Option(Schema.BigInt),
  counts: Schema.Record(Schema.String, Schema.Number),
  level: Schema.Literals(["low", "high", 3]),
  maybe: Schema.optional(Schema.String)
})

/** Replaces one leaf (chosen by `r`) of a value with something of another type. */
const wrongLeaves: ReadonlyArray<unknown> = [undefined, null, 1.5, "s", true, 10n, [], {}, NaN, [1, "a"]]
const mutate = (value: unknown, r: number): unknown => {
  if (value === null || typeof value !== "object" || value instanceof Date) return wrongLeaves[r % wrongLeaves.length]
  const keys = Object.keys(value)
  if (keys.length === 0) return wrongLeaves[r % wrongLeaves.length]
  const key = keys[r % keys.length]!
  const copy = Array.isArray(value) ? [...value] : Object.assign(Object.create(Object.getPrototypeOf(value)), value)
  copy[key] = (r >> 3) % 3 === 0
    ? wrongLeaves[(r >> 5) % wrongLeaves.length]
    : mutate((value as Record<string, unknown>)[key], r >> 2)
  return copy
}

class Spot extends Schema.Class<Spot>("Spot")({ x: Schema.Number, label: Schema.optionalKey(Schema.String) }) {}
const Differential: Record<string, Schema.Codec<any, any>> = {
  struct: Schema.Struct({
    a: Schema.Int,
    b: Schema.String,
    c: Schema.optional(Schema.Boolean),
    d: Schema.Array(Schema.Number)
  }),
  union: Schema.Union([
    Schema.TaggedStruct("A", { n: Schema.Number }),
    Schema.TaggedStruct("B", { s: Schema.String }),
    Schema.Null
  ]),
  tuple: Schema.Tuple([Schema.String, Schema.optionalKey(Schema.Number)]),
  record: Schema.Record(Schema.String, Schema.NullOr(Schema.Number)),
  classes: Schema.Array(Spot),
  leaves: Schema.Struct({ when: Schema.Date, big: Schema.BigInt, lit: Schema.Literals(["x", "y", 1]) }),
  checked: Schema.Array(Schema.Finite.check(Schema.isGreaterThan(0))),
  transformed: Schema.Struct({ n: Schema.NumberFromString })
}

describe("Codec with a Schema (compiled)", () => {
  it.effect(
    "accepts and refuses what Effect's own Schema accepts and refuses, writing and reading",
    () =>
      Effect.gen(function*() {
        yield* Effect.flatMap(Codec.make(Schema.Number).encode(1), Codec.make(Schema.Number).decode) // hashers loaded
        for (const [name, schema] of Object.entries(Differential)) {
          const samples = yield* Arbitrary.sampleEffect(Arbitrary.schema(schema), { count: 100, seed: 24 })
          const codec = Codec.make(schema)
          for (const [i, sample] of samples.entries()) {
            // What Effect's own round trip gives (NumberFromString writes -0 as "0", say).
            const expected = Schema.decodeSync(schema)(Schema.encodeSync(schema)(sample))
            assert.deepStrictEqual(yield* Effect.flatMap(codec.encode(sample), codec.decode), expected, name)
            const bad = mutate(sample, i * 7919 + 13)
            const written = Exit.isSuccess(yield* Effect.exit(codec.encode(bad)))
            assert.strictEqual(written, Exit.isSuccess(Schema.encodeUnknownExit(schema)(bad)), `${name}: writing #${i}`)
            const encodedBad = mutate(Schema.encodeSync(schema)(sample), i * 104729 + 7)
            const plain = yield* Effect.exit(Codec.make().encode(encodedBad))
            if (Exit.isFailure(plain)) continue
            const read = Exit.isSuccess(yield* Effect.exit(codec.decode(plain.value)))
            assert.strictEqual(
              read,
              Exit.isSuccess(Schema.decodeUnknownExit(schema)(encodedBad)),
              `${name}: reading #${i}`
            )
          }
        }
      }),
    { timeout: 60_000 }
  )

  it.effect.prop("generated values round-trip, and the schemaless reader agrees with Effect's encoder", [Generated], ([
    value
  ]) =>
    Effect.gen(function*() {
      const bytes = yield* Codec.make(Generated).encode(value)
      assert.deepStrictEqual(yield* Codec.make(Generated).decode(bytes), value)
      const encoded = Schema.encodeSync(Generated)(value) as Record<string, unknown>
      const plain = (yield* Codec.make().decode(bytes)) as Record<string, unknown>
      // Option is written as [] or [value], where Effect's encoded form is a tagged object.
      assert.deepStrictEqual({ ...plain, picked: undefined }, { ...encoded, picked: undefined })
    }), { arbitrary: { runs: 200 } })

  it.effect("structs, unions of structs, optional keys, classes, Dates, bigints, tuples, records, bytes", () =>
    Effect.gen(function*() {
      const value = drawings()
      const back = yield* roundTrip(Schema.Array(Drawing), value)
      assert.deepStrictEqual(back, value)
      const first = back[0]!.shapes[0]!
      assert.strictEqual(first._tag, "Circle")
      if (first._tag === "Circle") assert.instanceOf(first.center, Point)
      assert.isFalse("note" in back[1]!, "an absent optional key stays absent")
      assert.deepStrictEqual(Object.keys(back[3]!).slice(0, 4), ["id", "title", "kind", "note"])
    }))

  it.effect("Option, which the generic pass could not write, round-trips", () =>
    Effect.gen(function*() {
      const back = yield* roundTrip(Options, options())
      assert.isTrue(Option.isOption(back.picked) && Option.isSome(back.picked))
      assert.deepStrictEqual(back, options())
    }))

  it.effect("recursive Schemas, and a value nested past the dump's limit is refused, not a stack overflow", () =>
    Effect.gen(function*() {
      const tree: Tree = { value: 1, children: [{ value: 2, children: [] }, { value: 3, children: [] }] }
      assert.deepStrictEqual(yield* roundTrip(Tree, tree), tree)
      let deep: Tree = { value: 0, children: [] }
      for (let i = 0; i < 1500; i++) deep = { value: i, children: [deep] }
      const error = yield* Effect.flip(Codec.make(Tree).encode(deep))
      assert.instanceOf(error, PersistError.UnsupportedValue)
      assert.include(error.message, "nested deeper than 1000")
    }))

  it.effect("literals, enums, typed arrays and transformations (a sync one and an effectful one)", () =>
    Effect.gen(function*() {
      const Color = { Red: "red", Blue: 1 } as const
      const Doubled = Schema.String.pipe(Schema.decodeTo(
        Schema.Number,
        SchemaTransformation.transformEffect({
          decode: (s) => Effect.succeed(Number(s) * 2),
          encode: (n) => Effect.succeed(String(n / 2))
        })
      ))
      const S = Schema.Struct({
        one: Schema.Literal(1),
        color: Schema.Enum(Color),
        vector: Codec.typedArray(Float32Array),
        when: Schema.DateFromString,
        doubled: Doubled,
        anything: Schema.Unknown
      })
      const value = {
        one: 1 as const,
        color: Color.Blue,
        vector: new Float32Array([1, 2, 3]),
        when: new Date(5),
        doubled: 42,
        anything: { a: [1, "x", null] }
      }
      assert.deepStrictEqual(yield* roundTrip(S, value), value)
      const plain = yield* Effect.flatMap(Codec.make(S).encode(value), (bytes) => Codec.make().decode(bytes))
      assert.deepStrictEqual((plain as { when: unknown }).when, new Date(5).toISOString(), "written encoded")
      assert.strictEqual((plain as { doubled: unknown }).doubled, "21", "the effectful transformation ran per node")
    }))

  it.effect("a wrong value fails while writing, with its path and what was expected", () =>
    Effect.gen(function*() {
      const codec = Codec.make(Schema.Array(Drawing))
      const bad = drawings()
      ;(bad[2] as any).shapes[1].points[1].y = "up"
      const error = yield* mismatch(codec.encode(bad))
      assert.strictEqual(error.path, `[2]["shapes"][1]["points"][1]["y"]`)
      assert.include(error.message, `Expected a number, got "up"`)
      const plainPoint = drawings()
      ;(plainPoint[0] as any).shapes[1].points[0] = { x: 0, y: 0 }
      assert.strictEqual((yield* mismatch(codec.encode(plainPoint))).path, `[0]["shapes"][1]`)
      const int = yield* mismatch(Codec.make(Schema.Struct({ n: Schema.Int })).encode({ n: 1.5 }))
      assert.strictEqual(int.path, `["n"]`)
      assert.include(int.message, "Expected an integer, got 1.5")
      const missing = yield* mismatch(Codec.make(Drawing).encode({ ...drawings()[0]!, title: undefined as never }))
      assert.strictEqual(missing.path, `["title"]`)
      assert.include(missing.message, "Expected a string, got undefined")
      const tuple = yield* mismatch(Codec.make(Drawing).encode({ ...drawings()[0]!, size: [1] as never }))
      assert.include(tuple.message, "tuple of 2 with 2 elements, got 1")
      const literal = yield* mismatch(Codec.make(Drawing).encode({ ...drawings()[0]!, kind: "draft" as never }))
      assert.include(literal.message, `Expected "sketch" | "final", got "draft"`)
    }))

  it.effect("many shapes (100 sets of optional keys) are written and read past the code generation cap", () =>
    Effect.gen(function*() {
      const keys = Array.from({ length: 7 }, (_, i) => `k${i}`)
      const S = Schema.Array(
        Schema.Struct(Object.fromEntries(keys.map((key) => [key, Schema.optionalKey(Schema.Number)])))
      )
      const rows = Array.from(
        { length: 300 },
        (_, i) => Object.fromEntries(keys.flatMap((key, k) => ((i * 37) >> k) & 1 ? [[key, i]] : []))
      )
      const codec = Codec.make(S)
      const bytes = yield* codec.encode(rows)
      assert.deepStrictEqual(yield* codec.decode(bytes), rows)
      assert.deepStrictEqual(yield* Codec.make().decode(bytes), rows)
    }))

  it.effect("decoding defaults of missing keys apply as Effect applies them", () =>
    Effect.gen(function*() {
      const S = Schema.Struct({
        a: Schema.Number,
        b: Schema.optionalKey(Schema.String).pipe(Schema.withDecodingDefaultKey(Effect.succeed("key default"))),
        c: Schema.String.pipe(Schema.withDecodingDefault(Effect.succeed("default")))
      })
      const written = yield* Codec.make().encode({ a: 1 })
      const back = yield* Codec.make(S).decode(written)
      assert.deepStrictEqual(back, Schema.decodeUnknownSync(S)({ a: 1 }))
      assert.deepStrictEqual(back, { a: 1, b: "key default", c: "default" })
      assert.deepStrictEqual(yield* Effect.flatMap(Codec.make(S).encode(back), Codec.make(S).decode), back)
    }))

  it.live("a transformation that waits is a SchemaMismatch, not a defect", () =>
    Effect.gen(function*() {
      const Slow = Schema.String.pipe(Schema.decodeTo(
        Schema.Number,
        SchemaTransformation.transformEffect({
          decode: (s) => Effect.as(Effect.sleep(1), Number(s)),
          encode: (n) => Effect.as(Effect.sleep(1), String(n))
        })
      ))
      const error = yield* mismatch(Codec.make(Schema.Struct({ n: Slow })).encode({ n: 1 }))
      assert.strictEqual(error.path, `["n"]`)
    }))

  it.effect("a class's own checks run on its instances, writing and reading", () =>
    Effect.gen(function*() {
      class Range extends Schema.Class<Range>("Range")({ lo: Schema.Number, hi: Schema.Number }) {}
      const Ordered = Range.check(Schema.makeFilter((range) => range.lo <= range.hi, { expected: "lo ≤ hi" }))
      const codec = Codec.make(Schema.Struct({ range: Ordered }))
      const back = yield* Effect.flatMap(codec.encode({ range: new Range({ lo: 1, hi: 2 }) }), codec.decode)
      assert.instanceOf(back.range, Range)
      const wrong = yield* mismatch(codec.encode({ range: new Range({ lo: 3, hi: 2 }) }))
      assert.strictEqual(wrong.path, `["range"]`)
      assert.include(wrong.message, "lo ≤ hi")
      const written = yield* Codec.make(Schema.Struct({ range: Range })).encode({ range: new Range({ lo: 3, hi: 2 }) })
      assert.include((yield* mismatch(codec.decode(written))).message, "lo ≤ hi")
    }))

  it.effect("data that does not fit fails while reading, with its path", () =>
    Effect.gen(function*() {
      const bytes = yield* Codec.make().encode([
        { id: 1, shape: { _tag: "Square", side: 2 } },
        { id: 2, shape: { _tag: "Circle", radius: "big" } }
      ])
      const Circle = Schema.TaggedStruct("Circle", { radius: Schema.Number })
      const Square = Schema.TaggedStruct("Square", { side: Schema.Number })
      const union = yield* mismatch(
        Codec.make(Schema.Array(Schema.Struct({ id: Schema.Number, shape: Schema.Union([Circle, Square]) })))
          .decode(bytes)
      )
      assert.strictEqual(union.path, `[1]["shape"]`)
      const record = yield* Codec.make().encode({ a: 1, b: "two" })
      const recordError = yield* mismatch(Codec.make(Schema.Record(Schema.String, Schema.Number)).decode(record))
      assert.strictEqual(recordError.path, `["b"]`)
      const checked = yield* mismatch(
        Codec.make(Schema.Struct({ s: Schema.String.check(Schema.isMinLength(3)) }))
          .decode(yield* Codec.make().encode({ s: "ab" }))
      )
      assert.include(checked.message, "at least 3")
    }))

  it.effect("dumps written by 0.5.0 (the generic Schema pass) read back as they were written", () =>
    Effect.gen(function*() {
      const bytes = new Uint8Array(
        Fs.readFileSync(new URL("./fixtures/golden/drawings.v1.schema-0.5.ejlb", import.meta.url))
      )
      const back = yield* Codec.make(Schema.Array(Drawing)).decode(bytes)
      assert.deepStrictEqual(back, drawings())
      const polygon = back[0]!.shapes[1]!
      assert.isTrue(polygon._tag === "Polygon" && polygon.points[0] instanceof Point)
    }))

  it.effect("the schemaless reader reads what the compiled writer wrote, as the Schema's encoded form", () =>
    Effect.gen(function*() {
      const schema = Schema.Array(Drawing)
      const bytes = yield* Codec.make(schema).encode(drawings())
      assert.deepStrictEqual(yield* Codec.make().decode(bytes), Schema.encodeSync(schema)(drawings()))
    }))

  it.effect("Schema keys stay data: injected source, line separators, and __proto__ as an own key", () =>
    Effect.gen(function*() {
      const canary = globalThis as { ejlSchemaPwned?: number }
      const hostile = `"]: 0, x: (globalThis.ejlSchemaPwned = 1), ["`
      const S = Schema.Struct({
        [hostile]: Schema.Number,
        "\u2028\u2029": Schema.String,
        ["__proto__"]: Schema.Struct({ polluted: Schema.Number })
      })
      const rows = Array.from({ length: 20 }, (_, i) => {
        const row = { [hostile]: i, "\u2028\u2029": "s" } as Record<string, unknown>
        Object.defineProperty(row, "__proto__", { value: { polluted: i }, enumerable: true, writable: true })
        return row as typeof S.Type
      })
      const back = yield* roundTrip(Schema.Array(S), rows)
      assert.isUndefined(canary.ejlSchemaPwned)
      assert.strictEqual(Object.getPrototypeOf(back[19]), Object.prototype)
      assert.deepStrictEqual(Object.getOwnPropertyDescriptor(back[19], "__proto__")?.value, { polluted: 19 })
      assert.strictEqual((back[19] as Record<string, unknown>)[hostile], 19)
    }))

  it.effect("works under --disallow-code-generation-from-strings, Schema and schemaless alike", () =>
    Effect.gen(function*() {
      const { code, stdout, stderr } = yield* runNode(new URL("./fixtures/noCodegen.ts", import.meta.url), [], {
        env: {
          ...process.env,
          NODE_OPTIONS: `${process.env["NODE_OPTIONS"] ?? ""} --disallow-code-generation-from-strings`
        }
      })
      assert.strictEqual(code, 0, stderr)
      assert.include(stdout, "code generation refused")
      assert.include(stdout, "round trips: ok")
    }))

  it.effect("string fields that do not repeat, then repeat, round-trip, and the same value gives the same bytes", () =>
    Effect.gen(function*() {
      const Row = Schema.Struct({ id: Schema.String, name: Schema.String, note: Schema.optionalKey(Schema.String) })
      const names = Array.from({ length: 700 }, (_, i) => `name-${i}`)
      const rows = Array.from({ length: 6000 }, (_, i) => ({
        id: i < 3000 ? `id-${i}-${"x".repeat(i % 40)}` : `id-${i % 5}`,
        name: names[i % 700]!,
        ...(i % 3 === 0 ? { note: `note ${i}` } : {})
      }))
      const codec = Codec.make(Schema.Array(Row))
      const bytes = yield* codec.encode(rows)
      assert.deepStrictEqual(yield* codec.decode(bytes), rows)
      assert.deepStrictEqual(yield* codec.encode(rows), bytes)
      // The schemaless reader reads it too: the strings not kept still took their ids.
      assert.deepStrictEqual(yield* Codec.make().decode(bytes), rows)
    }))

  it.effect("damaged structure bytes (checksum off) give a typed error or a value the Schema accepts", () =>
    Effect.gen(function*() {
      const schema = Schema.Array(Schema.Struct({
        id: Schema.Number,
        kind: Schema.Literals(["user", "admin"]),
        note: Schema.optionalKey(Schema.String),
        address: Schema.Struct({ city: Schema.String }),
        tags: Schema.Array(Schema.String),
        created: Schema.Date,
        shape: Schema.Union([
          Schema.TaggedStruct("A", { n: Schema.Int }),
          Schema.TaggedStruct("B", { s: Schema.String })
        ])
      }))
      const rows = Array.from({ length: 300 }, (_, i) => ({
        id: i * 1000,
        kind: i % 2 === 0 ? "user" as const : "admin" as const,
        ...(i % 4 === 0 ? { note: `note ${i}` } : {}),
        address: { city: `city-${i % 5}` },
        tags: Array.from({ length: i % 6 }, (_, k) => `t${k}`),
        created: new Date(1_700_000_000_000 + i),
        shape: i % 3 === 0 ? { _tag: "A" as const, n: i } : { _tag: "B" as const, s: `s${i % 200}` }
      }))
      const codec = Codec.make(schema)
      const bytes = yield* codec.encode(rows)
      const fits = Schema.is(schema)
      const outcomes = new Map<string, number>()
      // The structure is in the body, between the header and the trailer: 1,500 flips spread over it.
      const first = Codec.HEADER_BYTES + 16
      const span = bytes.length - 24 - first
      for (let i = 0; i < 1500; i++) {
        const damaged = bytes.slice()
        damaged[first + Math.floor((i * span) / 1500)]! ^= 1 << (i % 8)
        const exit = yield* Effect.exit(codec.decode(damaged, { verify: false }))
        const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        const outcome = Exit.isSuccess(exit)
          ? (fits(exit.value) ? "value" : "a value the Schema refuses")
          : Exit.hasDies(exit)
          ? `a defect: ${String(error)}`
          : (error as { _tag: string })._tag
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      }
      for (const outcome of outcomes.keys()) assert.include(["value", "Corrupted", "SchemaMismatch"], outcome)
      assert.isAbove(outcomes.get("Corrupted") ?? 0, 0)
      assert.isAbove(outcomes.get("SchemaMismatch") ?? 0, 0)
    }))

  it.effect("a full GC between decodes does not throw away the decoder's optimized code", () =>
    Effect.gen(function*() {
      const { code, stdout, stderr } = yield* runNode(
        new URL("./fixtures/keptOptimized.ts", import.meta.url),
        [],
        { execArgv: ["--expose-gc", "--trace-deopt"] }
      )
      assert.strictEqual(code, 0, stderr)
      assert.include(stdout, "done")
      // After two warm-up rounds, count deoptimizations caused by a GC in the decoder's methods (names that
      // Effect's own functions do not use, which a GC may deoptimize too).
      const afterWarmUp = stdout.slice(stdout.indexOf("ROUND 2"))
      const cleared = afterWarmUp.split("\n").filter((line) =>
        line.includes("embedded weak objects cleared") &&
        /SharedFunctionInfo (need|varint|shapeId|rawString|stringRef|shapeRef|dateTime|perShape)>/.test(line)
      )
      assert.strictEqual(cleared.length, 0, cleared.slice(0, 5).join("\n"))
      assert.isAbove(
        stdout.split("\n").filter((line) => line.includes("bailout") || line.includes("marking")).length,
        0,
        "V8 traced deoptimizations"
      )
    }))

  it.effect("Persist.dump/load with a Schema write and read through the compiled codec", () =>
    Effect.gen(function*() {
      const file = `${Fs.mkdtempSync("/tmp/ejl-schema-")}/drawings.bin`
      yield* Persist.dump(drawings(), file, { schema: Schema.Array(Drawing), compress: "zstd" })
      const back = yield* Persist.load(file, Schema.Array(Drawing))
      assert.deepStrictEqual(back, drawings())
      const wrong = yield* mismatch(Persist.load(file, Schema.Array(Schema.Struct({ id: Schema.String }))))
      assert.strictEqual(wrong.path, `[0]["id"]`)
    }))
})
