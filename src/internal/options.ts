/** Option parsing at the public boundary: every module decodes its options with one Schema. */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import { InvalidOptions } from "../ParallelError.ts"
import * as Cpus from "./parallel/cpus.ts"

/**
 * Validates `options` against `schema`, rejecting unknown keys, and fails with `invalid(option, message)`,
 * where the message names the function, the option, the value and what is allowed.
 */
export const parseWith = <S extends Schema.Codec<any, any, never, never>, E>(
  schema: S,
  where: string,
  options: unknown,
  invalid: (option: string, message: string) => E
): Effect.Effect<S["Type"], E> =>
  Schema.decodeUnknownEffect(schema)(options ?? {}, { onExcessProperty: "error", errors: "first" }).pipe(
    Effect.mapError((error) => {
      const issue = error.issue
      const path = /at \["?([^"\]]+)"?\]/.exec(error.message)?.[1] ?? firstPath(issue) ?? "options"
      const reason = error.message.split("\n")[0]
      const given = path === "options" ? options : (options as Record<string, unknown> | undefined)?.[path]
      return invalid(path, `${where}: option "${path}": ${reason}, got ${show(given)}`)
    })
  )

/** A value as a message shows it. */
const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  if (typeof value === "bigint") return `${value}n`
  // JSON would show NaN and the infinities as null.
  if (typeof value === "number") return String(value)
  if (typeof value === "function") return "a function"
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** {@link parseWith} failing with `InvalidOptions`, for Parallel and the backends. */
export const parse = <S extends Schema.Codec<any, any, never, never>>(
  schema: S,
  where: string,
  options: unknown
): Effect.Effect<S["Type"], InvalidOptions> =>
  parseWith(schema, where, options, (option, message) => new InvalidOptions({ option, message }))

const firstPath = (issue: unknown): string | undefined => {
  const path = (issue as { path?: ReadonlyArray<PropertyKey> }).path
  return path && path.length > 0 ? String(path[0]) : undefined
}

/** joblib's n_jobs: a positive count, -1 for every CPU, -2 for all but one, and so on. */
export const Jobs = Schema.Int.check(
  Schema.makeFilter((n: number) => n !== 0 || "0 workers cannot run anything; use -1 for all CPUs")
)

export const resolveJobs = (
  option: string,
  n: number,
  /** How the message names the option, `Backend.layerThreads: option "workers"` say; default its name. */
  label: string = option
): Effect.Effect<number, InvalidOptions> => {
  if (n > 0) return Effect.succeed(n)
  const cpus = Cpus.available()
  const resolved = cpus + 1 + n
  return resolved >= 1
    ? Effect.succeed(resolved)
    : Effect.fail(
      new InvalidOptions({
        option,
        message: `${label}: ${n} asks for ${resolved} workers on a machine with ${cpus} CPUs; use -1 for all CPUs`
      })
    )
}

/**
 * Anything `Duration` accepts (millis as a number, `"1 second"`, a Duration) that is not negative. NaN is
 * refused here: `Duration` would read it as zero.
 */
export const DurationInput = Schema.declare(
  (u): u is Duration.Input => {
    if (u === undefined || Number.isNaN(u)) return false
    const duration = Duration.fromInput(u as Duration.Input)
    return duration._tag === "Some" && !Duration.isNegative(duration.value)
  },
  { expected: "a duration of zero or more, such as 500 (millis) or \"2 seconds\"" }
)

/** A {@link DurationInput} above zero: a time limit, or the wait between two polls. */
export const PositiveDuration = DurationInput.check(
  Schema.makeFilter((u: Duration.Input) => !Duration.isZero(Duration.fromInputUnsafe(u)) || "a duration above zero")
)

export const toMillis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

/** A time limit in millis, where an infinite one (`Duration.infinity`) is no limit. */
export const limitMillis = (input: Duration.Input | undefined): number | undefined => {
  const millis = input === undefined ? Infinity : toMillis(input)
  return Number.isFinite(millis) ? millis : undefined
}

/** Node's longest timer, 24.8 days: a longer one fires at once. */
export const MAX_TIMER_MILLIS = 2 ** 31 - 1

/** A number above zero. */
export const Positive = Schema.Number.check(Schema.isGreaterThan(0))

/** Millis handed to a library's own timer (a Redis client's): above zero, and no longer than Node's timers. */
export const TimerMillis = Positive.check(
  Schema.makeFilter((n: number) =>
    n <= MAX_TIMER_MILLIS || `at most ${MAX_TIMER_MILLIS} ms (24.8 days), the longest timer Node has`
  )
)

/**
 * A duration handed to a library's own timer (a Redis client's, BullMQ's), given as any `Duration.Input` and
 * decoded to whole millis: above zero, and no longer than Node's longest timer.
 */
export const TimerDuration = PositiveDuration.pipe(
  Schema.decodeTo(
    TimerMillis,
    SchemaTransformation.transform({
      decode: (input: Duration.Input) => Math.ceil(toMillis(input)),
      encode: (millis: number): Duration.Input => millis
    })
  )
)

/** Any Schema, as an option's value (a payload's, a dump's, a memoized result's). */
export const AnySchema = Schema.declare((u): u is Schema.Top => Schema.isSchema(u), { expected: "a Schema" })
