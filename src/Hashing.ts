/**
 * Deterministic content hashes of values, joblib's `hash`. The result names
 * its algorithm (`xxh128:…`, `sha256:…`), so that a change of default can
 * never silently collide with older hashes.
 *
 * **Canonical rules (version 1).** Object keys are sorted; Map entries and Set
 * members are ordered by their own canonical bytes, so insertion order does
 * not matter. `-0` hashes as `0`; every NaN hashes alike; a bigint differs
 * from the number of the same value; a Date hashes as its time value (an
 * invalid Date as NaN). A typed array hashes its element type, length and
 * bytes, so `Float32Array([1])` and `Int32Array([1])` differ. Array holes
 * differ from `undefined`. Class instances hash through their Schema (the
 * `schema` option); functions, symbols and class instances without a Schema
 * fail with `UnhashableValue`.
 *
 * Changing any output is a breaking change: golden values pin it.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Crypto from "node:crypto"
import { Encoder } from "./internal/codec/encoder.ts"
import { xxh128 } from "./internal/codec/hashers.ts"
import { formatPath, Unsupported } from "./internal/codec/structure.ts"
import * as Options from "./internal/options.ts"
import { SchemaMismatch } from "./PersistError.ts"

/**
 * A value that has no content hash: a function, a symbol, a circular reference,
 * or a class instance without a Schema.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnhashableValue extends Schema.TaggedError<UnhashableValue>()("UnhashableValue", {
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Options of {@link hash} that are not what it takes: an unknown algorithm, an
 * unknown key, a value of the wrong type. Nothing was hashed.
 *
 * **Example** (An algorithm this library does not have)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Hashing } from "effect-joblib"
 *
 * const program = Hashing.hash({ a: 1 }, { algorithm: "crc32" as Hashing.Algorithm }).pipe(
 *   Effect.catchTag("InvalidHashOptions", (error) => Effect.succeed(error.option)) // "algorithm"
 * )
 * ```
 *
 * @category errors
 * @since 0.5.0
 */
export class InvalidHashOptions extends Schema.TaggedError<InvalidHashOptions>()("InvalidHashOptions", {
  option: Schema.String,
  message: Schema.String
}) {}

/**
 * The hash algorithms. `xxh128` (the default) runs at about 3.4 GB/s here;
 * `sha256` is cryptographic, for hashes that must resist crafted collisions;
 * `sha1` and `md5` (joblib's `hash_name` choices) are `node:crypto`'s, for
 * hashes that must match another tool's.
 *
 * @category models
 * @since 0.1.0
 */
export type Algorithm = "xxh128" | "sha256" | "sha1" | "md5"

const Algorithms = Schema.Literals(["xxh128", "sha256", "sha1", "md5"])

const HashOptionsSchema = Schema.Struct({
  algorithm: Schema.optional(Algorithms),
  schema: Schema.optional(Options.AnySchema)
})

/**
 * @category models
 * @since 0.1.0
 */
export interface HashOptions<S extends Schema.Top = never> {
  readonly algorithm?: Algorithm | undefined
  /** Hash the value's Schema encoding: how class instances are hashed. */
  readonly schema?: S | undefined
}

/** Domain separation: part of every hashed stream, so that version-2 rules can never collide with these. */
const DOMAIN = new TextEncoder().encode("effect-joblib/hash/v1\u0000")

/** Big binary values are streamed to the hasher rather than copied. */
const STREAM_BYTES = 4096

/** Feeds the wasm hasher in slices: large single updates run measurably slower here. */
const SLICE = 1 << 24

const sliced = (update: (bytes: Uint8Array) => void) => (bytes: Uint8Array) => {
  for (let offset = 0; offset < bytes.length; offset += SLICE) update(bytes.subarray(offset, offset + SLICE))
}

interface Sink {
  readonly init: () => void
  readonly update: (bytes: Uint8Array) => void
  readonly digest: () => string
}

const cryptoSink = (algorithm: "sha256" | "sha1" | "md5"): Sink => {
  const hash = Crypto.createHash(algorithm)
  return { init: () => {}, update: (bytes) => void hash.update(bytes), digest: () => hash.digest("hex") }
}

/** One canonical encoder, reused: hashing is synchronous, so calls never overlap. */
const encoder = new Encoder({ sectionBytes: STREAM_BYTES, canonical: true })

const hashWith = (sink: Sink, value: unknown, algorithm: Algorithm): Effect.Effect<string, UnhashableValue> => {
  try {
    sink.init()
    sink.update(DOMAIN)
    encoder.reset(sink.update)
    encoder.value(value)
    sink.update(encoder.result())
    return Effect.succeed(`${algorithm}:${sink.digest()}`)
  } catch (error) {
    return Effect.fail(
      error instanceof Unsupported
        ? new UnhashableValue({ path: formatPath(error.path), message: error.message })
        : new UnhashableValue({ path: "the root", message: String(error) })
    )
  } finally {
    encoder.reset()
  }
}

let xxh128Sink: Sink | undefined

const hashPlain = (value: unknown, algorithm: Algorithm): Effect.Effect<string, UnhashableValue> => {
  if (algorithm !== "xxh128") return Effect.suspend(() => hashWith(cryptoSink(algorithm), value, algorithm))
  if (xxh128Sink !== undefined) {
    const sink = xxh128Sink
    return Effect.suspend(() => hashWith(sink, value, algorithm))
  }
  return Effect.flatMap(xxh128, (hasher) => {
    xxh128Sink ??= {
      init: () => void hasher.init(),
      update: sliced((bytes) => void hasher.update(bytes)),
      digest: () => hasher.digest("hex")
    }
    return hashWith(xxh128Sink, value, algorithm)
  })
}

/**
 * The content hash of a value.
 *
 * **Example** (Order-independent hashes)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Hashing } from "effect-joblib"
 *
 * const program = Effect.gen(function*() {
 *   const a = yield* Hashing.hash({ x: 1, y: [1, 2] })
 *   const b = yield* Hashing.hash({ y: [1, 2], x: 1 })
 *   return a === b // true; a starts with "xxh128:"
 * })
 * ```
 *
 * @category hashing
 * @since 0.1.0
 */
export const hash = <S extends Schema.Top = never>(
  value: [S] extends [never] ? unknown : S["Type"],
  options?: HashOptions<S>
): Effect.Effect<string, UnhashableValue | SchemaMismatch | InvalidHashOptions> => {
  // The common call, no options or only a known algorithm, skips decoding: the hit path of Cache runs it.
  if (options === undefined) return hashPlain(value, "xxh128")
  if (options.schema === undefined && Object.keys(options).length === 1 && isAlgorithm(options.algorithm)) {
    return hashPlain(value, options.algorithm)
  }
  return Effect.flatMap(
    Options.parseWith(
      HashOptionsSchema,
      "Hashing.hash",
      options,
      (option, message) => new InvalidHashOptions({ option, message })
    ),
    (parsed) => {
      const algorithm = parsed.algorithm ?? "xxh128"
      const schema = parsed.schema
      if (schema === undefined) return hashPlain(value, algorithm)
      return Schema.encodeUnknownEffect(schema as unknown as Schema.Codec<unknown, unknown, never, never>)(value).pipe(
        Effect.mapError((error) => new SchemaMismatch({ path: "the root", message: error.message })),
        Effect.flatMap((encoded) => hashPlain(encoded, algorithm))
      )
    }
  )
}

const isAlgorithm = Schema.is(Algorithms)
