// @ts-check
/**
 * The worker side of the pool protocol, shared by thread and process workers, as one self-contained
 * function. Workers are started from its source text (see {@link workerSource}), so that no file of
 * this package needs to be on disk where the worker starts: an installed package, a single-file bundle
 * and a test runner's transformed copy all start their workers the same way. The main thread calls the
 * same function for the helpers both sides share (buffer walking, wire constants).
 *
 * Nothing inside `workerModule` may refer to anything outside it, not even `import()`: a test runner
 * rewrites that. The host passes what it needs in.
 *
 * @import { Fiber } from "effect/Fiber"
 * @import { Exit } from "effect/Exit"
 * @import { FromWorker, SerializedDefect, ToWorker, WorkSpec } from "./protocol.ts"
 */

/**
 * What the code that starts a worker provides.
 * @typedef {{ readonly importModule: (url: string) => Promise<unknown> }} Host
 */

/**
 * @param {Host} host
 */
export function workerModule(host) {
  /** Item statuses in a `done` or `tick` message. */
  const Status = /** @type {const} */ ({ Success: 0, Failure: 1, Defect: 2, Timeout: 3, InlineEffect: 4 })

  /** Slot of a worker's control array holding the id of a batch to cancel. */
  const CANCEL = 0

  /** The key of a reference to a buffer sent once per process with a `buffers` message. */
  const REF = "effect-joblib/ref"

  /** Where the Task registry and loader live, shared by every copy of this library in the thread. */
  const TASK_REGISTRY = Symbol.for("effect-joblib/Task/registry")
  const TASK_LOADER = Symbol.for("effect-joblib/Task/loader")
  const WORKER_GUARD = Symbol.for("effect-joblib/worker")
  const globals = /** @type {any} */ (globalThis)

  /**
   * Set while a worker imports a task module, so that a program the module starts at its top level
   * (no `import.meta.main` guard) fails fast instead of starting workers of its own.
   * @type {{ importing: string | undefined, report: (message: string) => void }}
   */
  const guard = { importing: undefined, report: () => {} }

  /** Containers nested deeper than this are not walked. */
  const MAX_DEPTH = 8

  /** @param {object} value */
  const isPlainObject = (value) => {
    const proto = Object.getPrototypeOf(value)
    return proto === Object.prototype || proto === null
  }

  /**
   * Rebuilds `value` with every big non-shared buffer replaced by `replace(buffer)`,
   * copying containers only along changed paths; returns `value` itself when nothing changed.
   * Plain objects, arrays and Maps are walked; other values are left as they are.
   *
   * @param {unknown} value
   * @param {number} threshold
   * @param {(buffer: ArrayBuffer, view: ArrayBufferView | undefined) => unknown} replace
   *   returns a buffer to view in place of `buffer`, or any other value to stand in for the whole view
   * @param {number} [depth]
   * @param {boolean} [shared] also replace buffers in shared memory
   * @returns {unknown}
   */
  const mapBuffers = (value, threshold, replace, depth = 0, shared = false) => {
    if (value === null || typeof value !== "object" || depth > MAX_DEPTH) return value
    if (ArrayBuffer.isView(value)) {
      const buffer = /** @type {ArrayBuffer} */ (value.buffer)
      if (value.byteLength < threshold || !(shared || buffer instanceof ArrayBuffer)) return value
      const replaced = replace(buffer, value)
      if (replaced === buffer) return value
      if (!(replaced instanceof ArrayBuffer || replaced instanceof SharedArrayBuffer)) return replaced
      const Ctor = /** @type {new(buffer: ArrayBufferLike, offset: number, length: number) => ArrayBufferView} */ (
        value.constructor
      )
      const length = value instanceof DataView ? value.byteLength : /** @type {{ length: number }} */ (
        /** @type {unknown} */ (value)
      ).length
      return new Ctor(replaced, value.byteOffset, length)
    }
    if (value instanceof ArrayBuffer || (shared && value instanceof SharedArrayBuffer)) {
      return value.byteLength < threshold ? value : replace(/** @type {ArrayBuffer} */ (value), undefined)
    }
    if (Array.isArray(value)) {
      /** @type {Array<unknown> | undefined} */
      let out
      for (let i = 0; i < value.length; i++) {
        const item = value[i]
        const mapped = mapBuffers(item, threshold, replace, depth + 1, shared)
        if (mapped !== item) (out ??= value.slice())[i] = mapped
      }
      return out ?? value
    }
    if (value instanceof Map) {
      let changed = false
      const entries = Array.from(value, ([k, v]) => {
        const mapped = mapBuffers(v, threshold, replace, depth + 1, shared)
        if (mapped !== v) changed = true
        return /** @type {const} */ ([k, mapped])
      })
      return changed ? new Map(entries) : value
    }
    if (isPlainObject(value)) {
      const record = /** @type {Record<string, unknown>} */ (value)
      /** @type {Record<string, unknown> | undefined} */
      let out
      for (const key of Object.keys(record)) {
        const item = record[key]
        const mapped = mapBuffers(item, threshold, replace, depth + 1, shared)
        if (mapped !== item) (out ??= { ...record })[key] = mapped
      }
      return out ?? value
    }
    return value
  }

  /**
   * @param {unknown} u
   * @returns {u is PromiseLike<unknown>}
   */
  const isThenable = (u) =>
    u !== null && (typeof u === "object" || typeof u === "function") &&
    typeof (/** @type {any} */ (u).then) === "function"

  /** View constructors a buffer reference may name; anything else is refused. */
  const VIEWS = /** @type {Record<string, new(buffer: ArrayBuffer, offset: number, length: number) => unknown>} */ ({
    Int8Array,
    Uint8Array,
    Uint8ClampedArray,
    Int16Array,
    Uint16Array,
    Int32Array,
    Uint32Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
    DataView,
    ...(typeof (/** @type {any} */ (globalThis).Float16Array) === "function"
      ? { Float16Array: /** @type {any} */ (globalThis).Float16Array }
      : {})
  })

  /**
   * A stand-in for a big buffer that a process worker already holds.
   * @param {number} id
   * @param {ArrayBufferView | undefined} view the view to rebuild, or undefined for the whole ArrayBuffer
   */
  const makeRef = (id, view) =>
    view === undefined
      ? { [REF]: id, type: "ArrayBuffer", offset: 0, length: 0 }
      : {
        [REF]: id,
        type: view.constructor.name,
        offset: view.byteOffset,
        length: view instanceof DataView ? view.byteLength : /** @type {{ length: number }} */ (
          /** @type {unknown} */ (view)
        ).length
      }

  /**
   * Replaces the buffer references in `value` (see {@link makeRef}) with views over the buffers held.
   * @param {unknown} value
   * @param {ReadonlyMap<number, ArrayBuffer>} held
   * @param {number} [depth]
   * @returns {unknown}
   */
  const reviveRefs = (value, held, depth = 0) => {
    if (value === null || typeof value !== "object" || depth > MAX_DEPTH || ArrayBuffer.isView(value)) return value
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = reviveRefs(value[i], held, depth + 1)
      return value
    }
    if (value instanceof Map) {
      for (const [k, v] of value) value.set(k, reviveRefs(v, held, depth + 1))
      return value
    }
    if (!isPlainObject(value)) return value
    const record = /** @type {Record<string, unknown>} */ (value)
    const id = record[REF]
    if (typeof id === "number") {
      const buffer = held.get(id)
      if (buffer === undefined) throw new Error(`buffer ${id} was not sent to this worker`)
      if (record.type === "ArrayBuffer") return buffer
      const View = Object.hasOwn(VIEWS, /** @type {string} */ (record.type))
        ? VIEWS[/** @type {string} */ (record.type)]
        : undefined
      if (View === undefined) throw new Error(`unknown view type ${String(record.type)}`)
      return new View(buffer, /** @type {number} */ (record.offset), /** @type {number} */ (record.length))
    }
    for (const key of Object.keys(record)) record[key] = reviveRefs(record[key], held, depth + 1)
    return value
  }

  /**
   * A loaded unit of work: `run` may return a value, a promise, or (for tasks) an Effect.
   * @typedef {{
   *   readonly run: (item: unknown, index: number) => unknown
   *   readonly encodeSuccess: (value: unknown) => unknown
   *   readonly encodeError: (error: unknown) => unknown
   *   readonly effects: EffectRunner | undefined
   *   readonly close?: (() => Promise<void>) | undefined
   * }} Loaded
   */

  /**
   * What a task needs from `effect` to run Effects; loaded only for tasks.
   * @typedef {{
   *   readonly isEffect: (u: unknown) => boolean
   *   readonly fork: (
   *     effect: unknown,
   *     report: (data: unknown) => void,
   *     parent: { readonly traceId: string; readonly spanId: string } | undefined
   *   ) => Fiber<unknown, unknown>
   *   readonly classify: (exit: Exit<unknown, unknown>) =>
   *     | { readonly _tag: "Failure"; readonly error: unknown }
   *     | { readonly _tag: "Interrupted" }
   *     | { readonly _tag: "Defect"; readonly defect: unknown }
   * }} EffectRunner
   */

  /**
   * @typedef {{
   *   values: Array<unknown>, status: Uint8Array | undefined, interrupted: boolean,
   *   timings: Array<number> | undefined
   * }} BatchOut
   */

  /**
   * What a batch needs from its worker besides the items.
   * @typedef {{
   *   readonly cancelled: () => boolean
   *   readonly setFiber: (fiber: Fiber<unknown, unknown> | undefined) => void
   *   readonly timeout: number | undefined
   *   readonly tick: (index: number, out: BatchOut) => void
   *   readonly report: (index: number, data: unknown) => void
   *   readonly yieldMillis: number | undefined
   *   readonly timings: boolean
   *   readonly parent: { readonly traceId: string; readonly spanId: string } | undefined
   *   readonly timer: Timer
   *   readonly now: (() => number) | undefined
   *   readonly defect: (defect: unknown) => unknown
   * }} BatchContext
   */

  /**
   * Calls `fire` when item `index`'s `ms` milliseconds have passed on the caller's Clock, unless the returned
   * function is called first. The in-process runner sleeps on the Clock; a worker waits for its pool's
   * `timeout` message, since the pool keeps time on the Clock of the map's caller.
   * @typedef {(index: number, ms: number, fire: () => void) => () => void} Timer
   */

  /** JavaScript's own error classes: a defect of one of these is rebuilt as the same class on the other side. */
  const BUILTIN_ERRORS = [
    "Error",
    "EvalError",
    "RangeError",
    "ReferenceError",
    "SyntaxError",
    "TypeError",
    "URIError",
    "AggregateError"
  ]

  /** Causes and aggregated errors nested deeper than this are cut. */
  const MAX_DEFECT_DEPTH = 8

  /**
   * A defect as plain data that every transport carries: name, message and stack; `builtin` when it is an
   * instance of one of JavaScript's own error classes (not a subclass), with its `cause` and, for an
   * AggregateError, its `errors`.
   *
   * @param {unknown} defect
   * @param {number} [depth]
   * @returns {SerializedDefect}
   */
  const serializeDefect = (defect, depth = 0) => {
    if (defect instanceof Error) {
      const proto = Object.getPrototypeOf(defect)
      const builtin = BUILTIN_ERRORS.find((name) => /** @type {any} */ (globalThis)[name]?.prototype === proto)
      /** @type {SerializedDefect} */
      const out = { name: defect.name, message: defect.message, stack: defect.stack }
      if (builtin === undefined || depth >= MAX_DEFECT_DEPTH) return out
      return {
        ...out,
        builtin,
        ...("cause" in defect ? { cause: serializeCause(defect.cause, depth + 1) } : {}),
        ...(defect instanceof AggregateError
          ? { errors: Array.from(defect.errors, (error) => serializeCause(error, depth + 1)) }
          : {})
      }
    }
    let message
    try {
      message = typeof defect === "string" ? defect : JSON.stringify(defect) ?? String(defect)
    } catch {
      message = String(defect)
    }
    return { name: "Error", message, stack: undefined }
  }

  /**
   * A cause as data every transport carries: an error serialized, a primitive as it is, anything else as
   * its JSON or string form.
   *
   * @param {unknown} cause
   * @param {number} depth
   * @returns {import("./protocol.ts").SerializedCause}
   */
  const serializeCause = (cause, depth) => {
    if (cause instanceof Error) return { error: serializeDefect(cause, depth) }
    if (cause === null || (typeof cause !== "object" && typeof cause !== "function" && typeof cause !== "symbol")) {
      return { value: cause }
    }
    try {
      return { value: JSON.stringify(cause) ?? String(cause) }
    } catch {
      return { value: String(cause) }
    }
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

  /**
   * Rebuilds an inline function from the source that `closure.ts` made shippable.
   * @param {string} source
   * @returns {(item: unknown, index: number) => unknown}
   */
  const reviveFunction = (source) => new Function(`"use strict"; return (${source})`)()

  /**
   * Loads what a spec names. A task's module is imported; the module's own copy of this library (which
   * `Task.make` loaded) prepares the task, so that a bundle that carries `effect` inside runs with it.
   *
   * @param {WorkSpec} spec
   * @returns {Promise<Loaded>}
   */
  const load = async (spec) => {
    if (spec.kind === "fn") {
      return { run: reviveFunction(spec.source), encodeSuccess: identity, encodeError: identity, effects: undefined }
    }
    guard.importing = spec.url
    try {
      await host.importModule(spec.url)
      // A program the module starts at its top level builds its layers a little after the import.
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      guard.importing = undefined
    }
    const found = globals[TASK_REGISTRY]?.get(`${spec.url}#${spec.name}`)
    if (found === undefined) throw new Error(`module ${spec.url} defines no task named "${spec.name}"`)
    const prepare = globals[TASK_LOADER]
    if (typeof prepare !== "function") throw new Error(`module ${spec.url} did not load effect-joblib's Task module`)
    return prepare(found)
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
    const { cancelled, setFiber, timeout, yieldMillis, now } = context
    let lastYield = yieldMillis === undefined ? 0 : performance.now()
    // The clock is read every `stride` items: reading it costs more than a tiny task, so the stride grows
    // while items are quick and shrinks back when they are slow.
    let lastCheck = lastYield
    let stride = 1
    let countdown = 1
    // Values are pushed so that the array stays packed: structured clone copies those much faster.
    /** @type {BatchOut} */
    const out = { values: [], status: undefined, interrupted: false, timings: context.timings ? [] : undefined }
    // Epoch milliseconds, so that the parent can place each item's span on its own clock.
    let itemStarted = 0
    /**
     * @param {unknown} value
     * @param {number} status
     */
    const record = (value, status) => {
      out.timings?.push(itemStarted, performance.timeOrigin + performance.now())
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
        return record(context.defect(encodeFailure), Status.Defect)
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
      if (out.timings !== undefined) itemStarted = performance.timeOrigin + performance.now()
      // Elapsed time, for a timed-out item's message; whether it timed out is the caller's Clock's to say.
      const began = timeout === undefined ? 0 : performance.now()
      const clockBegan = timeout === undefined || now === undefined ? 0 : now()
      // A synchronous item cannot be stopped: past its time on the Clock, its value is a timeout. In a worker
      // (no `now`), the pool judges that from its own watchdog when the item's result arrives.
      const overran = () => timeout !== undefined && now !== undefined && now() - clockBegan > timeout
      let ok
      try {
        // Not a direct call: V8's Maglev would inline the user's function into this loop, where a hot numeric
        // loop of theirs ran up to 1.7× slower (boxed doubles) than on the main thread.
        let value = Reflect.apply(work.run, undefined, [items[i], start + i])
        const effects = work.effects
        if (effects !== undefined && effects.isEffect(value)) {
          const fiber = effects.fork(value, (data) => context.report(i, data), context.parent)
          let timedOut = false
          // A fiber starts at once: one that finished synchronously needs no timer and no wait.
          /** @type {Exit<unknown, unknown> | undefined} */
          let exit = fiber.pollUnsafe()
          if (exit === undefined) {
            setFiber(fiber)
            const cancelTimer = timeout === undefined ? undefined : context.timer(i, timeout, () => {
              timedOut = true
              fiber.interruptUnsafe()
            })
            exit = /** @type {Exit<unknown, unknown>} */ (await new Promise((resolve) => fiber.addObserver(resolve)))
            cancelTimer?.()
            setFiber(undefined)
          }
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
              : record(context.defect(classified.defect), Status.Defect)
          }
        } else if (value !== null && typeof value === "object" && "~effect/Effect" in value) {
          // An inline function returned an Effect, which this worker cannot run: the map fails (see inlineEffect).
          record(0, Status.InlineEffect)
          return out
        } else {
          if (isThenable(value)) {
            if (timeout === undefined) value = await value
            else {
              /** @type {() => void} */
              let cancelTimer = () => {}
              const deadline = new Promise((
                resolve
              ) => (cancelTimer = context.timer(i, timeout, () => resolve(TIMED_OUT))))
              value = await Promise.race([value, deadline])
              cancelTimer()
            }
          }
          ok = value === TIMED_OUT || overran()
            ? record(performance.now() - began, Status.Timeout)
            : record(work.encodeSuccess(value), Status.Success)
        }
      } catch (defect) {
        ok = record(context.defect(defect), Status.Defect)
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
   * @returns {((message: ToWorker) => void) & { cancelledIds: () => number }}
   */
  const makeRuntime = (post, control, threshold, memory, yieldMillis) => {
    /** @type {Map<number, Promise<Loaded>>} */
    const loaded = new Map()
    /**
     * Each key's spec, as the pool sends it only with the key's first batch here: kept, so that a first batch
     * cancelled before it started, or a load that failed, leaves the key loadable by the batches after it.
     * @type {Map<number, WorkSpec>}
     */
    const specs = new Map()
    /** @type {Map<number, Fiber<unknown, unknown>>} */
    const running = new Map()
    /** Buffers sent once per process (see the `buffers` message). */
    /** @type {Map<number, ArrayBuffer>} */
    const buffers = new Map()
    /**
     * Batches cancelled by message, not yet run or running: the control word, which the pool writes, holds only
     * the latest. An id goes when its batch ends; a cancel that comes after that is not kept. Batch ids grow.
     * @type {Set<number>}
     */
    const cancelledIds = new Set()
    /** The highest id of a batch that has ended here: a cancel for it or below comes too late to matter. */
    let ended = 0
    /** The batch waiting for its task module to load, and whether it has been answered already (cancelled). */
    /** @type {{ id: number, answered: boolean } | undefined} */
    let loading
    /**
     * The running item's timeout, fired by the pool's `timeout` message; and the last item the pool timed
     * out, in case its message came before the item started waiting.
     * @type {{ id: number, index: number, fire: () => void } | undefined}
     */
    let expiry
    /** @type {string | undefined} */
    let expired
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
      if (message.spec !== undefined) specs.set(message.key, message.spec)
      const cancelled = () => Atomics.load(control, CANCEL) === id || cancelledIds.has(id)
      const interrupted = () =>
        post({ _: "done", id, values: [], interrupted: true, duration: 0, memory: memory() }, [])
      if (cancelled()) return finish(id, interrupted)
      /** @type {Loaded} */
      let work
      const waiting = { id, answered: false }
      try {
        let pending = loaded.get(message.key)
        if (pending === undefined) {
          const spec = specs.get(message.key)
          if (spec === undefined) throw new Error(`unknown work key ${message.key}`)
          // The module's top-level program may end this worker before the import returns: say why first.
          guard.report = (text) => post({ _: "loadFailed", id, message: text, unguarded: true }, [])
          pending = load(spec)
          loaded.set(message.key, pending)
          pending.then(() => post({ _: "loaded", key: message.key }, []), () => loaded.delete(message.key))
        }
        loading = waiting
        work = await pending
      } catch (error) {
        if (waiting.answered) return finish(id, () => {})
        return finish(
          id,
          () => post({ _: "loadFailed", id, message: error instanceof Error ? error.message : String(error) }, [])
        )
      } finally {
        loading = undefined
      }
      // Cancelled while its module loaded: answered then, so that the pool need not replace a worker that was
      // only loading; the module stays loaded for the key's next batch.
      if (waiting.answered) return finish(id, () => {})
      if (cancelled()) return finish(id, interrupted)
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
        yieldMillis,
        timings: message.timings === true,
        parent: message.parent,
        timer: (index, _ms, fire) => {
          if (expired === `${id}:${index}`) {
            fire()
            return () => {}
          }
          const mine = { id, index, fire }
          expiry = mine
          return () => {
            if (expiry === mine) expiry = undefined
          }
        },
        now: undefined,
        defect: serializeDefect
      })
      const { values, status, transfer } = partial(out, sent)
      finish(id, () =>
        post({
          _: "done",
          id,
          values,
          status,
          interrupted: out.interrupted,
          duration: performance.now() - started,
          memory: memory(),
          timings: out.timings
        }, transfer))
    }

    /**
     * Ends batch `id`: forgets the cancels of it and of every batch before it (ids grow, so none of those can
     * still come to run here), then answers with `reply`.
     * @param {number} id
     * @param {() => void} reply
     */
    const finish = (id, reply) => {
      if (id > ended) ended = id
      for (const cancelledId of cancelledIds) if (cancelledId <= ended) cancelledIds.delete(cancelledId)
      reply()
    }

    /** @type {((message: ToWorker) => void) & { cancelledIds: () => number }} */
    const handle = Object.assign((/** @type {ToWorker} */ message) => {
      switch (message._) {
        case "cancel": {
          // Only the pool writes the control word: a message handled late must not overwrite a newer cancel.
          if (message.id <= ended) return
          cancelledIds.add(message.id)
          running.get(message.id)?.interruptUnsafe()
          if (loading !== undefined && loading.id === message.id && !loading.answered) {
            loading.answered = true
            post({ _: "done", id: message.id, values: [], interrupted: true, duration: 0, memory: memory() }, [])
          }
          return
        }
        case "timeout": {
          // The pool's watchdog: item `index` of batch `id` ran out of time on the caller's Clock.
          expired = `${message.id}:${message.index}`
          if (expiry !== undefined && expiry.id === message.id && expiry.index === message.index) expiry.fire()
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
        case "close": {
          // After the batches already queued: release what the loaded tasks hold (their layers' scopes).
          queue = queue.then(async () => {
            for (const pending of loaded.values()) {
              try {
                await (await pending).close?.()
              } catch {}
            }
            loaded.clear()
            post({ _: "closed" }, [])
          })
          return
        }
      }
      queue = queue.then(() => runBatch(message)).catch((error) => {
        post({ _: "loadFailed", id: message.id, message: String(error) }, [])
      })
    }, { cancelledIds: () => cancelledIds.size })
    return handle
  }

  /**
   * Starts serving as a worker thread of `Backend.layerThreads`.
   */
  const startThread = () => {
    globals[WORKER_GUARD] = guard
    const { getHeapStatistics } = process.getBuiltinModule("node:v8")
    const { parentPort, workerData } = process.getBuiltinModule("node:worker_threads")
    const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort)
    const { control, threshold } = /** @type {{ control: SharedArrayBuffer; threshold: number }} */ (workerData)
    const handle = makeRuntime(
      (message, transfer) => port.postMessage(message, /** @type {Array<ArrayBuffer>} */ (transfer)),
      new Int32Array(control),
      threshold,
      // A thread shares its process's resident set, so it is judged by its own heap and the buffers it holds.
      () => {
        const heap = getHeapStatistics()
        return heap.used_heap_size + heap.external_memory
      },
      undefined
    )
    port.on("message", handle)
    port.postMessage({ _: "ready" })
  }

  /**
   * Starts serving as a worker process of `Backend.layerProcesses`. Messages use the "advanced"
   * serialization, so typed arrays travel as raw bytes.
   */
  const startProcess = () => {
    globals[WORKER_GUARD] = guard
    const send = /** @type {NonNullable<typeof process.send>} */ (process.send).bind(process)
    const threshold = Number(process.env.EFFECT_JOBLIB_THRESHOLD ?? 1024 * 1024)
    // This process's own source, not for the processes its tasks start.
    delete process.env.EFFECT_JOBLIB_WORKER_SOURCE
    // No memory is shared with the parent: cancellations arrive as messages and are recorded here.
    const handle = makeRuntime(
      (message) => send(message),
      new Int32Array(1),
      threshold,
      () => process.memoryUsage.rss(),
      20
    )
    process.on("message", (message) => handle(/** @type {ToWorker} */ (message)))
    // The parent is gone (killed, or closed the channel): nothing is left to work for.
    process.on("disconnect", () => process.exit(0))
    watchParent()
    // Ctrl-C reaches the whole process group; the parent decides when its workers stop.
    process.on("SIGINT", () => {})
    send({ _: "ready" })
  }

  /**
   * A task stuck in synchronous code never lets this process see its channel close. A thread of its own
   * checks the parent four times a second and, once this process has been orphaned (its parent PID
   * changed), kills it: no worker outlives its driver by more than a moment.
   */
  const watchParent = () => {
    const { Worker } = process.getBuiltinModule("node:worker_threads")
    const watchdog = new Worker(
      `const { workerData } = process.getBuiltinModule("node:worker_threads")
      setInterval(() => {
        if (process.ppid !== workerData.parent) process.kill(workerData.pid, "SIGKILL")
      }, 250)`,
      { eval: true, workerData: { parent: process.ppid, pid: process.pid }, env: {}, stdout: true, stderr: true }
    )
    watchdog.unref()
  }

  return {
    Status,
    CANCEL,
    mapBuffers,
    makeRef,
    reviveRefs,
    reviveFunction,
    runBatchItems,
    makeRuntime,
    startThread,
    startProcess
  }
}

/**
 * The source of a worker's entry: `workerModule` followed by the call that starts it.
 *
 * - Node runs the text as a CommonJS script and gives it `require`, `__filename` and friends as
 *   globals, where every module would see them (and some libraries then take `__filename` for their
 *   own path): they are removed first.
 * - `__name` is in scope for bundlers that keep function names (esbuild's `keepNames`) by calling a
 *   helper of theirs.
 *
 * @param {"startThread" | "startProcess"} start
 */
export const workerSource = (start) =>
  `"use strict";for(const name of ["require","module","exports","__filename","__dirname"])delete globalThis[name];` +
  `((__name)=>(${workerModule})({importModule:(url)=>import(url)}).${start}())((target)=>target)`

/** The helpers the main thread shares with workers. */
export const {
  Status,
  CANCEL,
  mapBuffers,
  makeRef,
  reviveRefs,
  reviveFunction,
  runBatchItems,
  makeRuntime
} = workerModule({
  importModule: () => Promise.reject(new Error("the main thread imports no task module"))
})
