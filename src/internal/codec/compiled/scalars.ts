/**
 * Leaf nodes: keywords, literals, Dates and binary values. Each reads with the schemaless decoder's own
 * `value()` (the tags are the same) and checks the type of what it got. Numbers, strings, string literals and
 * Dates first try the decoder's fast path for their common encodings, which reads nothing when it does not
 * apply.
 */
import type { Decoder } from "../decoder.ts"
import type { Encoder } from "../encoder.ts"
import { binaryKind, Tag } from "../structure.ts"
import { expectedButGot, foundAt, type Node } from "./node.ts"

const anyTag = () => true
const isNumberTag = (tag: number) =>
  tag < 0x80 || tag === Tag.Float64 || tag === Tag.Int8 || tag === Tag.Int16 || tag === Tag.Int32
const isStringTag = (tag: number) => tag === Tag.String || tag === Tag.StringRef || tag === Tag.String16

/** A leaf whose values `is` recognises and `write` writes; read back with the schemaless reader. */
const leaf = (
  expected: string,
  is: (value: unknown) => boolean,
  starts: (tag: number) => boolean,
  write: (encoder: Encoder, value: any) => void
): Node => ({
  expected,
  is,
  starts,
  write: (encoder, value) => {
    if (!is(value)) throw expectedButGot(expected, value)
    write(encoder, value)
  },
  read: (decoder) => {
    const value = decoder.value()
    if (!is(value)) throw expectedButGot(expected, value)
    return value
  }
})

const isString = (value: unknown) => typeof value === "string"

export const string: Node = {
  ...leaf("a string", isString, isStringTag, (encoder, value: string) => encoder.string(value)),
  // Strings are read by tag, without the schemaless reader's dispatch over every tag.
  read: (decoder) => {
    const ref = decoder.stringRef()
    if (ref !== undefined) return ref
    const at = decoder.pos
    const tag = decoder.byte()
    if (isStringTag(tag)) return decoder.string(tag)
    throw expectedButGot("a string", foundAt(decoder, at))
  }
}

const numberLeaf = leaf(
  "a number",
  (value) => typeof value === "number",
  isNumberTag,
  (encoder, value: number) => encoder.number(value)
)

export const number: Node = {
  ...numberLeaf,
  read: (decoder) => decoder.number() ?? numberLeaf.read(decoder)
}

export const boolean = leaf(
  "a boolean",
  (value) => typeof value === "boolean",
  (tag) => tag === Tag.True || tag === Tag.False,
  (encoder, value: boolean) => encoder.byte(value ? Tag.True : Tag.False)
)

export const bigint = leaf(
  "a bigint",
  (value) => typeof value === "bigint",
  (tag) => tag === Tag.BigInt,
  (encoder, value: bigint) => encoder.bigint(value)
)

export const null_ = leaf("null", (value) => value === null, (tag) => tag === Tag.Null, (e) => e.byte(Tag.Null))

export const undefined_ = leaf(
  "undefined",
  (value) => value === undefined,
  (tag) => tag === Tag.Undefined,
  (e) => e.byte(Tag.Undefined)
)

/** `Schema.Unknown` and `Schema.Any`: anything the schemaless codec takes. */
export const unknown: Node = {
  expected: "anything",
  is: () => true,
  starts: anyTag,
  write: (encoder, value) => encoder.value(value),
  read: (decoder) => decoder.value()
}

/** Literals, literal unions and enums: one of a few primitive values. */
export const oneOf = (values: ReadonlyArray<unknown>): Node => {
  const set = new Set(values)
  const is = values.length === 1 ? (value: unknown) => value === values[0] : (value: unknown) => set.has(value)
  const expected = values.map((value) => typeof value === "bigint" ? `${value}n` : JSON.stringify(value)).join(" | ")
  const node = leaf(expected, is, anyTag, (encoder, value) => encoder.value(value))
  if (!values.every((value) => typeof value === "string")) return node
  return {
    ...node,
    read: (decoder) => {
      const ref = decoder.stringRef()
      if (ref === undefined) return node.read(decoder)
      if (set.has(ref)) return ref
      throw expectedButGot(expected, ref)
    }
  }
}

/** `Schema.Date`: a valid Date, written as its time. */
const dateLeaf = leaf(
  "a valid Date",
  (value) => value instanceof Date && !Number.isNaN(value.getTime()),
  (tag) => tag === Tag.Date,
  (encoder, value: Date) => encoder.date(value.getTime())
)

export const date: Node = {
  ...dateLeaf,
  read: (decoder) => {
    const time = decoder.dateTime()
    return Number.isNaN(time) ? dateLeaf.read(decoder) : new Date(time)
  }
}

/**
 * A typed array or buffer of one binary kind: a raw, aligned section when large, read back in place.
 * `is` is the Schema's own guard (an `instanceof`); the kind names the section.
 */
export const binary = (expected: string, is: (value: unknown) => boolean): Node =>
  leaf(
    expected,
    is,
    (tag) => tag === Tag.Section || tag === Tag.InlineBinary,
    (encoder: Encoder, value: object) => encoder.binary(value, binaryKind(value)!)
  )

/** Reads and discards one value: a field the Schema no longer has. */
export const skip = (decoder: Decoder) => {
  decoder.value()
}
