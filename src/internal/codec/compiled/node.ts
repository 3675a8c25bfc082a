/**
 * What a Schema compiles to: one writer and one reader per AST node, each validating as it goes, so a typed
 * value is walked once instead of once by Effect's Schema pass and once more by the codec.
 */
import type * as SchemaAST from "effect/SchemaAST"
import type { Decoder } from "../decoder.ts"
import type { Encoder } from "../encoder.ts"
import { formatPath } from "../structure.ts"

/** A compiled AST node. */
export interface Node {
  /** Writes `value`, or throws a {@link Mismatch} when it does not fit the Schema. */
  readonly write: (encoder: Encoder, value: unknown) => void
  /** Reads a value, or throws a {@link Mismatch} when the data does not fit the Schema. */
  readonly read: (decoder: Decoder) => unknown
  /** Whether `value` fits, without writing it: how a union picks the member to write with. */
  readonly is: (value: unknown) => boolean
  /** Whether encoded data of this node can start with `tag`: how a union narrows the members to read with. */
  readonly starts: (tag: number) => boolean
  /** What the node expects, for messages ("a string", `"user" | "admin"`). */
  readonly expected: string
}

/** Data or a value that does not fit the Schema, with where: the path grows as the error unwinds. */
export class Mismatch extends Error {
  readonly path: Array<PropertyKey> = []
  readonly detail: string
  constructor(detail: string) {
    super(detail)
    this.detail = detail
  }

  /** Adds an enclosing key while unwinding out of a container. */
  at(key: PropertyKey): this {
    this.path.unshift(key)
    return this
  }

  get where(): string {
    return formatPath(this.path)
  }
}

/** Rethrows `error` with `key` on its path when it is a {@link Mismatch} (an encoder's own errors do their own). */
export const atKey = (error: unknown, key: PropertyKey): unknown => {
  if (error instanceof Mismatch) error.at(key)
  else if (error !== null && typeof error === "object" && "at" in error && typeof error.at === "function") {
    error.at(key)
  }
  return error
}

/** A short, safe rendering of a value for a message. */
export const preview = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === "bigint") return `${value}n`
  if (value === null || typeof value !== "object") return String(value)
  if (Array.isArray(value)) return `an array of ${value.length}`
  const name = Object.getPrototypeOf(value)?.constructor?.name
  return name === undefined || name === "Object" ? "an object" : `a ${name}`
}

export const expectedButGot = (expected: string, value: unknown) =>
  new Mismatch(`Expected ${expected}, got ${preview(value)}`)

/**
 * The node's refinements (`Schema.Int`, `isMinLength`, …), as one function that throws a {@link Mismatch}
 * naming the first that fails; undefined when the node has none.
 */
export const checksOf = (ast: SchemaAST.AST): ((value: unknown) => void) | undefined => {
  const checks = ast.checks
  if (checks === undefined) return undefined
  const flat = flatten(checks)
  return (value) => {
    for (const check of flat) {
      if (check.run(value, ast, {}) !== undefined) {
        const expected = check.annotations?.expected
        throw expectedButGot(typeof expected === "string" ? expected : "a valid value", value)
      }
    }
  }
}

const flatten = (checks: ReadonlyArray<SchemaAST.Check<any>>): Array<SchemaAST.Filter<any>> =>
  checks.flatMap((check) => check._tag === "Filter" ? [check] : flatten(check.checks))

/** `node` with the AST's refinements run after each read and write, and inside `is`. */
export const withChecks = (node: Node, ast: SchemaAST.AST): Node => {
  const check = checksOf(ast)
  if (check === undefined) return node
  const passes = (value: unknown) => {
    try {
      check(value)
      return true
    } catch {
      return false
    }
  }
  return {
    ...node,
    write: (encoder, value) => {
      node.write(encoder, value)
      check(value)
    },
    read: (decoder) => {
      const value = node.read(decoder)
      check(value)
      return value
    },
    is: (value) => node.is(value) && passes(value)
  }
}

/** Reads one value as the schemaless codec would, only to name it in a message. */
export const foundAt = (decoder: Decoder, at: number): unknown => {
  decoder.pos = at
  try {
    return decoder.value()
  } catch {
    return "unreadable data"
  }
}
