import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { isTransparent, mayContainBinary } from "../src/internal/parallel/transparent.ts"
import { Point } from "./fixtures/tasks.ts"

describe("transparent schemas", () => {
  it("plain data schemas travel as they are", () => {
    assert.isTrue(isTransparent(Schema.Number))
    assert.isTrue(isTransparent(Schema.Int))
    assert.isTrue(isTransparent(Schema.Struct({ a: Schema.String, b: Schema.optional(Schema.Array(Schema.Boolean)) })))
    assert.isTrue(isTransparent(Schema.Union([Schema.Literal("x"), Schema.Tuple([Schema.Number, Schema.Null])])))
    assert.isTrue(isTransparent(Schema.Record(Schema.String, Schema.BigInt)))
  })

  it("schemas that transform or build classes are encoded", () => {
    assert.isFalse(isTransparent(Point))
    assert.isFalse(isTransparent(Schema.NumberFromString))
    assert.isFalse(isTransparent(Schema.Struct({ when: Schema.Date })))
    assert.isFalse(isTransparent(Schema.Struct({ nested: Schema.Array(Schema.DateFromString) })))
  })

  it("knows when a value cannot hold a buffer", () => {
    assert.isFalse(mayContainBinary(Schema.Struct({ a: Schema.Number, b: Schema.Array(Schema.String) })))
    assert.isTrue(mayContainBinary(Schema.Struct({ bytes: Schema.Uint8Array })))
    assert.isTrue(mayContainBinary(Schema.Unknown))
  })
})
