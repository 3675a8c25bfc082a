/** The options of Cache and Store, decoded by one Schema each at the boundary. */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import { InvalidCacheOptions, InvalidMemoize } from "../../CacheError.ts"
import { CompressOption } from "../codec/persistOptions.ts"
import * as Options from "../options.ts"

const NonNegative = Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))
const millisOf = SchemaTransformation.transform({
  decode: (input: Duration.Input) => Options.toMillis(input),
  encode: (millis: number): Duration.Input => millis
})
const AnyFunction = Schema.declare((u): u is Function => typeof u === "function", { expected: "a function" })

export const Limits = Schema.Struct({
  maxBytes: Schema.optional(Options.Positive),
  maxItems: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  maxAge: Schema.optional(Options.DurationInput.pipe(Schema.decodeTo(NonNegative, millisOf)))
})

export const StoreOptions = Schema.Struct({ limits: Schema.optional(Limits) })

export const KeyValueStoreOptions = Schema.Struct({
  ...StoreOptions.fields,
  prefix: Schema.optional(Schema.String)
})

export const RedisOptions = Schema.Struct({
  ...StoreOptions.fields,
  prefix: Schema.optional(Schema.String),
  timeout: Schema.optional(Options.TimerDuration)
})

const Verbose = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

export const CacheOptions = Schema.Struct({
  onStoreError: Schema.optional(Schema.Literals(["fail", "compute"])),
  lockTimeout: Schema.optional(Options.DurationInput),
  pollInterval: Schema.optional(Options.PositiveDuration),
  compress: Schema.optional(CompressOption),
  shared: Schema.optional(Schema.Boolean),
  verbose: Schema.optional(Verbose)
})

/** What `Cache.layerFileSystem` and its siblings take: the cache's options and its store's. */
export const CacheStoreOptions = Schema.Struct({ ...CacheOptions.fields, ...StoreOptions.fields })

export const MemoizeOptions = Schema.Struct({
  name: Schema.optional(Schema.String),
  version: Schema.optional(Schema.String),
  ignore: Schema.optional(Schema.Array(Schema.String)),
  timeToLive: Schema.optional(Options.DurationInput),
  validate: Schema.optional(AnyFunction),
  cacheFailures: Schema.optional(
    Schema.Union([Schema.Boolean, Schema.Struct({ timeToLive: Schema.optional(Options.DurationInput) })])
  ),
  invalidateOnSourceChange: Schema.optional(Schema.Boolean),
  source: Schema.optional(Schema.String),
  success: Schema.optional(Options.AnySchema),
  failure: Schema.optional(Options.AnySchema),
  onUnstorable: Schema.optional(Schema.Literals(["fail", "warn"])),
  verbose: Schema.optional(Verbose)
})

/** Decodes `options` with `schema`; a bad one is `InvalidCacheOptions` naming the option, value and rule. */
export const parse = <S extends Schema.Codec<any, any, never, never>>(
  schema: S,
  where: string,
  options: unknown
): Effect.Effect<S["Type"], InvalidCacheOptions> =>
  Options.parseWith(schema, where, options, (option, message) => new InvalidCacheOptions({ option, message }))

/** Decodes memoize options at once (memoize returns a function, not an Effect): the problem, if any. */
export const parseMemoize = (where: string, options: unknown): InvalidMemoize | undefined =>
  Effect.runSync(
    Effect.match(
      Options.parseWith(MemoizeOptions, where, options, (_option, message) => new InvalidMemoize({ message })),
      { onFailure: (error) => error, onSuccess: () => undefined }
    )
  )

/** A store's location: a path or URL that is a non-empty string. */
export const location = (where: string, name: string, value: unknown): Effect.Effect<string, InvalidCacheOptions> =>
  typeof value === "string" && value.length > 0
    ? Effect.succeed(value)
    : Effect.fail(
      new InvalidCacheOptions({
        option: name,
        message: `${where}: ${name} must be a non-empty string, got ${JSON.stringify(value) ?? String(value)}`
      })
    )
