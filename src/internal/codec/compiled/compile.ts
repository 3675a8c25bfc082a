/**
 * Compiles a Schema's AST, once, into one writer and one reader that validate as they go (see `node.ts`).
 *
 * Every node the codec knows is compiled natively: keywords, literals and literal unions, enums, structs
 * (optional keys included), records, arrays and tuples, unions, `Class`, `Date`, `BigInt`, `Option`,
 * typed arrays and recursive Schemas. A transformation whose getters are synchronous functions (a `Class`,
 * `NumberFromString`, …) runs per value around its encoded side's compiled node. Anything else (an
 * effectful transformation, an unknown declaration, a template literal) takes Effect's generic Schema pass
 * for that node only.
 */
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import type * as SchemaGetter from "effect/SchemaGetter"
import type { Decoder } from "../decoder.ts"
import type { Encoder } from "../encoder.ts"
import { array } from "./arrays.ts"
import { expectedButGot, Mismatch, type Node, withChecks } from "./node.ts"
import { type Field, record, struct } from "./objects.ts"
import * as Scalars from "./scalars.ts"
import { option, union } from "./unions.ts"

/** The annotation `Codec.typedArray` puts on its declaration: the typed array's constructor. */
export const TYPED_ARRAY_ANNOTATION = "effect-joblib/typedArray"

const compiled = new WeakMap<SchemaAST.AST, Node>()

/** The compiled node of `ast`, built once per AST. */
export const compile = (ast: SchemaAST.AST): Node => {
  let node = compiled.get(ast)
  if (node === undefined) {
    node = build(ast)
    compiled.set(ast, node)
  }
  return node
}

const build = (ast: SchemaAST.AST): Node => {
  // A class's own checks (`Class.check(...)`) sit on its declaration, beside the transformation.
  if (ast.encoding !== undefined) return withChecks(encoded(ast, ast.encoding), ast)
  const node = plain(ast)
  return node === undefined ? generic(ast) : withChecks(node, ast)
}

/** A node without a transformation, or undefined when only the generic pass handles it. */
const plain = (ast: SchemaAST.AST): Node | undefined => {
  switch (ast._tag) {
    case "String":
      return Scalars.string
    case "Number":
      return Scalars.number
    case "Boolean":
      return Scalars.boolean
    case "BigInt":
      return Scalars.bigint
    case "Null":
      return Scalars.null_
    case "Undefined":
    case "Void":
      return Scalars.undefined_
    case "Unknown":
    case "Any":
      return Scalars.unknown
    case "Literal":
      return Scalars.oneOf([ast.literal])
    case "Enum":
      return Scalars.oneOf(ast.enums.map(([, value]) => value))
    case "Union":
      return unionOf(ast)
    case "Objects":
      return objects(ast)
    case "Arrays":
      return arrays(ast)
    case "Declaration":
      return declaration(ast)
    case "Suspend":
      return suspend(ast)
    default:
      return undefined
  }
}

/** A bare literal (no checks, no transformation): a union of only these is a set of values. */
const literalValue = (ast: SchemaAST.AST): { readonly value: unknown } | undefined => {
  if (ast.checks !== undefined || ast.encoding !== undefined) return undefined
  if (ast._tag === "Literal") return { value: ast.literal }
  if (ast._tag === "Null") return { value: null }
  if (ast._tag === "Undefined") return { value: undefined }
  return undefined
}

const unionOf = (ast: SchemaAST.Union): Node => {
  const literals = ast.types.map(literalValue)
  if (literals.every((literal) => literal !== undefined)) return Scalars.oneOf(literals.map(({ value }) => value))
  return union(ast.types.map(compile))
}

/**
 * A field whose transformation sees a missing key (a decoding default, `withDecodingDefaultKey`, an
 * optional-to-required mapping): what it does with an absent key is Effect's to say, so its struct takes
 * Effect's pass.
 */
const handlesMissingKey = (ast: SchemaAST.AST): boolean =>
  ast.encoding?.some(({ transformation }) =>
    transformation._tag !== "Transformation" ||
    transformation.decode._tag.startsWith("TransformOptional") ||
    transformation.encode._tag.startsWith("TransformOptional")
  ) === true

const objects = (ast: SchemaAST.Objects): Node | undefined => {
  const { indexSignatures, propertySignatures } = ast
  if (indexSignatures.length === 0) {
    if (propertySignatures.some((property) => typeof property.name !== "string" || handlesMissingKey(property.type))) {
      return undefined
    }
    return struct(propertySignatures.map((property): Field => ({
      key: property.name as string,
      node: compile(property.type),
      optional: property.type.context?.isOptional === true
    })))
  }
  const [index] = indexSignatures
  if (propertySignatures.length > 0 || indexSignatures.length > 1 || index!.parameter._tag !== "String") {
    return undefined
  }
  return record(compile(index!.type))
}

const arrays = (ast: SchemaAST.Arrays): Node | undefined => {
  if (ast.rest.length > 1) return undefined
  return array({
    elements: ast.elements.map((element) => ({
      node: compile(element),
      optional: element.context?.isOptional === true
    })),
    rest: ast.rest.length === 1 ? compile(ast.rest[0]!) : undefined
  })
}

const declaration = (ast: SchemaAST.Declaration): Node | undefined => {
  const annotations = ast.annotations as Record<string, unknown> | undefined
  const typedArray = annotations?.[TYPED_ARRAY_ANNOTATION] as (abstract new(...args: Array<any>) => unknown) | undefined
  if (typedArray !== undefined) return Scalars.binary(`a ${typedArray.name}`, (value) => value instanceof typedArray)
  const representation = (annotations?.["representation"] as { readonly id?: unknown } | undefined)?.id
  switch (representation) {
    case "effect/schema/Date":
      return Scalars.date
    case "effect/schema/Uint8Array":
      return Scalars.binary("a Uint8Array", (value) => value instanceof Uint8Array)
    case "effect/schema/Option":
      return ast.typeParameters.length === 1 ? option(compile(ast.typeParameters[0]!)) : undefined
    default:
      return undefined
  }
}

/** A recursive Schema: compiled on first use, each level counted against the codec's nesting limit. */
const suspend = (ast: SchemaAST.Suspend): Node => {
  let inner: Node | undefined
  const get = () => inner ??= compile(ast.thunk())
  return {
    get expected() {
      return get().expected
    },
    is: (value) => get().is(value),
    starts: (tag) => get().starts(tag),
    write: (encoder, value) => {
      if (typeof value !== "object" || value === null) return get().write(encoder, value)
      encoder.enter(value)
      get().write(encoder, value)
      encoder.leave(value)
    },
    read: (decoder) => {
      decoder.enter()
      try {
        return get().read(decoder)
      } finally {
        decoder.leave()
      }
    }
  }
}

// ---------------------------------------------------------------------------
// transformations

/** A getter as a plain function, when it is one: the identity or a synchronous transform. */
const syncGetter = (getter: SchemaGetter.Getter<any, any, any>): ((value: unknown) => unknown) | undefined =>
  getter._tag === "Passthrough" ? (value) => value : getter._tag === "Transform" ? getter.transform : undefined

/** A transformation's own failure (a transform that throws) becomes a {@link Mismatch}. */
const guarded = (f: (value: unknown) => unknown, verb: string) => (value: unknown) => {
  try {
    return f(value)
  } catch (error) {
    throw new Mismatch(`could not ${verb}: ${error instanceof Error ? error.message : String(error)}`)
  }
}

/**
 * The type side's guard: a `Class` knows its instances cheaply; other declarations ask Effect; anything
 * else is its own compiled node's `is`.
 */
const typeGuard = (ast: SchemaAST.AST): { readonly is: (value: unknown) => boolean; readonly trusted: boolean } => {
  if (ast._tag === "Declaration") {
    const constructor = (ast.annotations as Record<string, unknown> | undefined)?.["~constructor"]
    if (typeof constructor === "function") {
      const descriptor = constructor(ast.typeParameters) as { readonly isConstructed?: unknown } | undefined
      if (typeof descriptor?.isConstructed === "function") {
        return { is: descriptor.isConstructed as (value: unknown) => boolean, trusted: true }
      }
    }
    return { is: Schema.is(Schema.make(ast)), trusted: false }
  }
  return { is: compile(ast).is, trusted: false }
}

/**
 * A node with one synchronous transformation: written as its encoded side after the encode getter, read
 * as its encoded side then the decode getter, then checked against the type side (a class constructor
 * already made an instance, so its result is trusted).
 */
const encoded = (ast: SchemaAST.AST, links: SchemaAST.Encoding): Node => {
  const [link] = links
  const transformation = link.transformation
  if (links.length !== 1 || transformation._tag !== "Transformation") return generic(ast)
  const decodeWith = syncGetter(transformation.decode)
  const encodeWith = syncGetter(transformation.encode)
  if (decodeWith === undefined || encodeWith === undefined) return generic(ast)
  const to = compile(link.to)
  const type = typeGuard(SchemaAST.toType(ast))
  const decodeValue = guarded(decodeWith, "decode")
  const encodeValue = guarded(encodeWith, "encode")
  const expected = typeof ast.annotations?.identifier === "string" ? ast.annotations.identifier : to.expected
  return {
    expected,
    is: type.is,
    starts: to.starts,
    write: (encoder, value) => {
      if (!type.is(value)) throw expectedButGot(expected, value)
      to.write(encoder, encodeValue(value))
    },
    read: (decoder) => {
      const value = decodeValue(to.read(decoder))
      if (!type.trusted && !type.is(value)) throw expectedButGot(expected, value)
      return value
    }
  }
}

/** A SchemaError as a {@link Mismatch}: its first line, and the path inside the node when it has one. */
const fromSchemaError = (error: unknown): Mismatch => {
  if (!Schema.isSchemaError(error)) return new Mismatch(error instanceof Error ? error.message : String(error))
  const inner = /\n\s+at (\[.*\])\s*$/m.exec(error.message)?.[1]
  return new Mismatch(`${error.message.split("\n")[0]}${inner === undefined ? "" : ` at ${inner} inside`}`)
}

/** Effect's own Schema pass, for this node only: to its encoded form, which the schemaless codec writes. */
const generic = (ast: SchemaAST.AST): Node => {
  const schema = Schema.make<Schema.Codec<unknown, unknown>>(ast)
  const encode = Schema.encodeUnknownSync(schema)
  const decode = Schema.decodeUnknownSync(schema)
  const is = Schema.is(Schema.toType(schema))
  return {
    expected: SchemaAST.isDeclaration(ast) && typeof ast.annotations?.expected === "string"
      ? ast.annotations.expected
      : `a value of the ${ast._tag} Schema`,
    is,
    starts: () => true,
    write: (encoder, value) => {
      let plain: unknown
      try {
        plain = encode(value)
      } catch (error) {
        throw fromSchemaError(error)
      }
      encoder.value(plain)
    },
    read: (decoder) => {
      const plain = decoder.value()
      try {
        return decode(plain)
      } catch (error) {
        throw fromSchemaError(error)
      }
    }
  }
}

/** A compiled Schema's entry points. */
export interface Compiled {
  readonly write: (encoder: Encoder, value: unknown) => void
  readonly read: (decoder: Decoder) => unknown
}

export const compileSchema = (schema: Schema.Top): Compiled => compile(schema.ast)
