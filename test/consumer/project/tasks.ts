// Tasks of a consumer's own module: one finds its module from the call site, one is given it.
import { Schema } from "effect"
import { Task } from "effect-joblib"

export const Square = Task.make("Square", { payload: Schema.Number, success: Schema.Number, run: (x) => x * x })

export const Cube = Task.make("Cube", {
  payload: Schema.Number,
  success: Schema.Number,
  run: (x) => x ** 3,
  url: import.meta.url
})
