// @ts-check
/**
 * The worker side of the pool protocol, shared by thread and process workers.
 *
 * Plain JavaScript on purpose: a worker that loads any TypeScript pays for
 * Node's type stripper (~50 ms per cold worker here). It imports nothing from
 * `effect` until a Task needs it, so that workers running inline functions
 * start as fast as a hand-written one.
 *
 * @import { Fiber } from "effect/Fiber"
 * @import { Exit } from "effect/Exit"
 * @import { FromWorker, SerializedDefect, ToWorker, WorkSpec } from "./protocol.ts"
 */
import { isThenable, mapBuffers, reviveRefs } from "./buffers.js"
import { CANCEL, Status } from "./wire.js"

/**
 * A loaded unit of work: `run` may return a value, a promise, or (for tasks) an Effect.
 * @typedef {{
 *   readonly run: (item: unknown, index: number) => unknown
 *   readonly encodeSuccess: (value: unknown) => unknown
 *   readonly encodeError: (error: unknown) => unknown
 *   readonly effects: EffectRunner | undefined
 * }} Loaded
 */

/**
 * What a task needs from `effect` to run Effects; loaded only for tasks.
 * @typedef {{
 *   readonly isEffect: (u: unknown) => boolean
 *   readonly fork: (effect: unknown, report: (data: unknown) => void) => Fiber<unknown, unknown>
 *   readonly classify: (exit: Exit<unknown, unknown>) =>
 *     | { readonly _tag: "Failure"; readonly error: unknown }
 *     | { readonly _tag: "Interrupted" }
 *     | { readonly _tag: "Defect"; readonly defect: unknown }
 * }} EffectRunner
 */

/** @typedef {{ values: Array<unknown>, status: Uint8Array | undefined, interrupted: boolean }} BatchOut */

/**
 * What a batch needs from its worker besides the items.
 * @typedef {{
 *   readonly cancelled: () => boolean
 *   readonly setFiber: (fiber: Fiber<unknown, unknown> | undefined) => void
 *   readonly timeout: number | undefined
 *   readonly tick: (index: number, out: BatchOut) => void
 *   readonly report: (index: number, data: unknown) => void
 *   readonly yieldMillis: number | undefined
 * }} BatchContext
 */

/**
 * @param {unknown} defect
 * @returns {SerializedDefect}
 */
const serializeDefect = (defect) => {
  if (defect instanceof Error) {
    return { name: defect.name, message: defect.message, stack: defect.stack }
  }
  let message
  try {
    message = typeof defect === "string" ? defect : JSON.stringify(defect) ?? String(defect)
  } catch {
    message = String(defect)
  }
  return { name: "Error", message, stack: undefined }
}

/** @param {unknown} u */
const identity = (u) => u

/**
 * Big non-shared buffers in `value`, to be moved rather than copied.
 * @param {unknown} value
 * @param {number} threshold
 * @param {Set<ArrayBuffer>} into
 */
const transferables = (value, threshold, into) =>
  mapBuffers(value, threshold, (buffer) => {
    into.add(buffer)
    return buffer
  })

/** The Task registry that `Task.make` fills; read through globalThis so that this file need not import Task.ts. */
const taskRegistry =
  () => /** @type {Map<string, import("../Task.ts").Task<unknown, unknown, unknown>> | undefined} */ (
    /** @type {any} */ (globalThis)[Symbol.for("effect-joblib/Task/registry")]
  )

/**
 * @param {import("../Task.ts").Task<unknown, unknown, unknown>} task
 * @returns {Promise<Loaded>}
 */
const loadTask = async (task) => {
  const [Effect, Exit, Cause, Schema, Layer, Scope, { isTransparent }, { TaskReporter }] = await Promise.all([
    import("effect/Effect"),
    import("effect/Exit"),
    import("effect/Cause"),
    import("effect/Schema"),
    import("effect/Layer"),
    import("effect/Scope"),
    import("./transparent.ts"),
    import("./report.ts")
  ])
  const decodePayload = isTransparent(task.payload)
    ? identity
    : Schema.decodeUnknownSync(/** @type {any} */ (task.payload))
  // The task's layer is its worker initializer: built once, for the worker's lifetime.
  /** @type {any} */
  let context
  if (task.layer !== undefined) {
    const scope = Effect.runSync(Scope.make())
    context = await Effect.runPromise(/** @type {any} */ (Layer.buildWithScope(/** @type {any} */ (task.layer), scope)))
  }
  return {
    run: (item) => task.run(decodePayload(item)),
    encodeSuccess: isTransparent(task.success) ? identity : Schema.encodeUnknownSync(/** @type {any} */ (task.success)),
    encodeError: isTransparent(task.error) ? identity : Schema.encodeUnknownSync(/** @type {any} */ (task.error)),
    effects: {
      isEffect: Effect.isEffect,
      fork: (effect, report) => {
        const reporting = Effect.provideService(/** @type {any} */ (effect), TaskReporter, report)
        return Effect.runFork(
          /** @type {any} */ (context === undefined ? reporting : Effect.provideContext(reporting, context))
        )
      },
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

/**
 * @param {WorkSpec} spec
 * @returns {Promise<Loaded>}
 */
const load = async (spec) => {
  if (spec.kind === "fn") {
    const fn = new Function(`"use strict"; return (${spec.source})`)()
    return { run: fn, encodeSuccess: identity, encodeError: identity, effects: undefined }
  }
  await import(spec.url)
  const task = taskRegistry()?.get(`${spec.url}#${spec.name}`)
  if (task === undefined) throw new Error(`module ${spec.url} defines no task named "${spec.name}"`)
  return loadTask(task)
}

/** @param {number} ms */
const sleep = (ms) => {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer
  const promise = new Promise((resolve) => (timer = setTimeout(resolve, ms)))
  return { promise, cancel: () => clearTimeout(timer) }
}

/** Resolves to `TIMED_OUT` if `promise` takes longer than `ms`. */
const TIMED_OUT = Symbol("timedOut")

/**
 * Runs a batch item by item. Plain values are handled synchronously; promises
 * are awaited; Effects run on a fiber that a cancel message or the item's
 * timeout can interrupt. A synchronous item that overruns its timeout cannot
 * be stopped here: the pool terminates the worker.
 *
 * @param {Loaded} work
 * @param {ReadonlyArray<unknown>} items
 * @param {number} start
 * @param {boolean} failFast
 * @param {BatchContext} context
 * @returns {Promise<BatchOut>}
 */
const runBatchItems = async (work, items, start, failFast, context) => {
  const { cancelled, setFiber, timeout, yieldMillis } = context
  let lastYield = yieldMillis === undefined ? 0 : performance.now()
  // The clock is read every `stride` items: reading it costs more than a tiny task, so the stride grows
  // while items are quick and shrinks back when they are slow.
  let lastCheck = lastYield
  let stride = 1
  let countdown = 1
  // Values are pushed so that the array stays packed: structured clone copies those much faster.
  /** @type {BatchOut} */
  const out = { values: [], status: undefined, interrupted: false }
  /**
   * @param {unknown} value
   * @param {number} status
   */
  const record = (value, status) => {
    out.values.push(value)
    if (status === Status.Success) return true
    out.status ??= new Uint8Array(items.length)
    out.status[out.values.length - 1] = status
    return false
  }
  /** @param {unknown} error */
  const failure = (error) => {
    try {
      return record(work.encodeError(error), Status.Failure)
    } catch (encodeFailure) {
      return record(serializeDefect(encodeFailure), Status.Defect)
    }
  }
  for (let i = 0; i < items.length; i++) {
    // A process learns of a cancel only from a message, so a long synchronous batch lets messages in now and then.
    if (yieldMillis !== undefined && --countdown === 0) {
      const now = performance.now()
      if (now - lastYield > yieldMillis) {
        await new Promise((resolve) => setImmediate(resolve))
        lastYield = performance.now()
        stride = Math.max(1, stride >> 1)
      } else if (now - lastCheck < yieldMillis / 8 && stride < 1024) {
        stride *= 2
      }
      lastCheck = now
      countdown = stride
    }
    if (cancelled()) {
      out.interrupted = true
      return out
    }
    if (timeout !== undefined) context.tick(i, out)
    const began = timeout === undefined ? 0 : performance.now()
    const overran = () => timeout !== undefined && performance.now() - began > timeout
    let ok
    try {
      // Not a direct call: V8's Maglev would inline the user's function into this loop, where a hot numeric
      // loop of theirs ran up to 1.7× slower (boxed doubles) than on the main thread.
      let value = Reflect.apply(work.run, undefined, [items[i], start + i])
      const effects = work.effects
      if (effects !== undefined && effects.isEffect(value)) {
        const fiber = effects.fork(value, (data) => context.report(i, data))
        setFiber(fiber)
        let timedOut = false
        const timer = timeout === undefined ? undefined : setTimeout(() => {
          timedOut = true
          fiber.interruptUnsafe()
        }, timeout)
        /** @type {Exit<unknown, unknown>} */
        const exit = await new Promise((resolve) => fiber.addObserver(resolve))
        clearTimeout(timer)
        setFiber(undefined)
        if (timedOut) {
          ok = record(performance.now() - began, Status.Timeout)
        } else if (exit._tag === "Success") {
          ok = overran()
            ? record(performance.now() - began, Status.Timeout)
            : record(work.encodeSuccess(exit.value), Status.Success)
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
        if (isThenable(value)) {
          if (timeout === undefined) value = await value
          else {
            const deadline = sleep(timeout)
            value = await Promise.race([value, deadline.promise.then(() => TIMED_OUT)])
            deadline.cancel()
          }
        }
        ok = value === TIMED_OUT || overran()
          ? record(performance.now() - began, Status.Timeout)
          : record(work.encodeSuccess(value), Status.Success)
      }
    } catch (defect) {
      ok = record(serializeDefect(defect), Status.Defect)
    }
    if (!ok && failFast) return out
  }
  return out
}

/**
 * Makes the message handler of a worker.
 *
 * @param {(message: FromWorker, transfer: ReadonlyArray<ArrayBuffer>) => void} post
 * @param {Int32Array} control
 * @param {number} threshold
 * @param {() => number} memory bytes this worker holds, reported after each batch for the pool's memory guard
 * @param {number | undefined} yieldMillis how often a batch lets messages in, for workers without shared memory
 * @returns {(message: ToWorker) => void}
 */
export const makeRuntime = (post, control, threshold, memory, yieldMillis) => {
  /** @type {Map<number, Promise<Loaded>>} */
  const loaded = new Map()
  /** @type {Map<number, Fiber<unknown, unknown>>} */
  const running = new Map()
  /** Buffers sent once per process (see the `buffers` message). */
  /** @type {Map<number, ArrayBuffer>} */
  const buffers = new Map()
  /** Batches cancelled by message; the control word holds only the latest. */
  /** @type {Set<number>} */
  const cancelledIds = new Set()
  // Batches run one at a time, in arrival order; later ones wait in this chain.
  /** @type {Promise<void>} */
  let queue = Promise.resolve()

  /**
   * Results of `out` from item `from` on, with their big buffers to move.
   * @param {BatchOut} out
   * @param {number} from
   */
  const partial = (out, from) => {
    const values = from === 0 ? out.values : out.values.slice(from)
    /** @type {Set<ArrayBuffer>} */
    const transfer = new Set()
    transferables(values, threshold, transfer)
    return { values, status: out.status?.slice(from, out.values.length), transfer: [...transfer] }
  }

  /** @param {Extract<ToWorker, { _: "run" }>} message */
  const runBatch = async (message) => {
    const { id } = message
    const cancelled = () => Atomics.load(control, CANCEL) === id || cancelledIds.has(id)
    if (cancelled()) {
      cancelledIds.delete(id)
      return post({ _: "done", id, values: [], interrupted: true, duration: 0, memory: memory() }, [])
    }
    /** @type {Loaded} */
    let work
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
    const items = message.refs
      ? /** @type {ReadonlyArray<unknown>} */ (reviveRefs(message.items, buffers))
      : message.items
    const started = performance.now()
    let sent = 0
    const out = await runBatchItems(work, items, message.start, message.failFast, {
      cancelled,
      setFiber: (fiber) => {
        if (fiber === undefined) running.delete(id)
        else running.set(id, fiber)
      },
      timeout: message.timeout,
      tick: (index, out) => {
        const { values, status, transfer } = partial(out, sent)
        sent = out.values.length
        post({ _: "tick", id, index, values, status }, transfer)
      },
      report: (index, data) => post({ _: "progress", id, index, data }, []),
      yieldMillis
    })
    cancelledIds.delete(id)
    const { values, status, transfer } = partial(out, sent)
    post({
      _: "done",
      id,
      values,
      status,
      interrupted: out.interrupted,
      duration: performance.now() - started,
      memory: memory()
    }, transfer)
  }

  return (message) => {
    switch (message._) {
      case "cancel": {
        Atomics.store(control, CANCEL, message.id)
        cancelledIds.add(message.id)
        running.get(message.id)?.interruptUnsafe()
        return
      }
      case "buffers": {
        for (const [bufferId, buffer] of message.entries) buffers.set(bufferId, buffer)
        return
      }
      case "release": {
        for (const bufferId of message.ids) buffers.delete(bufferId)
        return
      }
    }
    queue = queue.then(() => runBatch(message)).catch((error) => {
      post({ _: "loadFailed", id: message.id, message: String(error) }, [])
    })
  }
}
