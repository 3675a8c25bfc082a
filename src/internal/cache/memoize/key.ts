/**
 * A call's key: the hash of the function's identity and its arguments, less the ignored ones. Keys of recent
 * calls whose arguments are all primitives are remembered by an exact text of those arguments: on a hit,
 * hashing them would cost more than the rest of the lookup.
 */
import * as Effect from "effect/Effect"
import { InvalidMemoize } from "../../../CacheError.ts"
import * as Hashing from "../../../Hashing.ts"
import { parameterNames } from "../../parallel/closure.ts"
import type { Definition } from "./definition.ts"

/** Keys remembered per memoized function, at most. */
const RECENT_KEYS = 10_000

/** An ignored argument: a parameter, optionally with a path into it. */
interface Ignored {
  readonly index: number
  readonly path: ReadonlyArray<string>
}

/**
 * An exact text of arguments that are all primitives (distinct arguments, distinct texts: numbers in their
 * shortest round-trip form with -0 apart, strings length-prefixed), or undefined for any other argument.
 */
const primitiveSignature = (args: ReadonlyArray<unknown>): string | undefined => {
  let signature = ""
  for (const arg of args) {
    switch (typeof arg) {
      case "number":
        signature += Object.is(arg, -0) ? "n-0;" : `n${arg};`
        break
      case "string":
        signature += `s${arg.length}:${arg};`
        break
      case "boolean":
        signature += arg ? "t;" : "f;"
        break
      case "bigint":
        signature += `b${arg};`
        break
      case "undefined":
        signature += "u;"
        break
      default:
        if (arg !== null) return undefined
        signature += "z;"
    }
  }
  return signature
}

/** Sets `path` (below a parameter) to undefined in a copy of `value`. */
const without = (value: unknown, path: ReadonlyArray<string>): unknown => {
  if (path.length === 0) return undefined
  if (value === null || typeof value !== "object") return value
  const [head, ...rest] = path
  const copy: Record<string, unknown> = Array.isArray(value) ? [...value] as any : { ...(value as object) }
  if (head! in copy) copy[head!] = without(copy[head!], rest)
  return copy
}

/** The ignored arguments by position, read from the function's parameter names; or why they cannot be. */
const resolveIgnored = (
  definition: Definition<any, any, any, any>
): Effect.Effect<ReadonlyArray<Ignored>, InvalidMemoize> => {
  if (definition.ignore.length === 0) return Effect.succeed([])
  const params = parameterNames(definition.fn)
  const resolved: Array<Ignored> = []
  for (const entry of definition.ignore) {
    const [param, ...path] = entry.split(".")
    const index = params?.indexOf(param!) ?? -1
    if (index < 0) {
      const message = `cannot ignore "${entry}": ${definition.name || "the function"} has no parameter "${param}"` +
        (params === undefined ? " that can be read from its source" : ` (it has ${params.join(", ") || "none"})`)
      return Effect.fail(new InvalidMemoize({ message }))
    }
    resolved.push({ index, path })
  }
  return Effect.succeed(resolved)
}

/** The keyer of a memoized function. */
export const makeKeyer = <Args extends ReadonlyArray<unknown>>(
  definition: Definition<Args, any, any, any>
): (args: Args, identity: string) => Effect.Effect<string, InvalidMemoize> => {
  const { name, version } = definition
  const ignored = resolveIgnored(definition)
  const recentKeys = new Map<string, string>()
  const hashArgs = (args: ReadonlyArray<unknown>, identity: string) => {
    // f(x) and f(x, undefined) are the same call.
    const keyed = args.length > 0 && args.at(-1) === undefined ? args.slice(0, -1) : args
    // Recent keys are remembered under the function's own name only: a colliding one hashes each time.
    const signature = identity === name ? primitiveSignature(keyed) : undefined
    const known = signature === undefined ? undefined : recentKeys.get(signature)
    if (known !== undefined) return Effect.succeed(known)
    return Hashing.hash({ function: identity, version, args: keyed }).pipe(
      Effect.map((key) => {
        if (signature !== undefined) {
          if (recentKeys.size >= RECENT_KEYS) recentKeys.clear()
          recentKeys.set(signature, key)
        }
        return key
      }),
      Effect.mapError((error) =>
        new InvalidMemoize({ message: `the arguments of ${name} cannot be hashed: ${error.message}` })
      )
    )
  }
  const unnamed = new InvalidMemoize({
    message: `an anonymous function needs a name to be memoized: Cache.memoize(fn, { name: "myFunction" })`
  })
  return (args, identity) => {
    if (name === "") return Effect.fail(unnamed)
    if (definition.ignore.length === 0) return hashArgs(args, identity)
    return Effect.flatMap(ignored, (paths) => {
      const keyed: Array<unknown> = [...args]
      for (const { index, path } of paths) keyed[index] = without(keyed[index], path)
      return hashArgs(keyed, identity)
    })
  }
}
