/**
 * A `Task` is a named unit of work described with Schema and defined in an
 * ordinary module. Every backend can run it: worker threads import the module
 * that defined it, so there is no worker entry file to write.
 *
 * Keep task modules free of top-level side effects, or guard them with
 * `if (import.meta.main)`: a worker imports the module to find the task.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { callerFrame } from "./internal/caller.ts"
import * as TaskLoader from "./internal/parallel/taskLoader.ts"

/**
 * @category type ids
 * @since 0.1.0
 */
export const TypeId = "~effect-joblib/Task" as const

/**
 * A task taking a `Payload` and succeeding with `A` or failing with `E`. The
 * services its `run` needs are provided by its own `layer`, built once per worker.
 *
 * @category models
 * @since 0.1.0
 */
export interface Task<in out Payload, in out A, in out E = never> extends Pipeable {
  /**
   * A call of the task, as joblib's `delayed(f)(a, b)`: the task's arguments, for {@link Parallel.all}. A
   * tuple payload is called with its elements (`Fit(x, y)`), any other with the payload itself.
   */
  (...args: Args<Payload>): Call<Payload, A, E>
  readonly [TypeId]: typeof TypeId
  readonly name: string
  /** The `file:` URL of the module that defined the task; workers import it. */
  readonly url: string
  readonly payload: Schema.Codec<Payload, unknown>
  readonly success: Schema.Codec<A, unknown>
  readonly error: Schema.Codec<E, unknown>
  readonly run: (payload: Payload) => Effect.Effect<A, E, any> | A
  readonly layer: Layer.Layer<any, unknown> | undefined
}

/**
 * How a task with payload `Payload` is called: a tuple payload with its elements, any other as one argument.
 *
 * @category models
 * @since 0.6.0
 */
export type Args<Payload> = Payload extends readonly [unknown, ...Array<unknown>] ? Payload : [payload: Payload]

/**
 * One call of a task with its payload: what `Parallel.all` runs, as joblib's `delayed(f)(…)`.
 *
 * **Example** (Calls of two tasks)
 *
 * ```ts
 * import { Schema } from "effect"
 * import { Task } from "effect-joblib"
 *
 * const Fit = Task.make("Fit", {
 *   payload: Schema.Tuple([Schema.Number, Schema.Number]),
 *   success: Schema.Number,
 *   run: ([x, y]) => x * y
 * })
 * const call: Task.Call<readonly [number, number], number, never> = Fit(2, 3)
 * ```
 *
 * @category models
 * @since 0.6.0
 */
export interface Call<out Payload, out A, out E> {
  readonly _tag: "Call"
  readonly task: Task<any, any, any>
  readonly payload: Payload
  /** Phantom: what the call succeeds with. */
  readonly "~A"?: (() => A) | undefined
  /** Phantom: what the call fails with. */
  readonly "~E"?: (() => E) | undefined
}

/**
 * Tells whether a value is a {@link Call}.
 *
 * @category guards
 * @since 0.6.0
 */
export const isCall = (u: unknown): u is Call<unknown, unknown, unknown> =>
  Predicate.hasProperty(u, "_tag") && u._tag === "Call" && Predicate.hasProperty(u, "task") && isTask(u.task)

/**
 * The options of {@link make}. `layer` is required exactly when `run` needs services; a task whose `run` needs
 * none may still give one that sets up each worker, such as a tracer exporting its spans.
 *
 * @category models
 * @since 0.1.0
 */
export type Options<P extends Schema.Top, S extends Schema.Top, F extends Schema.Top, R> =
  & {
    readonly payload: P
    readonly success: S
    readonly error?: F | undefined
    readonly run: (payload: P["Type"]) => Effect.Effect<S["Type"], F["Type"], R> | S["Type"]
    /** The module URL, `import.meta.url`. Found from the call site when left out. */
    readonly url?: string | undefined
  }
  & ([R] extends [never]
    // A layer providing no service its run names still sets up each worker: a tracer (OTLP), a logger.
    ? { readonly layer?: Layer.Layer<never, unknown> | undefined }
    : { readonly layer: Layer.Layer<R, unknown> })

const registryKey = Symbol.for("effect-joblib/Task/registry")
const registry: Map<string, Task<any, any, any>> = ((globalThis as any)[registryKey] ??= new Map())
/** Where each registered task was defined (its Task.make call's file, line and column). */
const sites: Map<string, string> = ((globalThis as any)[Symbol.for("effect-joblib/Task/sites")] ??= new Map())

const keyOf = (url: string, name: string) => `${url}#${name}`

TaskLoader.install()

// A task is a function, so that `Fit(x, y)` is its call; the prototype keeps Function's own members.
const TaskProto = Object.setPrototypeOf({
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  }
}, Function.prototype)

/**
 * Defines a task. Its name must be unique within its module.
 *
 * **Example** (A task with a typed error)
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Task } from "effect-joblib"
 *
 * class Negative extends Schema.TaggedError<Negative>()("Negative", { value: Schema.Number }) {}
 *
 * export const SquareRoot = Task.make("SquareRoot", {
 *   payload: Schema.Number,
 *   success: Schema.Number,
 *   error: Negative,
 *   run: (x) => x < 0 ? Effect.fail(new Negative({ value: x })) : Effect.succeed(Math.sqrt(x))
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <P extends Schema.Top, S extends Schema.Top, F extends Schema.Top = Schema.Never, R = never>(
  name: string,
  options: Options<P, S, F, R>
): Task<P["Type"], S["Type"], F["Type"]> => {
  const frame = callerFrame(make)
  const url = options.url ?? frame?.url
  if (url === undefined) {
    throw new globalThis.Error(`Task.make("${name}"): cannot tell the defining module; pass { url: import.meta.url }`)
  }
  const isTuple = Schema.isSchema(options.payload) && options.payload.ast._tag === "Arrays" &&
    options.payload.ast.rest.length === 0
  const task = function(...args: ReadonlyArray<unknown>) {
    return { _tag: "Call", task, payload: isTuple ? args : args[0] }
  } as unknown as Task<P["Type"], S["Type"], F["Type"]>
  Object.setPrototypeOf(task, TaskProto)
  const value = (v: unknown) => ({ value: v, enumerable: true })
  Object.defineProperties(task, {
    name: value(name),
    url: value(url),
    payload: value(options.payload),
    success: value(options.success),
    error: value(options.error ?? Schema.Never),
    run: value(options.run),
    layer: value(options.layer)
  })
  const key = keyOf(url, name)
  const site = frame === undefined ? undefined : `${frame.url}:${frame.line}:${frame.column}`
  // The same definition evaluated again is not a second task: a module loaded twice in one process (by a test
  // runner's loader and by Node's, as when a Remote worker runs in a vitest test) defines its tasks twice.
  if (registry.has(key) && (site === undefined || sites.get(key) !== site)) {
    throw new globalThis.Error(`Task.make("${name}"): ${url} already defines a task of that name`)
  }
  registry.set(key, task)
  if (site !== undefined) sites.set(key, site)
  return task
}

/**
 * Tells whether a value is a {@link Task}.
 *
 * **Example** (Telling a task from an inline function)
 *
 * ```ts
 * import { Task } from "effect-joblib"
 *
 * Task.isTask((x: number) => x) // false
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isTask = (u: unknown): u is Task<any, any, any> => Predicate.hasProperty(u, TypeId)

/**
 * Finds a task defined by a module that has been imported.
 *
 * **Example** (Looking up a task by module and name)
 *
 * ```ts
 * import { Task } from "effect-joblib"
 *
 * const task = Task.lookup(import.meta.url, "SquareRoot") // undefined until defined
 * ```
 *
 * @category utilities
 * @since 0.1.0
 */
export const lookup = (url: string, name: string): Task<any, any, any> | undefined => registry.get(keyOf(url, name))

/**
 * Every Task defined so far in this process, in definition order. Remote
 * workers use it to find the Tasks of the modules they were given.
 *
 * **Example** (Listing the tasks of a module)
 *
 * ```ts
 * import { Task } from "effect-joblib"
 *
 * const names = Task.registered().map((task) => task.name)
 * ```
 *
 * @category utilities
 * @since 0.4.0
 */
export const registered = (): ReadonlyArray<Task<any, any, any>> => Array.from(registry.values())

/**
 * Runs a task's `run` once, in the current fiber, with its layer provided.
 * Parallel backends call this; it is handy in tests too.
 *
 * **Example** (Running a task directly)
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Task } from "effect-joblib"
 *
 * const Double = Task.make("Double", { payload: Schema.Number, success: Schema.Number, run: (x) => x * 2 })
 * const four = Effect.runSync(Task.runOnce(Double, 2))
 * ```
 *
 * @category utilities
 * @since 0.1.0
 */
export const runOnce = <P, A, E>(task: Task<P, A, E>, payload: P): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    const out = task.run(payload)
    const effect: Effect.Effect<A, E, any> = Effect.isEffect(out) ? out : Effect.succeed(out)
    return (task.layer === undefined ? effect : Effect.provide(effect, task.layer)) as Effect.Effect<A, E>
  })
