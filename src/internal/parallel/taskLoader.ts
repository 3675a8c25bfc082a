/**
 * Prepares a Task for a worker's batch loop. `Task.ts` installs it on `globalThis` when it loads, so
 * that a worker uses the copy of this library (and of `effect`) that defined the task: the installed
 * package, the repository's sources or a bundle that carries both inside.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import { TaskReporter } from "./report.ts"
import { isTransparent } from "./transparent.ts"

const identity = (u: unknown) => u

/** What a worker needs of a `Task` (declared here, so that this module does not import `Task.ts`, which installs it). */
interface Loadable {
  readonly payload: Schema.Codec<unknown, unknown>
  readonly success: Schema.Codec<unknown, unknown>
  readonly error: Schema.Codec<unknown, unknown>
  readonly run: (payload: unknown) => unknown
  readonly layer: Layer.Layer<any, unknown> | undefined
}

/** What a batch loop makes of a task fiber's failure: a typed error, an interruption or a defect. */
export const classify = (exit: Exit.Exit<unknown, unknown>) => {
  if (Exit.isSuccess(exit)) return { _tag: "Defect", defect: new Error("not a failure") } as const
  const error = Cause.findError(exit.cause)
  if (error._tag === "Success") return { _tag: "Failure", error: error.success } as const
  if (Cause.hasInterruptsOnly(exit.cause)) return { _tag: "Interrupted" } as const
  return { _tag: "Defect", defect: Cause.squash(exit.cause) } as const
}

/** What a worker's batch loop needs to run a task: see `Loaded` in workerRuntime.js. */
export const loadTask = async (task: Loadable) => {
  const decodePayload = isTransparent(task.payload) ? identity : Schema.decodeUnknownSync(task.payload)
  // The task's layer is its worker initializer: built once, for the worker's lifetime.
  let context: any
  let scope: Scope.Closeable | undefined
  if (task.layer !== undefined) {
    scope = Effect.runSync(Scope.make())
    context = await Effect.runPromise(Layer.buildWithScope(task.layer, scope) as Effect.Effect<any, unknown>)
  }
  return {
    // When the pool closes: the layer's finalizers run (a database connection closed, say).
    close: () => scope === undefined ? Promise.resolve() : Effect.runPromise(Scope.close(scope, Exit.void)),
    run: (item: unknown) => task.run(decodePayload(item)),
    encodeSuccess: isTransparent(task.success) ? identity : Schema.encodeUnknownSync(task.success),
    encodeError: isTransparent(task.error) ? identity : Schema.encodeUnknownSync(task.error),
    effects: {
      isEffect: Effect.isEffect,
      fork: (
        effect: Effect.Effect<unknown, unknown, any>,
        report: (data: unknown) => void,
        parent: { readonly traceId: string; readonly spanId: string } | undefined
      ) => {
        // Under the batch's span, which lives in the process that dispatched it: the task's own spans and
        // logs join that trace.
        const traced = parent === undefined ? effect : Effect.annotateLogs(
          Effect.withParentSpan(effect, Tracer.externalSpan({ traceId: parent.traceId, spanId: parent.spanId })),
          { traceId: parent.traceId, spanId: parent.spanId }
        )
        const reporting = Effect.provideService(traced, TaskReporter, report)
        return Effect.runFork(
          (context === undefined ? reporting : Effect.provideContext(reporting, context)) as Effect.Effect<
            unknown,
            unknown
          >
        )
      },
      classify
    }
  }
}

/** Makes {@link loadTask} the loader of this thread's workers. */
export const install = () => {
  ;(globalThis as any)[Symbol.for("effect-joblib/Task/loader")] = loadTask
}
