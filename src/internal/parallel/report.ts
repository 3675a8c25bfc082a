/**
 * Where a running task's own progress reports go. Kept apart from Progress.ts
 * so that workers load only `effect/Context` for it.
 */
import * as Context from "effect/Context"

/** Reports `data` for the item running in this fiber; a no-op outside a map. */
export const TaskReporter = Context.Reference<(data: unknown) => void>("effect-joblib/Progress/TaskReporter", {
  defaultValue: () => () => {}
})
