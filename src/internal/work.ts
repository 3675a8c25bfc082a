/** What a map runs, in a form every backend understands. */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { UnshippableFunction } from "../ParallelError.ts"
import * as Task from "../Task.ts"
import * as Closure from "./closure.ts"
import type { WorkSpec } from "./protocol.ts"

/** Runs items in this process; `sync`, when present, is a plain function that may throw or return a promise. */
export interface Local<I, A, E> {
  readonly sync: ((item: I, index: number) => A | PromiseLike<A>) | undefined
  readonly effect: (item: I, index: number) => Effect.Effect<A, E>
}

export interface Work<I, A, E> {
  readonly label: string
  /** Prepares in-process runs for one map; a task's layer is built once, in the map's scope. */
  readonly local: Effect.Effect<Local<I, A, E>, never, Scope.Scope>
  /** What a worker needs to run the items, with a key that stays the same across maps. */
  readonly ship: Effect.Effect<{ readonly key: number; readonly spec: WorkSpec }, UnshippableFunction>
  readonly encodeItem: (item: I) => unknown
  readonly decodeSuccess: (value: unknown) => A
  readonly decodeFailure: (value: unknown) => E
}

const keys = new Map<string, number>()
const keyOf = (id: string): number => {
  let key = keys.get(id)
  if (key === undefined) {
    key = keys.size + 1
    keys.set(id, key)
  }
  return key
}

export const identity = <A>(a: A) => a

const isThenable = (u: unknown): u is PromiseLike<unknown> =>
  u !== null && (typeof u === "object" || typeof u === "function") && typeof (u as any).then === "function"

export const fromTask = <P, A, E>(task: Task.Task<P, A, E>): Work<P, A, E> => {
  const spec: WorkSpec = { kind: "task", url: task.url, name: task.name }
  const shipped = Effect.succeed({ key: keyOf(`task:${task.url}#${task.name}`), spec })
  return {
    label: task.name,
    local: task.layer === undefined
      ? Effect.succeed({ sync: undefined, effect: (item: P) => Task.runOnce(task, item) })
      : Effect.map(Layer.build(task.layer).pipe(Effect.orDie), (context) => ({
        sync: undefined,
        effect: (item: P) => Effect.provideContext(Task.runOnce({ ...task, layer: undefined }, item), context)
      })),
    ship: shipped,
    encodeItem: Schema.encodeUnknownSync(task.payload as Schema.Codec<P, unknown>),
    decodeSuccess: Schema.decodeUnknownSync(task.success as Schema.Codec<A, unknown>),
    decodeFailure: Schema.decodeUnknownSync(task.error as Schema.Codec<E, unknown>)
  }
}

export const fromFunction = <I, A>(fn: (item: I, index: number) => A | PromiseLike<A>): Work<I, A, never> => {
  const label = fn.name || "<anonymous>"
  let shipped: Effect.Effect<{ readonly key: number; readonly spec: WorkSpec }, UnshippableFunction> | undefined
  return {
    label,
    local: Effect.succeed({
      sync: fn,
      effect: (item, index) =>
        Effect.suspend(() => {
          const out = fn(item, index)
          return isThenable(out) ? Effect.promise(() => out) : Effect.succeed(out)
        })
    }),
    get ship() {
      return shipped ??= Effect.suspend(() => {
        const analysis = Closure.analyze(fn)
        switch (analysis._tag) {
          case "Ok":
            return Effect.succeed({
              key: keyOf(`fn:${analysis.source}`),
              spec: { kind: "fn", source: analysis.source } as const
            })
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
    decodeSuccess: identity as (value: unknown) => A,
    decodeFailure: identity as (value: unknown) => never
  }
}
