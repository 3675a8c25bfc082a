/**
 * A memoized function as the pipeline sees it: the function, its identity (name, version, source) and its
 * options resolved once, when `Cache.memoize` is called.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Schema from "effect/Schema"
import * as Codec from "../../../Codec.ts"
import type * as Store from "../../../Store.ts"

/** What a lookup or a computation found: a value, or a typed failure (cached with `cacheFailures`). */
export type Found<A, E> = { readonly _tag: "Value"; readonly value: A } | {
  readonly _tag: "Failure"
  readonly error: E
}

export const fromFound = <A, E>(found: Found<A, E>): Effect.Effect<A, E> =>
  found._tag === "Value" ? Effect.succeed(found.value) : Effect.fail(found.error)

/** The options of `Cache.memoize` the pipeline reads (checked before it is built). */
export interface DefinitionOptions {
  readonly name?: string | undefined
  readonly version?: string | undefined
  readonly ignore?: ReadonlyArray<string> | undefined
  readonly timeToLive?: Duration.Input | undefined
  readonly validate?: ((meta: Store.Meta) => boolean) | undefined
  readonly cacheFailures?: boolean | { readonly timeToLive?: Duration.Input | undefined } | undefined
  readonly invalidateOnSourceChange?: boolean | undefined
  readonly source?: string | undefined
  readonly success?: Schema.Codec<any, any> | undefined
  readonly failure?: Schema.Codec<any, any> | undefined
  readonly onUnstorable?: "fail" | "warn" | undefined
  readonly verbose?: number | undefined
}

export interface Definition<Args extends ReadonlyArray<unknown>, A, E, R> {
  readonly fn: (...args: Args) => A | PromiseLike<A> | Effect.Effect<A, E, R>
  readonly name: string
  readonly version: string
  readonly source: string
  readonly ignore: ReadonlyArray<string>
  /** Milliseconds a result stays fresh, if limited; and a cached failure. */
  readonly timeToLive: number | undefined
  readonly failureTimeToLive: number | undefined
  readonly cacheFailures: boolean
  readonly checkSource: boolean
  readonly validate: ((meta: Store.Meta) => boolean) | undefined
  readonly verbose: number | undefined
  readonly onUnstorable: "fail" | "warn"
  readonly valueCodec: Codec.Codec<A>
  readonly failureCodec: Codec.Codec<E>
  /** Whether the user gave the Schema of the result, and of the failure. */
  readonly schemas: { readonly success: boolean; readonly failure: boolean }
}

const millis = (input: Duration.Input | undefined) =>
  input === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(input))

export const define = <Args extends ReadonlyArray<unknown>, A, E, R>(
  fn: (...args: Args) => A | PromiseLike<A> | Effect.Effect<A, E, R>,
  options: DefinitionOptions | undefined
): Definition<Args, A, E, R> => {
  const timeToLive = millis(options?.timeToLive)
  const cacheFailures = options?.cacheFailures
  return {
    fn,
    name: options?.name ?? fn.name,
    version: options?.version ?? "",
    source: options?.source ?? fn.toString(),
    ignore: options?.ignore ?? [],
    timeToLive,
    failureTimeToLive: typeof cacheFailures === "object" && cacheFailures.timeToLive !== undefined
      ? millis(cacheFailures.timeToLive)
      : timeToLive,
    cacheFailures: cacheFailures !== undefined && cacheFailures !== false,
    checkSource: options?.invalidateOnSourceChange !== false,
    validate: options?.validate,
    verbose: options?.verbose,
    onUnstorable: options?.onUnstorable ?? "fail",
    valueCodec: (options?.success === undefined ? Codec.make() : Codec.make(options.success)) as Codec.Codec<A>,
    failureCodec: (options?.failure === undefined ? Codec.make() : Codec.make(options.failure)) as Codec.Codec<E>,
    schemas: { success: options?.success !== undefined, failure: options?.failure !== undefined }
  }
}

/** Calls the function: its Effect as it is, a Promise awaited, a plain value as a success. */
export const call = <Args extends ReadonlyArray<unknown>, A, E, R>(
  definition: Definition<Args, A, E, R>,
  args: Args
): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const out = definition.fn(...args)
    if (Effect.isEffect(out)) return out
    if (out !== null && typeof out === "object" && typeof (out as PromiseLike<A>).then === "function") {
      return Effect.promise(() => out as PromiseLike<A>)
    }
    return Effect.succeed(out as A)
  })
