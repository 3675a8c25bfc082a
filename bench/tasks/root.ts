/** The Task P4t maps: a module that imports `effect` and this library, as a user's task module does. */
import { Schema } from "effect"
import { Task } from "../../src/index.ts"

export const Root = Task.make("Root", { payload: Schema.Number, success: Schema.Number, run: (x) => Math.sqrt(x) })

/** Spins `n` iterations synchronously (about 2 ms for 200,000 here): a worker busy in user code. */
export const Spin = Task.make("Spin", {
  payload: Schema.Number,
  success: Schema.Number,
  run: (n) => {
    let x = 0
    for (let i = 0; i < n; i++) x = (x + Math.sqrt(i)) % 1000
    return x
  }
})
