/** What a map runs, in a form every backend understands. */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { type TaskModuleError, UnshippableFunction } from "../../ParallelError.ts"
import type * as Task from "../../Task.ts"
import * as Closure from "./closure.ts"
import { checkImportable } from "./guard.ts"
import type { WorkSpec } from "./protocol.ts"
import { isTransparent, mayContainBinary } from "./transparent.ts"

/**
 * Runs items in this process. `run` may throw, or return a value, a promise,
 * or an Effect to be run with `provide` applied.
 */
export interface Local<I, A, E> {
  readonly run: (item: I, index: number) => A | PromiseLike<A> | Effect.Effect<A, E, any>
  readonly provide: (effect: Effect.Effect<A, E, any>) => Effect.Effect<A, E>
  /** An inline function, whose result is a value or a promise: an Effect from it is refused (see `inlineEffect`). */
  readonly inline: boolean
}

/**
 * The error of an inline function that returned an Effect. A worker could not run it (inline functions
 * ship without `effect`), so no backend does: the map fails with this, whatever its mode.
 */
export const inlineEffect = (label: string) =>
  new UnshippableFunction({
    function: label,
    identifiers: [],
    message: `The function ${label} returned an Effect; an inline function returns a value or a promise. ` +
      `Define a Task with Task.make to run Effects on any backend.`
  })

export interface Work<I, A, E> {
  readonly label: string
  /** The source of what runs (the task's `run`), for checking that a remote worker runs the same code. */
  readonly source: string
  /** Prepares in-process runs for one map; a task's layer is built once, in the map's scope. */
  readonly local: Effect.Effect<Local<I, A, E>, never, Scope.Scope>
  /** What a worker needs to run the items, with a key that stays the same across maps. */
  readonly ship: Effect.Effect<
    { readonly key: number; readonly spec: WorkSpec },
    UnshippableFunction | TaskModuleError
  >
  readonly encodeItem: (item: I) => unknown
  /** False when encoded items cannot hold buffers, so that sharing need not walk them. */
  readonly mayShare: boolean
  readonly decodeSuccess: (value: unknown) => A
  readonly decodeFailure: (value: unknown) => E
}

const keys = new Map<string, number>()
/**
 * What a worker is sent to run `spec`, with a number naming it in this process, the same across maps (and for
 * a Remote worker's batches): a worker loads it once.
 */
export const shippedAs = (spec: WorkSpec): { readonly key: number; readonly spec: WorkSpec } => {
  const id = spec.kind === "task" ? `task:${spec.url}#${spec.name}` : `fn:${spec.source}`
  let key = keys.get(id)
  if (key === undefined) {
    key = keys.size + 1
    keys.set(id, key)
  }
  return { key, spec }
}

export const identity = <A>(a: A) => a

export const fromTask = <P, A, E>(task: Task.Task<P, A, E>): Work<P, A, E> => {
  const shipped = Effect.as(
    checkImportable(task.name, task.url),
    shippedAs({ kind: "task", url: task.url, name: task.name })
  )
  return {
    label: task.name,
    source: String(task.run),
    local: task.layer === undefined
      ? Effect.succeed({
        run: task.run,
        provide: identity as (effect: Effect.Effect<A, E, any>) => Effect.Effect<A, E>,
        inline: false
      })
      : Effect.map(Layer.build(task.layer).pipe(Effect.orDie), (context) => ({
        run: task.run,
        provide: (effect: Effect.Effect<A, E, any>) => Effect.provideContext(effect, context) as Effect.Effect<A, E>,
        inline: false
      })),
    ship: shipped,
    encodeItem: isTransparent(task.payload) ? identity : Schema.encodeUnknownSync(task.payload),
    mayShare: mayContainBinary(Schema.toEncoded(task.payload)),
    decodeSuccess: isTransparent(task.success) ? identity as (u: unknown) => A : Schema.decodeUnknownSync(task.success),
    decodeFailure: isTransparent(task.error) ? identity as (u: unknown) => E : Schema.decodeUnknownSync(task.error)
  }
}

export const fromFunction = <I, A>(fn: (item: I, index: number) => A | PromiseLike<A>): Work<I, A, never> => {
  const label = fn.name || "<anonymous>"
  let shipped: Effect.Effect<{ readonly key: number; readonly spec: WorkSpec }, UnshippableFunction> | undefined
  return {
    label,
    source: String(fn),
    local: Effect.succeed({
      run: fn,
      provide: identity as (effect: Effect.Effect<A, never, any>) => Effect.Effect<A>,
      inline: true
    }),
    get ship() {
      return shipped ??= Effect.suspend(() => {
        const analysis = Closure.analyze(fn)
        switch (analysis._tag) {
          case "Ok":
            return Effect.succeed(shippedAs({ kind: "fn", source: analysis.source }))
          case "Captures": {
            const names = analysis.identifiers.map((name) => `"${name}"`).join(", ")
            return Effect.fail(
              new UnshippableFunction({
                function: label,
                identifiers: analysis.identifiers,
                message:
                  `The function ${label} uses ${names} from its surroundings, so it cannot be sent to a worker. ` +
                  `Pass the value as part of each item, or define a Task with Task.make in a module.`
              })
            )
          }
          case "Native":
            return Effect.fail(
              new UnshippableFunction({
                function: label,
                identifiers: [],
                message: `The function ${label} is native or bound, so its source cannot be sent to a worker. ` +
                  `Wrap it in an arrow function, e.g. (x) => Math.sqrt(x).`
              })
            )
          case "Unparsable":
            return Effect.fail(
              new UnshippableFunction({
                function: label,
                identifiers: [],
                message: `${analysis.message}, so it cannot be sent to a worker. Define a Task with Task.make instead.`
              })
            )
        }
      }).pipe(Effect.cached, Effect.runSync)
    },
    encodeItem: identity,
    mayShare: true,
    decodeSuccess: identity as (value: unknown) => A,
    decodeFailure: identity as (value: unknown) => never
  }
}
