// The consumer's Tasks for its TestClock tests: one that naps, one that fails its first attempts.
import { Effect, Schema } from "effect"
import { Task } from "effect-joblib"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

export const Nap = Task.make("Nap", {
  payload: Schema.Number,
  success: Schema.Number,
  run: (ms) => Effect.as(Effect.sleep(ms), ms)
})

export class Flake extends Schema.TaggedError<Flake>()("Flake", { attempt: Schema.Number }) {}

/** Fails until it has been called `failures` times for `key` (counted in a file, so across workers). */
export const Flaky = Task.make("Flaky", {
  payload: Schema.Struct({ key: Schema.String, failures: Schema.Number }),
  success: Schema.Number,
  error: Flake,
  run: ({ key, failures }) =>
    Effect.suspend(() => {
      const file = Path.join(Os.tmpdir(), `consumer-flaky-${key}`)
      Fs.appendFileSync(file, "x")
      const attempt = Fs.readFileSync(file, "utf8").length
      return attempt <= failures ? Effect.fail(new Flake({ attempt })) : Effect.succeed(attempt)
    })
})

export const Square = Task.make("Square", { payload: Schema.Number, success: Schema.Number, run: (x) => x * x })
