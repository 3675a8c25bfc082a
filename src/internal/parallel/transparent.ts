/**
 * Schemas whose encoded form is the value itself and that structured clone
 * copies faithfully: no transformations, no classes. Values of such schemas
 * cross a worker boundary as they are, skipping a per-item encode and decode.
 * Refinements are not re-checked on the way: the values were built as the
 * Schema's type on the other side.
 */
import type * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"

const check = (ast: SchemaAST.AST, seen: Set<SchemaAST.AST>): boolean => {
  if (ast.encoding !== undefined) return false
  switch (ast._tag) {
    case "Null":
    case "Undefined":
    case "Void":
    case "Never":
    case "String":
    case "Number":
    case "Boolean":
    case "BigInt":
    case "Literal":
    case "TemplateLiteral":
    case "Enum":
      return true
    case "Arrays":
      return ast.elements.every((element) => check(element, seen)) && ast.rest.every((rest) => check(rest, seen))
    case "Objects":
      return ast.propertySignatures.every((property) =>
        typeof property.name === "string" && check(property.type, seen)
      ) &&
        ast.indexSignatures.every((index) => check(index.type, seen))
    case "Union":
      return ast.types.every((member) => check(member, seen))
    case "Suspend": {
      if (seen.has(ast)) return true
      seen.add(ast)
      return check(ast.thunk(), seen)
    }
    default:
      return false
  }
}

const mayHoldBinary = (ast: SchemaAST.AST, seen: Set<SchemaAST.AST>): boolean => {
  switch (ast._tag) {
    case "Arrays":
      return ast.elements.some((element) => mayHoldBinary(element, seen)) ||
        ast.rest.some((rest) => mayHoldBinary(rest, seen))
    case "Objects":
      return ast.propertySignatures.some((property) => mayHoldBinary(property.type, seen)) ||
        ast.indexSignatures.some((index) => mayHoldBinary(index.type, seen))
    case "Union":
      return ast.types.some((member) => mayHoldBinary(member, seen))
    case "Suspend": {
      if (seen.has(ast)) return false
      seen.add(ast)
      return mayHoldBinary(ast.thunk(), seen)
    }
    case "Declaration":
    case "Unknown":
    case "Any":
    case "ObjectKeyword":
      return true
    default:
      return false
  }
}

/** Memoizes a recursive AST predicate per schema. */
const memoized = (predicate: (ast: SchemaAST.AST, seen: Set<SchemaAST.AST>) => boolean) => {
  const cache = new WeakMap<SchemaAST.AST, boolean>()
  return (schema: Schema.Top): boolean => {
    let answer = cache.get(schema.ast)
    if (answer === undefined) {
      answer = predicate(schema.ast, new Set())
      cache.set(schema.ast, answer)
    }
    return answer
  }
}

/** False when no value of the schema can contain an ArrayBuffer or a typed array, so sharing can skip the walk. */
export const mayContainBinary = memoized(mayHoldBinary)

export const isTransparent = memoized(check)
