/**
 * Structs and records. A struct writes its declared keys only (extra keys are dropped, as Effect's encoder
 * does) under a shape the encoder knows by identity, and reads a shape it has seen with one generated
 * object literal. A shape that differs from the Schema (an older or newer dump: fields added, removed,
 * reordered) is read field by field, and a missing required field is a {@link Mismatch} naming it.
 *
 * Generated code follows the codec's rules: keys appear only as JSON string literals, a shape with a
 * `__proto__` key is never generated, and every path also runs without code generation.
 */
import { type Decoder, setKey } from "../decoder.ts"
import { type Encoder, newSite } from "../encoder.ts"
import { generate, RECORD_MAX_KEYS, Tag } from "../structure.ts"
import { atKey, expectedButGot, foundAt, Mismatch, type Node } from "./node.ts"
import { skip, string as stringNode } from "./scalars.ts"

export interface Field {
  readonly key: string
  readonly node: Node
  readonly optional: boolean
}

type Reader = (decoder: Decoder) => unknown
type Writer = (encoder: Encoder, value: object) => void

const isObject = (value: unknown): value is object => typeof value === "object" && value !== null

/** What Effect takes for a record, or a struct with fields: an object that is not an array. */
const isRecord = (value: unknown): value is object => isObject(value) && !Array.isArray(value)

const startsObject = (tag: number) => tag === Tag.Object || tag === Tag.ObjectRef

/** Reads an object's tag and shape, or throws naming what was found instead. */
const openObject = (decoder: Decoder, expected: string): number => {
  const at = decoder.pos
  const tag = decoder.byte()
  if (!startsObject(tag)) throw expectedButGot(expected, foundAt(decoder, at))
  return decoder.shapeId(tag)
}

/**
 * A struct generates code for this many shapes at most (sets of present optional keys when writing, shapes met
 * in the data when reading); any more are written and read by loops, so that varied or hostile data cannot make
 * it compile without end.
 */
const GENERATED_SHAPES = 64

/**
 * A field's writer: its node's, except that a string field writes as a site of its own, which stops interning
 * strings that do not repeat (see {@link Encoder.siteString}).
 */
const fieldWriter = (node: Node): Node["write"] => {
  if (node !== stringNode) return node.write
  const site = newSite()
  return (encoder, value) => {
    if (typeof value === "string") encoder.siteString(value, site)
    else node.write(encoder, value)
  }
}

/** Writes the values of `keys` with their writers, in order; a failure names its key. */
const valuesWriter = (
  keys: ReadonlyArray<string>,
  writes: ReadonlyArray<Node["write"]>,
  generated = true
): Writer => {
  const steps = keys.map((key, k) => `k = ${k}; w[${k}](e, v[${JSON.stringify(key)}]);`).join(" ")
  const made = generated && keys.length <= RECORD_MAX_KEYS
    ? generate<(w: typeof writes, at: typeof atKey, keys: ReadonlyArray<string>) => Writer>(
      ["w", "at", "keys"],
      `return (e, v) => { let k = 0; try { ${steps} } catch (error) { throw at(error, keys[k]) } }`
    )
    : undefined
  if (made !== undefined) return made(writes, atKey, keys)
  return (encoder, value) => {
    let k = 0
    try {
      for (; k < keys.length; k++) writes[k]!(encoder, (value as Record<string, unknown>)[keys[k]!])
    } catch (error) {
      throw atKey(error, keys[k]!)
    }
  }
}

/** The struct's writer: declared keys in order, optional ones only when present. */
const structWriter = (fields: ReadonlyArray<Field>): Writer => {
  const keys = fields.map((field) => field.key)
  const writers = fields.map((field) => fieldWriter(field.node))
  const optional = fields.flatMap((field, i) => field.optional ? [i] : [])
  const all = valuesWriter(keys, writers)
  if (optional.length === 0) {
    return (encoder, value) => {
      encoder.declaredShape(keys)
      all(encoder, value)
    }
  }
  // One shape per set of present optional keys, each with its own keys array and writer.
  const byPresent = new Map<string, { keys: ReadonlyArray<string>; write: Writer }>()
  return (encoder, value) => {
    let present = ""
    for (const i of optional) present += Object.hasOwn(value, keys[i]!) ? "1" : "0"
    let shape = byPresent.get(present)
    if (shape === undefined) {
      const kept = fields.flatMap((field, i) => !field.optional || present[optional.indexOf(i)] === "1" ? [i] : [])
      const keptKeys = kept.map((i) => keys[i]!)
      const generated = byPresent.size < GENERATED_SHAPES
      shape = { keys: keptKeys, write: valuesWriter(keptKeys, kept.map((i) => writers[i]!), generated) }
      byPresent.set(present, shape)
    }
    encoder.declaredShape(shape.keys)
    shape.write(encoder, value)
  }
}

/** A reader for data whose shape lists the Schema's keys in its order (some optional ones absent). */
const literalReader = (keys: ReadonlyArray<string>, nodes: ReadonlyArray<Node>): Reader | undefined => {
  if (keys.length === 0 || keys.length > RECORD_MAX_KEYS || keys.includes("__proto__")) return undefined
  const reads = nodes.map((node) => node.read)
  const values = keys.map((key, k) => `${JSON.stringify(key)}: (k = ${k}, r[${k}](d))`).join(", ")
  const made = generate<(r: typeof reads, at: typeof atKey, keys: ReadonlyArray<string>) => Reader>(
    ["r", "at", "keys"],
    `return (d) => { let k = 0; try { return { ${values} } } catch (error) { throw at(error, keys[k]) } }`
  )
  return made?.(reads, atKey, keys)
}

/** A reader for any other shape: unknown keys are skipped, and every required field must be there. */
const mappingReader = (fields: ReadonlyArray<Field>, keys: ReadonlyArray<string>): Reader => {
  const slots = keys.map((key) => fields.findIndex((field) => field.key === key))
  return (decoder) => {
    const values: Array<unknown> = Array.from({ length: fields.length })
    const seen: Array<boolean> = Array.from({ length: fields.length }, () => false)
    let k = 0
    try {
      for (; k < keys.length; k++) {
        const slot = slots[k]!
        if (slot < 0) skip(decoder)
        else {
          values[slot] = fields[slot]!.node.read(decoder)
          seen[slot] = true
        }
      }
    } catch (error) {
      throw atKey(error, keys[k]!)
    }
    const out: Record<string, unknown> = {}
    fields.forEach((field, i) => {
      if (seen[i]) setKey(out, field.key, values[i])
      else if (!field.optional) throw new Mismatch("Missing key").at(field.key)
    })
    return out
  }
}

/** The keys of `shape` are the Schema's, in its order, with every required one. */
const inOrder = (fields: ReadonlyArray<Field>, shape: ReadonlyArray<string>): ReadonlyArray<Field> | undefined => {
  const kept: Array<Field> = []
  let s = 0
  for (const field of fields) {
    if (shape[s] === field.key) {
      kept.push(field)
      s++
    } else if (!field.optional) return undefined
  }
  return s === shape.length ? kept : undefined
}

/** Readers by shape: per decoder by shape id (one array read a record), per struct by the keys' text. */
const shapeReaders = (fields: ReadonlyArray<Field>) => {
  const byKeys = new Map<string, Reader>()
  const build = (shape: ReadonlyArray<string>): Reader => {
    const kept = byKeys.size < GENERATED_SHAPES ? inOrder(fields, shape) : undefined
    return (kept && literalReader(shape, kept.map((field) => field.node))) ?? mappingReader(fields, shape)
  }
  const owner = {}
  return (decoder: Decoder, id: number): Reader => {
    const known = decoder.perShape(owner, id) as Reader | undefined
    if (known !== undefined) return known
    const shape = decoder.keysOf(id)
    const text = shape.join("\u0000")
    const read = byKeys.get(text) ?? build(shape)
    if (byKeys.size < GENERATED_SHAPES) byKeys.set(text, read)
    decoder.setPerShape(owner, id, read)
    return read
  }
}

/** A `Schema.Struct` of string keys. */
export const struct = (fields: ReadonlyArray<Field>): Node => {
  const write = structWriter(fields)
  const readerFor = shapeReaders(fields)
  // As Effect: a struct without fields takes any object, arrays included.
  const fits = fields.length === 0 ? isObject : isRecord
  const is = (value: unknown) =>
    fits(value) && fields.every((field) =>
      field.optional && !Object.hasOwn(value, field.key)
        ? true
        : field.node.is((value as Record<string, unknown>)[field.key])
    )
  return {
    expected: "an object",
    is,
    starts: startsObject,
    write: (encoder, value) => {
      if (!fits(value)) throw expectedButGot("an object", value)
      write(encoder, value)
    },
    read: (decoder) => {
      const id = decoder.shapeRef()
      return readerFor(decoder, id < 0 ? openObject(decoder, "an object") : id)(decoder)
    }
  }
}

/** A `Schema.Record` of string keys: any keys, each value of one node. */
export const record = (values: Node): Node => ({
  expected: "a record",
  is: (value) => isRecord(value) && Object.values(value).every(values.is),
  starts: startsObject,
  write: (encoder, value) => {
    if (!isRecord(value)) throw expectedButGot("a record", value)
    const keys = Object.keys(value)
    encoder.objectKeys(keys)
    let k = 0
    try {
      for (; k < keys.length; k++) values.write(encoder, (value as Record<string, unknown>)[keys[k]!])
    } catch (error) {
      throw atKey(error, keys[k]!)
    }
  },
  read: (decoder) => {
    const keys = decoder.keysOf(openObject(decoder, "a record"))
    const out: Record<string, unknown> = {}
    let k = 0
    try {
      for (; k < keys.length; k++) setKey(out, keys[k]!, values.read(decoder))
    } catch (error) {
      throw atKey(error, keys[k]!)
    }
    return out
  }
})
