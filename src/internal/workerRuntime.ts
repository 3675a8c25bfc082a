/**
 * The worker side of the pool protocol, shared by thread and process workers.
 * It imports nothing from `effect` until a Task needs it, so that a cold worker
 * running inline functions starts fast.
 */
import type * as Context from "effect/Context"
import type { Effect as EffectType } from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as TaskModule from "../Task.ts"
import { CANCEL, type FromWorker, type SerializedDefect, Status, type ToWorker, type WorkSpec } from "./protocol.ts"
import { transferables } from "./share.ts"

type Post = (message: FromWorker, transfer: ReadonlyArray<ArrayBuffer>) => void

type Loaded =
  | { readonly kind: "fn"; readonly fn: (item: unknown, index: number) => unknown }
  | { readonly kind: "task"; readonly task: TaskModule.Task<unknown, unknown, unknown>; readonly run: RunTask }

type RunTask = (
  items: ReadonlyArray<unknown>,
  failFast: boolean,
  cancelled: () => boolean
) => { readonly fiber: Fiber.Fiber<void>; readonly out: BatchOut }

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

const markStatus = (out: BatchOut, length: number, index: number, status: number) => {
  out.status ??= new Uint8Array(length)
  out.status[index] = status
}

const isThenable = (u: unknown): u is PromiseLike<unknown> =>
  u !== null && (typeof u === "object" || typeof u === "function") && typeof (u as any).then === "function"

const loadTaskRunner = async (task: TaskModule.Task<unknown, unknown, unknown>): Promise<RunTask> => {
  const [Effect, Exit, Cause, Schema, Layer, Scope] = await Promise.all([
    import("effect/Effect"),
    import("effect/Exit"),
    import("effect/Cause"),
    import("effect/Schema"),
    import("effect/Layer"),
    import("effect/Scope")
  ])
  const decodePayload = Schema.decodeUnknownSync(task.payload as any)
  const encodeSuccess = Schema.encodeUnknownSync(task.success as any)
  const encodeError = Schema.encodeUnknownSync(task.error as any)
  // The task's layer is its worker initializer: built once, for the worker's lifetime.
  let context: Context.Context<never> | undefined
  if (task.layer !== undefined) {
    const scope = Effect.runSync(Scope.make())
    context = await Effect.runPromise(Layer.buildWithScope(task.layer as any, scope) as any) as any
  }
  return (items, failFast, cancelled) => {
    const out: BatchOut = { values: [], status: undefined, interrupted: false }
    const one = (item: unknown, index: number) =>
      Effect.suspend(() => {
        const result = task.run(decodePayload(item))
        return Effect.isEffect(result) ? result : Effect.succeed(result)
      }).pipe(
        Effect.map(encodeSuccess),
        Effect.exit,
        Effect.map((exit): boolean => {
          if (Exit.isSuccess(exit)) {
            out.values[index] = exit.value
            return true
          }
          const error = Cause.findError(exit.cause)
          if (error._tag === "Success") {
            try {
              out.values[index] = encodeError(error.success)
              markStatus(out, items.length, index, Status.Failure)
            } catch (encodeFailure) {
              out.values[index] = serializeDefect(encodeFailure)
              markStatus(out, items.length, index, Status.Defect)
            }
            return false
          }
          if (Cause.hasInterruptsOnly(exit.cause)) {
            out.interrupted = true
            return false
          }
          out.values[index] = serializeDefect(Cause.squash(exit.cause))
          markStatus(out, items.length, index, Status.Defect)
          return false
        })
      )
    const loop = Effect.gen(function*() {
      for (let i = 0; i < items.length; i++) {
        if (cancelled()) {
          out.interrupted = true
          out.values.length = i
          return
        }
        const ok = yield* one(items[i], i)
        if (!ok && (failFast || out.interrupted)) {
          out.values.length = i + 1
          return
        }
      }
    })
    const program = context === undefined ? loop : Effect.provideContext(loop, context)
    return { fiber: Effect.runFork(program as typeof loop as EffectType<void>), out }
  }
}

const load = async (spec: WorkSpec): Promise<Loaded> => {
  if (spec.kind === "fn") {
    return { kind: "fn", fn: new Function(`"use strict"; return (${spec.source})`)() }
  }
  await import(spec.url)
  const Task: typeof TaskModule = await import("../Task.ts")
  const task = Task.lookup(spec.url, spec.name)
  if (task === undefined) throw new Error(`module ${spec.url} defines no task named "${spec.name}"`)
  return { kind: "task", task, run: await loadTaskRunner(task) }
}

/** Runs a synchronous function over a batch; falls back to awaiting when it returns promises. */
const runFunction = async (
  fn: (item: unknown, index: number) => unknown,
  items: ReadonlyArray<unknown>,
  start: number,
  failFast: boolean,
  cancelled: () => boolean
): Promise<BatchOut> => {
  // Values are pushed so that the array stays packed: structured clone copies those much faster.
  const out: BatchOut = { values: [], status: undefined, interrupted: false }
  for (let i = 0; i < items.length; i++) {
    if (cancelled()) {
      out.interrupted = true
      out.values.length = i
      return out
    }
    try {
      let value = fn(items[i], start + i)
      if (isThenable(value)) value = await value
      out.values.push(value)
    } catch (defect) {
      out.values.push(serializeDefect(defect))
      markStatus(out, items.length, i, Status.Defect)
      if (failFast) {
        out.values.length = i + 1
        return out
      }
    }
  }
  return out
}

export const makeRuntime = (post: Post, control: Int32Array, threshold: number) => {
  const loaded = new Map<number, Promise<Loaded>>()
  const running = new Map<number, Fiber.Fiber<void>>()
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
    if (work.kind === "fn") {
      return send(id, await runFunction(work.fn, message.items, message.start, message.failFast, cancelled), started)
    }
    const { fiber, out } = work.run(message.items, message.failFast, cancelled)
    running.set(id, fiber)
    await new Promise<void>((resolve) => fiber.addObserver(() => resolve()))
    running.delete(id)
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
