/**
 * The worker side of the pool protocol, shared by thread and process workers.
 * It imports nothing from `effect` until a Task needs it, so that a cold worker
 * running inline functions starts fast.
 */
import type * as Context from "effect/Context"
import type { Effect as EffectType } from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as TaskModule from "../Task.ts"
import { CANCEL, type FromWorker, type SerializedDefect, Status, type ToWorker, type WorkSpec } from "./protocol.ts"
import { transferables } from "./share.ts"

type Post = (message: FromWorker, transfer: ReadonlyArray<ArrayBuffer>) => void

/** A loaded unit of work: `run` may return a value, a promise, or (for tasks) an Effect. */
interface Loaded {
  readonly run: (item: unknown, index: number) => unknown
  readonly encodeSuccess: (value: unknown) => unknown
  readonly encodeError: (error: unknown) => unknown
  readonly effects: EffectRunner | undefined
}

/** What a task needs from `effect` to run Effects; loaded only for tasks. */
interface EffectRunner {
  readonly isEffect: (u: unknown) => boolean
  readonly fork: (effect: unknown) => Fiber.Fiber<unknown, unknown>
  /** The typed error of a failed Exit, `interrupted`, or a defect. */
  readonly classify: (exit: Exit.Exit<unknown, unknown>) =>
    | { readonly _tag: "Failure"; readonly error: unknown }
    | { readonly _tag: "Interrupted" }
    | { readonly _tag: "Defect"; readonly defect: unknown }
}

interface BatchOut {
  values: Array<unknown>
  status: Uint8Array | undefined
  interrupted: boolean
}

export const serializeDefect = (defect: unknown): SerializedDefect => {
  if (defect instanceof Error) {
    return { name: defect.name, message: defect.message, stack: defect.stack }
  }
  let message: string
  try {
    message = typeof defect === "string" ? defect : JSON.stringify(defect) ?? String(defect)
  } catch {
    message = String(defect)
  }
  return { name: "Error", message, stack: undefined }
}

const isThenable = (u: unknown): u is PromiseLike<unknown> =>
  u !== null && (typeof u === "object" || typeof u === "function") && typeof (u as any).then === "function"

const identity = (u: unknown) => u

const loadTask = async (task: TaskModule.Task<unknown, unknown, unknown>): Promise<Loaded> => {
  const [Effect, Exit, Cause, Schema, Layer, Scope, { isTransparent }] = await Promise.all([
    import("effect/Effect"),
    import("effect/Exit"),
    import("effect/Cause"),
    import("effect/Schema"),
    import("effect/Layer"),
    import("effect/Scope"),
    import("./transparent.ts")
  ])
  const decodePayload = isTransparent(task.payload) ? identity : Schema.decodeUnknownSync(task.payload as any)
  // The task's layer is its worker initializer: built once, for the worker's lifetime.
  let context: Context.Context<never> | undefined
  if (task.layer !== undefined) {
    const scope = Effect.runSync(Scope.make())
    context = await Effect.runPromise(Layer.buildWithScope(task.layer as any, scope) as any) as any
  }
  return {
    run: (item) => task.run(decodePayload(item)),
    encodeSuccess: isTransparent(task.success) ? identity : Schema.encodeUnknownSync(task.success as any),
    encodeError: isTransparent(task.error) ? identity : Schema.encodeUnknownSync(task.error as any),
    effects: {
      isEffect: Effect.isEffect,
      fork: (effect) =>
        Effect.runFork(
          (context === undefined ? effect : Effect.provideContext(effect as any, context)) as EffectType<
            unknown,
            unknown
          >
        ),
      classify: (exit) => {
        if (Exit.isSuccess(exit)) return { _tag: "Defect", defect: new Error("not a failure") }
        const error = Cause.findError(exit.cause)
        if (error._tag === "Success") return { _tag: "Failure", error: error.success }
        if (Cause.hasInterruptsOnly(exit.cause)) return { _tag: "Interrupted" }
        return { _tag: "Defect", defect: Cause.squash(exit.cause) }
      }
    }
  }
}

const load = async (spec: WorkSpec): Promise<Loaded> => {
  if (spec.kind === "fn") {
    const fn = new Function(`"use strict"; return (${spec.source})`)()
    return { run: fn, encodeSuccess: identity, encodeError: identity, effects: undefined }
  }
  await import(spec.url)
  const Task: typeof TaskModule = await import("../Task.ts")
  const task = Task.lookup(spec.url, spec.name)
  if (task === undefined) throw new Error(`module ${spec.url} defines no task named "${spec.name}"`)
  return loadTask(task)
}

/**
 * Runs a batch item by item. Plain values are handled synchronously; promises
 * are awaited; Effects run on a fiber that a cancel message can interrupt.
 */
const runBatchItems = async (
  work: Loaded,
  items: ReadonlyArray<unknown>,
  start: number,
  failFast: boolean,
  cancelled: () => boolean,
  setFiber: (fiber: Fiber.Fiber<unknown, unknown> | undefined) => void
): Promise<BatchOut> => {
  // Values are pushed so that the array stays packed: structured clone copies those much faster.
  const out: BatchOut = { values: [], status: undefined, interrupted: false }
  const record = (value: unknown, status: number): boolean => {
    out.values.push(value)
    if (status === Status.Success) return true
    out.status ??= new Uint8Array(items.length)
    out.status[out.values.length - 1] = status
    return false
  }
  const failure = (error: unknown): boolean => {
    try {
      return record(work.encodeError(error), Status.Failure)
    } catch (encodeFailure) {
      return record(serializeDefect(encodeFailure), Status.Defect)
    }
  }
  for (let i = 0; i < items.length; i++) {
    if (cancelled()) {
      out.interrupted = true
      return out
    }
    let ok: boolean
    try {
      let value = work.run(items[i], start + i)
      if (work.effects?.isEffect(value)) {
        const effects = work.effects
        const fiber = effects.fork(value)
        setFiber(fiber)
        const exit = await new Promise<Exit.Exit<unknown, unknown>>((resolve) => fiber.addObserver(resolve))
        setFiber(undefined)
        if (exit._tag === "Success") {
          ok = record(work.encodeSuccess(exit.value), Status.Success)
        } else {
          const classified = effects.classify(exit)
          if (classified._tag === "Interrupted") {
            out.interrupted = true
            return out
          }
          ok = classified._tag === "Failure"
            ? failure(classified.error)
            : record(serializeDefect(classified.defect), Status.Defect)
        }
      } else {
        if (isThenable(value)) value = await value
        ok = record(work.encodeSuccess(value), Status.Success)
      }
    } catch (defect) {
      ok = record(serializeDefect(defect), Status.Defect)
    }
    if (!ok && failFast) return out
  }
  return out
}

export const makeRuntime = (post: Post, control: Int32Array, threshold: number) => {
  const loaded = new Map<number, Promise<Loaded>>()
  const running = new Map<number, Fiber.Fiber<unknown, unknown>>()
  // Batches run one at a time, in arrival order; later ones wait in this chain.
  let queue: Promise<void> = Promise.resolve()

  const send = (id: number, out: BatchOut, started: number) => {
    const transfer = new Set<ArrayBuffer>()
    transferables(out.values, threshold, transfer)
    post({
      _: "done",
      id,
      values: out.values,
      status: out.status?.subarray(0, out.values.length),
      interrupted: out.interrupted,
      duration: performance.now() - started
    }, [...transfer])
  }

  const runBatch = async (message: Extract<ToWorker, { _: "run" }>) => {
    const { id } = message
    const cancelled = () => Atomics.load(control, CANCEL) === id
    if (cancelled()) {
      return post({ _: "done", id, values: [], interrupted: true, duration: 0 }, [])
    }
    let work: Loaded
    try {
      let pending = loaded.get(message.key)
      if (pending === undefined) {
        if (message.spec === undefined) throw new Error(`unknown work key ${message.key}`)
        pending = load(message.spec)
        loaded.set(message.key, pending)
        pending.catch(() => loaded.delete(message.key))
      }
      work = await pending
    } catch (error) {
      return post({ _: "loadFailed", id, message: error instanceof Error ? error.message : String(error) }, [])
    }
    const started = performance.now()
    const out = await runBatchItems(work, message.items, message.start, message.failFast, cancelled, (fiber) => {
      if (fiber === undefined) running.delete(id)
      else running.set(id, fiber)
    })
    send(id, out, started)
  }

  return (message: ToWorker) => {
    if (message._ === "cancel") {
      const fiber = running.get(message.id)
      if (fiber !== undefined) fiber.interruptUnsafe()
      return
    }
    queue = queue.then(() => runBatch(message)).catch((error) => {
      post({ _: "loadFailed", id: message.id, message: String(error) }, [])
    })
  }
}
