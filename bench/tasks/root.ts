/** The Task P4t maps: a module that imports `effect` and this library, as a user's task module does. */
import { Schema } from "effect"
import { Task } from "../../src/index.ts"

export const Root = Task.make("Root", { payload: Schema.Number, success: Schema.Number, run: (x) => Math.sqrt(x) })
