/** joblib's `Memory(verbose=...)` lines, through the Effect Logger. */
import * as Effect from "effect/Effect"
import * as Util from "node:util"

/** The arguments, short: as joblib prints a call, cut at 120 characters. */
export const shortRepr = (args: ReadonlyArray<unknown>) => {
  const text = args.map((arg) => Util.inspect(arg, { depth: 2, breakLength: Infinity, maxArrayLength: 4 })).join(", ")
  return text.length > 120 ? `${text.slice(0, 119)}…` : text
}

/** joblib's `format_time`: seconds and minutes, one decimal each. */
export const formatTime = (millis: number) => `${(millis / 1000).toFixed(1)}s, ${(millis / 60_000).toFixed(1)}min`

/** joblib's closing line: the message pushed to column 80 by underscores. */
const rightAligned = (message: string) => "_".repeat(Math.max(0, 80 - message.length)) + message

/** Before a computation: a rule, `[Memory] Calling f...` and the call. */
export const logCalling = (name: string, args: ReadonlyArray<unknown>) =>
  Effect.andThen(
    Effect.logInfo("_".repeat(80)),
    Effect.andThen(Effect.logInfo(`[Memory] Calling ${name}...`), Effect.logInfo(`${name}(${shortRepr(args)})`))
  )

/** After a computation was stored: `f - 0.1s, 0.0min`. */
export const logComputed = (name: string, started: number) =>
  Effect.logInfo(rightAligned(`${name} - ${formatTime(performance.now() - started)}`))

/** A hit: `[Memory]<time since the cache was built>: Loading f...`, then (above 4) how long it took to load. */
export const logHit = (name: string, cacheStarted: number, started: number, verbose: number) =>
  Effect.andThen(
    Effect.logInfo(`[Memory]${formatTime(performance.now() - cacheStarted).padEnd(16)}: Loading ${name}...`),
    verbose > 4
      ? Effect.logInfo(rightAligned(`${name} cache loaded - ${formatTime(performance.now() - started)}`))
      : Effect.void
  )
