/** The options of Codec and Persist, decoded by one Schema each at the boundary. */
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Method } from "../../Compression.ts"
import { InvalidPersistOptions } from "../../PersistError.ts"
import * as Options from "../options.ts"

/** `false`, `true`, a level, a method name, or exactly `[method, level]` (joblib takes no third element). */
/**
 * A method's name. Which names exist is known only when encoding (a Layer may add compressors), where an unknown
 * one is a typed error listing those available; here it need only be a string.
 */
const MethodName = Schema.declare((u): u is Method => typeof u === "string", { expected: "a method's name" })

export const CompressOption = Schema.Union([
  Schema.Boolean,
  Schema.Int,
  MethodName,
  Schema.Tuple([MethodName, Schema.Int])
])

export const EncodeOptions = Schema.Struct({ compress: Schema.optional(CompressOption) })

export const DecodeOptions = Schema.Struct({
  shared: Schema.optional(Schema.Boolean),
  verify: Schema.optional(Schema.Boolean)
})

export const DumpOptions = Schema.Struct({
  ...EncodeOptions.fields,
  schema: Schema.optional(Options.AnySchema),
  fsync: Schema.optional(Schema.Boolean)
})

export const LoadOptions = DecodeOptions

/** Decodes `options` with `schema`; a bad one is `InvalidPersistOptions` naming the option, value and rule. */
export const parse = <S extends Schema.Codec<any, any, never, never>>(
  schema: S,
  where: string,
  options: unknown
): Effect.Effect<S["Type"], InvalidPersistOptions> =>
  Options.parseWith(schema, where, options, (option, message) => new InvalidPersistOptions({ option, message }))
