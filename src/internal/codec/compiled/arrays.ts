/**
 * Arrays and tuples: `Schema.Array(X)`, `Schema.Tuple([A, B])`, optional elements and a rest element.
 * Written as the schemaless codec writes arrays, so either reader can read them.
 */
import { arrayOf, type Decoder, LITERAL_ARRAY } from "../decoder.ts"
import { Tag } from "../structure.ts"
import { atKey, expectedButGot, foundAt, Mismatch, type Node } from "./node.ts"

export interface ArrayParts {
  /** The tuple's leading elements, and whether each is optional. */
  readonly elements: ReadonlyArray<{ readonly node: Node; readonly optional: boolean }>
  /** Every element after them (a plain array has only this), or undefined for a fixed tuple. */
  readonly rest: Node | undefined
}

const describe = ({ elements, rest }: ArrayParts) =>
  elements.length === 0 ? `an array of ${rest?.expected ?? "nothing"}` : `a tuple of ${elements.length}`

export const array = (parts: ArrayParts): Node => {
  const { elements, rest } = parts
  const nodes = elements.map((element) => element.node)
  const min = elements.filter((element) => !element.optional).length
  const max = rest === undefined ? elements.length : Infinity
  // Named when needed: a recursive element's name is known only once the whole Schema is compiled.
  let named: string | undefined
  const expected = () => named ??= describe(parts)
  const nodeAt = (i: number) => i < nodes.length ? nodes[i]! : rest!
  const lengthFits = (length: number) => length >= min && length <= max
  // The readers of the first elements, for small arrays read into a literal (a recursive element's node is
  // complete only once the whole Schema is compiled, hence the indirection).
  const readers = Array.from({ length: LITERAL_ARRAY }, (_, i) => (decoder: Decoder) => nodeAt(i).read(decoder))
  const badLength = (length: number) =>
    new Mismatch(`Expected ${expected()} with ${min === max ? min : `${min} or more`} elements, got ${length}`)
  return {
    get expected() {
      return expected()
    },
    starts: (tag) => tag === Tag.Array,
    is: (value) => Array.isArray(value) && lengthFits(value.length) && value.every((item, i) => nodeAt(i).is(item)),
    write: (encoder, value) => {
      if (!Array.isArray(value)) throw expectedButGot(expected(), value)
      if (!lengthFits(value.length)) throw badLength(value.length)
      encoder.byte(Tag.Array)
      encoder.varint(value.length)
      let i = 0
      try {
        for (; i < nodes.length && i < value.length; i++) nodes[i]!.write(encoder, value[i])
        for (; i < value.length; i++) rest!.write(encoder, value[i])
      } catch (error) {
        throw atKey(error, i)
      }
    },
    read: (decoder) => {
      const at = decoder.pos
      if (decoder.byte() !== Tag.Array) throw expectedButGot(expected(), foundAt(decoder, at))
      const length = decoder.count()
      if (!lengthFits(length)) throw badLength(length)
      let i = 0
      try {
        if (length <= LITERAL_ARRAY) {
          // A literal: packed and exactly its size (`i` names the element a failure is at).
          const [r0, r1, r2, r3] = readers
          return length === 0
            ? []
            : length === 1
            ? [r0!(decoder)]
            : length === 2
            ? [r0!(decoder), (i = 1, r1!(decoder))]
            : length === 3
            ? [r0!(decoder), (i = 1, r1!(decoder)), (i = 2, r2!(decoder))]
            : [r0!(decoder), (i = 1, r1!(decoder)), (i = 2, r2!(decoder)), (i = 3, r3!(decoder))]
        }
        const out = arrayOf(length)
        for (; i < nodes.length && i < length; i++) out[i] = nodes[i]!.read(decoder)
        for (; i < length; i++) out[i] = rest!.read(decoder)
        return out
      } catch (error) {
        throw atKey(error, i)
      }
    }
  }
}
