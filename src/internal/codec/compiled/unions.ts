/**
 * Unions of non-literal members (unions of structs, `NullOr`, …) and `Schema.Option`.
 *
 * A union writes with the first member whose `is` accepts the value, so nothing is written by a member
 * that then fails. It reads with the members whose data can start with the next tag: one is read
 * directly; several are tried in order, the reader going back (position, strings and shapes) after each
 * that does not fit.
 */
import * as Option from "effect/Option"
import { Tag } from "../structure.ts"
import { atKey, expectedButGot, foundAt, Mismatch, type Node } from "./node.ts"

export const union = (members: ReadonlyArray<Node>): Node => {
  // Named when needed: a recursive member's name is known only once the whole Schema is compiled.
  let named: string | undefined
  const expected = () => named ??= members.map((member) => member.expected).join(" | ")
  const byTag: Array<ReadonlyArray<Node> | undefined> = []
  const candidates = (tag: number) => byTag[tag] ??= members.filter((member) => member.starts(tag))
  return {
    get expected() {
      return expected()
    },
    is: (value) => members.some((member) => member.is(value)),
    starts: (tag) => candidates(tag).length > 0,
    write: (encoder, value) => {
      const member = members.find((member) => member.is(value))
      if (member === undefined) throw expectedButGot(expected(), value)
      member.write(encoder, value)
    },
    read: (decoder) => {
      const at = decoder.pos
      const found = candidates(decoder.byte())
      decoder.pos = at
      if (found.length === 1) return found[0]!.read(decoder)
      const mark = decoder.mark()
      for (const member of found) {
        try {
          return member.read(decoder)
        } catch (error) {
          if (!(error instanceof Mismatch)) throw error
          decoder.rollback(mark)
        }
      }
      throw expectedButGot(expected(), foundAt(decoder, at))
    }
  }
}

/** `Schema.Option(X)`: `[]` for None and `[value]` for Some, which a schemaless reader can also read. */
export const option = (inner: Node): Node => {
  const expected = `an Option of ${inner.expected}`
  return {
    expected,
    is: (value) => Option.isOption(value) && (Option.isNone(value) || inner.is(value.value)),
    starts: (tag) => tag === Tag.Array,
    write: (encoder, value) => {
      if (!Option.isOption(value)) throw expectedButGot(expected, value)
      encoder.byte(Tag.Array)
      if (Option.isNone(value)) return encoder.varint(0)
      encoder.varint(1)
      try {
        inner.write(encoder, value.value)
      } catch (error) {
        throw atKey(error, "value")
      }
    },
    read: (decoder) => {
      const at = decoder.pos
      if (decoder.byte() !== Tag.Array) throw expectedButGot(expected, foundAt(decoder, at))
      const length = decoder.count()
      if (length === 0) return Option.none()
      if (length !== 1) throw new Mismatch(`Expected ${expected}, got ${length} values`)
      try {
        return Option.some(inner.read(decoder))
      } catch (error) {
        throw atKey(error, "value")
      }
    }
  }
}
