/**
 * A fixed set of worker slots speaking the batch protocol. Each slot owns at
 * most one live worker. A worker that dies, overruns a timeout, ignores a
 * cancel or outgrows its memory limit is replaced; batches queued behind it
 * that had not started move to the replacement.
 *
 * Each batch waits on a Deferred that the worker's messages complete; timeouts,
 * cancel grace and close grace are fibers sleeping on the Clock, forked into
 * the pool's scope, so that closing the pool leaves none behind.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import { TaskModuleError, TaskNotFound, WorkerCrashed } from "../../ParallelError.ts"
import type { Encoded, FromWorker, Partial, ToWorker, WorkSpec } from "./protocol.ts"
import type { RunOptions } from "./runner.ts"
import { CANCEL, Status } from "./workerRuntime.js"

/** A started worker, thread or process. */
export interface Endpoint {
  readonly id: number
  readonly post: (message: ToWorker, transfer?: ReadonlyArray<ArrayBuffer>) => void
  /** Stops the worker at once; resolves when it is gone. */
  readonly terminate: () => Promise<void>
}

export interface EndpointHandlers {
  readonly onMessage: (message: FromWorker) => void
  readonly onExit: (exitCode: number | undefined, signal: string | undefined) => void
  readonly onError: (error: Error) => void
  /** What the worker writes to its stderr. */
  readonly onStderr: (chunk: Uint8Array) => void
}

export type Spawn = (control: SharedArrayBuffer, handlers: EndpointHandlers) => Endpoint

/** How long an idle worker may take to release its tasks' layers when its pool closes. */
const CLOSE_GRACE = 2000

/** How much of a worker's stderr a `WorkerCrashed` carries: the end, where a crash report is. */
const STDERR_TAIL = 8 * 1024

/** A batch ready for a transport: its items encoded and shared, with what the worker needs to run them. */
export interface Shipment {
  readonly items: ReadonlyArray<unknown>
  readonly start: number
  readonly failFast: boolean
  readonly timeout: number | undefined
  /** Buffers the items refer to by id (isolated workers), sent once per worker. */
  readonly refs: ReadonlyMap<number, ArrayBuffer> | undefined
  /** Buffers to move rather than copy. */
  readonly transfer: ReadonlyArray<ArrayBuffer>
  readonly timings: boolean | undefined
  readonly parent: RunOptions["parent"]
  /** What a task reports, by index in the batch. */
  readonly onProgress: ((index: number, data: unknown) => void) | undefined
  /** Told when the batch lost its worker and went to another. */
  readonly onMoved?: (() => void) | undefined
  /** Told which worker ran the batch, when the transport learns it from the worker's reply (Remote). */
  readonly onRanBy?: RunOptions["onRanBy"]
}

/** A shipment for a pool's worker: which work it runs, by key (and spec, the first time a worker sees the key). */
export interface BatchRequest extends Shipment {
  readonly key: number
  readonly spec: WorkSpec
}

export type SlotError = TaskNotFound | TaskModuleError | WorkerCrashed

export interface SlotOptions {
  /** How long a cancelled or overrunning batch may take to stop before its worker is terminated. */
  readonly grace: number
  /** Recycle a worker between batches once it reports holding more bytes than this. */
  readonly memoryLimit: number | undefined
  /** Called when any batch settles, for dispatchers waiting for a free slot. */
  readonly onSettle: () => void
  /** Also write what workers write to stderr to this process's stderr, as it comes. */
  readonly forwardStderr: boolean
  /** Stop the worker once it has been idle this long (undefined: never); the next batch starts another. */
  readonly idleTimeout: number | undefined
}

interface Pending {
  readonly request: BatchRequest
  readonly done: Deferred.Deferred<Encoded, SlotError>
  /** Where and under which id it was last sent. */
  live: Live | undefined
  id: number
  /** Results received with ticks so far (timeouts only). */
  values: Array<unknown>
  status: Array<number> | undefined
  /** The item running now and since when, from ticks. */
  current: number
  since: number
  watchdog: Fiber.Fiber<void> | undefined
  /** The Clock of the map's caller: item timeouts and the stuck-worker grace are kept on it. */
  readonly clock: Clock.Clock
  /** The item whose time ran out on that Clock before its result arrived: its result is a timeout. */
  expired: number | undefined
}

interface Live {
  readonly endpoint: Endpoint
  readonly control: Int32Array
  /** Done when the worker is ready, or dead. */
  readonly ready: Deferred.Deferred<void>
  /** Done when the worker answers a graceful close. */
  readonly closed: Deferred.Deferred<void>
  /** In the order the worker runs them: the first has started or is next. */
  readonly pending: Map<number, Pending>
  readonly keys: Set<number>
  /** Keys whose module the worker is still importing: their batches run no user code yet. */
  readonly loadingKeys: Set<number>
  readonly buffers: Set<number>
  dead: boolean
  /** Takes no new batches; terminated once its pending batches finish. */
  retiring: boolean
  /** The end of what the worker wrote to stderr. */
  stderr: string
}

/** Forks a timer fiber into the pool's scope. */
type Fork = (effect: Effect.Effect<void>) => Fiber.Fiber<void>

let nextBatchId = 1

const decoder = new TextDecoder()

const specName = (spec: WorkSpec) => (spec.kind === "task" ? spec.name : "<inline function>")

const append = (pending: Pending, partial: Partial) => {
  const offset = pending.values.length
  for (const value of partial.values) pending.values.push(value)
  if (partial.status !== undefined) {
    pending.status ??= Array.from({ length: offset }, () => Status.Success)
    for (const status of partial.status) pending.status.push(status)
  } else if (pending.status !== undefined) {
    for (let i = 0; i < partial.values.length; i++) pending.status.push(Status.Success)
  }
}

/** Records item `index` of `pending` as timed out after `elapsed` milliseconds, whatever its worker sent. */
const markTimedOut = (pending: Pending, index: number, elapsed: number) => {
  pending.status ??= Array.from({ length: pending.values.length }, () => Status.Success)
  pending.values[index] = elapsed
  pending.status[index] = Status.Timeout
}

const terminate = (live: Live) => Effect.promise(() => live.endpoint.terminate().catch(() => {}))

/**
 * Stops a worker: an idle one is first asked to release what its tasks hold (their layers' finalizers run), for
 * up to `CLOSE_GRACE`; a busy one, or one that does not answer, is terminated.
 */
const stop = (live: Live): Effect.Effect<void> =>
  live.pending.size > 0 ? terminate(live) : Deferred.await(live.ready).pipe(
    Effect.andThen(Effect.try(() => live.endpoint.post({ _: "close" }))),
    Effect.andThen(Deferred.await(live.closed)),
    Effect.timeoutOption(CLOSE_GRACE),
    Effect.ignore,
    Effect.andThen(terminate(live))
  )

export class Slot {
  readonly index: number
  private live: Live | undefined
  /** Every worker not yet terminated, including retiring ones. */
  private readonly lives = new Set<Live>()
  private readonly spawn: Spawn
  private readonly options: SlotOptions
  private readonly fork: Fork
  /** Batches sent to this slot and not yet answered. */
  outstanding = 0
  /** Stops the worker after it has been idle for `idleTimeout`; interrupted by the next batch. */
  private reaper: Fiber.Fiber<void> | undefined
  /** How many workers this slot has started. */
  spawned = 0

  constructor(index: number, spawn: Spawn, options: SlotOptions, fork: Fork) {
    this.index = index
    this.spawn = spawn
    this.options = options
    this.fork = fork
  }

  /** Starts the worker now, so that the first batch finds it warm. */
  get warm(): Effect.Effect<void> {
    return Effect.suspend(() => Deferred.await(this.ensure().ready))
  }

  get workerId(): number | undefined {
    return this.live?.endpoint.id
  }

  private ensure(): Live {
    if (this.live !== undefined && !this.live.dead && !this.live.retiring) return this.live
    const controlBuffer = new SharedArrayBuffer(4)
    const live: Live = {
      endpoint: undefined as unknown as Endpoint,
      control: new Int32Array(controlBuffer),
      ready: Deferred.makeUnsafe(),
      closed: Deferred.makeUnsafe(),
      pending: new Map(),
      keys: new Set(),
      loadingKeys: new Set(),
      buffers: new Set(),
      dead: false,
      retiring: false,
      stderr: ""
    }
    const die = (exitCode: number | undefined, signal: string | undefined, reason: string) => {
      if (live.dead) return
      const id = live.endpoint?.id ?? -1
      // The batch the worker was running is lost; those queued behind it never started.
      const running = live.pending.values().next().value
      const stderr = live.stderr.trim()
      this.bury(live, running, () => {
        if (running === undefined) return
        Deferred.doneUnsafe(
          running.done,
          Exit.fail(
            new WorkerCrashed({
              worker: id,
              exitCode,
              signal,
              stderr: stderr === "" ? undefined : stderr,
              message: `worker ${id} ${reason} while running ${specName(running.request.spec)}` +
                (stderr === "" ? "" : `; its stderr ended with:\n${stderr}`)
            })
          )
        )
      })
    }
    ;(live as { endpoint: Endpoint }).endpoint = this.spawn(controlBuffer, {
      onMessage: (message) => this.receive(live, message),
      onExit: (exitCode, signal) =>
        die(exitCode, signal, `exited${signal ? ` on signal ${signal}` : ` with code ${exitCode}`}`),
      onError: (error) => die(undefined, undefined, `failed: ${error.stack ?? error.message}`),
      onStderr: (chunk) => {
        if (this.options.forwardStderr) process.stderr.write(chunk)
        live.stderr = (live.stderr + decoder.decode(chunk)).slice(-STDERR_TAIL)
      }
    })
    this.live = live
    this.lives.add(live)
    this.spawned++
    return live
  }

  private receive(live: Live, message: FromWorker) {
    switch (message._) {
      case "ready":
        return Deferred.doneUnsafe(live.ready, Exit.void)
      case "closed":
        return Deferred.doneUnsafe(live.closed, Exit.void)
      case "tick": {
        const pending = live.pending.get(message.id)
        if (pending === undefined) return
        append(pending, message)
        this.settleExpired(pending)
        pending.current = message.index
        pending.since = performance.now()
        return this.watch(live, pending)
      }
      case "progress":
        return live.pending.get(message.id)?.request.onProgress?.(message.index, message.data)
      case "loaded":
        return void live.loadingKeys.delete(message.key)
      case "done": {
        const pending = live.pending.get(message.id)
        if (pending === undefined) return
        live.pending.delete(message.id)
        pending.watchdog?.interruptUnsafe()
        let values = message.values
        let status = message.status
        if (pending.values.length > 0 || pending.expired !== undefined) {
          append(pending, message)
          this.settleExpired(pending)
          values = pending.values
          status = pending.status === undefined ? undefined : Uint8Array.from(pending.status)
        }
        Deferred.doneUnsafe(
          pending.done,
          Exit.succeed<Encoded>({
            values,
            status,
            interrupted: message.interrupted,
            duration: message.duration,
            timings: message.timings
          })
        )
        const limit = this.options.memoryLimit
        if (limit !== undefined && message.memory > limit && !live.retiring) {
          live.retiring = true
          if (this.live === live) this.live = undefined
        }
        if (live.retiring && live.pending.size === 0) {
          // Outgrew its memory limit and finished its last batch.
          live.dead = true
          this.lives.delete(live)
          live.endpoint.terminate().catch(() => {})
        }
        return
      }
      case "loadFailed": {
        const pending = live.pending.get(message.id)
        live.pending.delete(message.id)
        if (pending === undefined) return
        live.loadingKeys.delete(pending.request.key)
        const spec = pending.request.spec
        return Deferred.doneUnsafe(
          pending.done,
          Exit.fail(
            message.unguarded === true && spec.kind === "task"
              ? new TaskModuleError({ module: spec.url, reason: "TopLevelProgram", message: message.message })
              : new TaskNotFound({
                task: specName(spec),
                module: spec.kind === "task" ? spec.url : "<inline>",
                message: `cannot load ${specName(spec)}: ${message.message}`
              })
          )
        )
      }
    }
  }

  /**
   * Marks `live` dead, settles `stopped` (the batch it was running) with `settle`, and moves the
   * batches queued behind it to a new worker.
   */
  private bury(live: Live, stopped: Pending | undefined, settle: () => void) {
    live.dead = true
    this.lives.delete(live)
    if (this.live === live) this.live = undefined
    // Whoever waits for it to be ready (a warm-up, a batch not yet sent) looks again and finds it dead.
    Deferred.doneUnsafe(live.ready, Exit.void)
    const queued = [...live.pending.values()].filter((pending) => pending !== stopped)
    live.pending.clear()
    stopped?.watchdog?.interruptUnsafe()
    settle()
    for (const pending of queued) {
      pending.watchdog?.interruptUnsafe()
      this.send(pending)
    }
  }

  /** An item whose time ran out before its result arrived has a timeout for its result, once that arrived. */
  private settleExpired(pending: Pending) {
    const item = pending.expired
    if (item === undefined || pending.values.length <= item) return
    pending.expired = undefined
    markTimedOut(pending, item, pending.request.timeout!)
  }

  /**
   * Arms the timeout watchdog of the item that just started, on the Clock of the map's caller: when the item's
   * time is up, the worker is told (an Effect or a promise stops there); if it has not moved on within the grace
   * that follows (synchronous code), it is replaced and the item reported as timed out.
   */
  private watch(live: Live, pending: Pending) {
    pending.watchdog?.interruptUnsafe()
    const timeout = pending.request.timeout
    if (timeout === undefined) return
    const item = pending.current
    const stillOn = () => !live.dead && live.pending.get(pending.id) === pending && pending.current === item
    const stuck = Effect.sync(() => {
      if (!stillOn()) return
      const elapsed = performance.now() - pending.since
      live.endpoint.terminate().catch(() => {})
      this.bury(live, pending, () => {
        pending.expired = undefined
        append(pending, { values: [elapsed], status: Uint8Array.of(Status.Timeout) })
        Deferred.doneUnsafe(
          pending.done,
          Exit.succeed<Encoded>({
            values: pending.values,
            status: Uint8Array.from(pending.status!),
            interrupted: false,
            stoppedAt: item,
            duration: performance.now() - pending.since
          })
        )
      })
    })
    pending.watchdog = this.fork(
      Effect.sleep(timeout).pipe(
        Effect.andThen(Effect.sync(() => {
          if (!stillOn()) return
          pending.expired = item
          try {
            live.endpoint.post({ _: "timeout", id: pending.id, index: item })
          } catch {}
        })),
        Effect.andThen(Effect.sleep(this.options.grace)),
        Effect.andThen(stuck),
        Effect.provideService(Clock.Clock, pending.clock)
      )
    )
  }

  /** Sends a batch to the current worker (starting one if needed), once it is ready. */
  private send(pending: Pending) {
    let live: Live
    try {
      live = this.ensure()
    } catch (error) {
      const crashed = new WorkerCrashed({
        worker: -1,
        message: `cannot start a worker: ${String(error)}`,
        cause: error
      })
      return Deferred.doneUnsafe(pending.done, Exit.fail(crashed))
    }
    const id = nextBatchId++
    pending.live = live
    pending.id = id
    pending.values = []
    pending.status = undefined
    pending.expired = undefined
    live.pending.set(id, pending)
    const post = () => {
      if (live.dead || live.pending.get(id) !== pending) return
      const { request } = pending
      const first = !live.keys.has(request.key)
      live.keys.add(request.key)
      if (first && request.spec.kind === "task") live.loadingKeys.add(request.key)
      try {
        if (request.refs !== undefined) {
          const entries: Array<readonly [number, ArrayBuffer]> = []
          for (const [bufferId, buffer] of request.refs) {
            if (!live.buffers.has(bufferId)) {
              live.buffers.add(bufferId)
              entries.push([bufferId, buffer])
            }
          }
          if (entries.length > 0) live.endpoint.post({ _: "buffers", entries })
        }
        live.endpoint.post({
          _: "run",
          id,
          key: request.key,
          spec: first ? request.spec : undefined,
          items: request.items,
          start: request.start,
          failFast: request.failFast,
          timeout: request.timeout,
          refs: request.refs !== undefined,
          timings: request.timings === true ? true : undefined,
          parent: request.parent
        }, request.transfer)
      } catch (error) {
        live.pending.delete(id)
        Deferred.doneUnsafe(pending.done, Exit.die(error))
      }
    }
    // A warm worker gets the batch at once; a starting one when it is ready.
    if (Deferred.isDoneUnsafe(live.ready)) post()
    else this.fork(Effect.andThen(Deferred.await(live.ready), Effect.sync(post)))
  }

  /**
   * Interrupts a batch. One still queued is dropped at once. One running is asked to stop; if it has
   * not answered within the grace period its worker is terminated and the batches behind it move on.
   */
  private cancel(pending: Pending): Effect.Effect<void> {
    return Effect.suspend(() => {
      const live = pending.live
      if (live === undefined || live.dead || live.pending.get(pending.id) !== pending) return Effect.void
      const running = live.pending.keys().next().value === pending.id
      // Not yet sent (its worker is still starting), queued behind another, or waiting for its module to load:
      // dropped, and nothing to stop. A worker that is only starting or importing is left to finish.
      if (!Deferred.isDoneUnsafe(live.ready) || !running || live.loadingKeys.has(pending.request.key)) {
        live.pending.delete(pending.id)
        if (Deferred.isDoneUnsafe(live.ready)) live.endpoint.post({ _: "cancel", id: pending.id })
        return Effect.void
      }
      live.endpoint.post({ _: "cancel", id: pending.id })
      Atomics.store(live.control, CANCEL, pending.id)
      return Deferred.await(pending.done).pipe(
        Effect.exit,
        Effect.timeoutOption(this.options.grace),
        Effect.flatMap((answered) => {
          if (answered._tag === "Some" || live.dead || live.pending.get(pending.id) !== pending) return Effect.void
          this.bury(live, pending, () => {})
          return terminate(live)
        })
      )
    })
  }

  run(request: BatchRequest): Effect.Effect<Encoded, SlotError> {
    return Effect.clockWith((clock) => {
      this.outstanding++
      this.reaper?.interruptUnsafe()
      this.reaper = undefined
      const pending: Pending = {
        request,
        done: Deferred.makeUnsafe(),
        live: undefined,
        id: 0,
        values: [],
        status: undefined,
        current: 0,
        since: 0,
        watchdog: undefined,
        clock,
        expired: undefined
      }
      this.send(pending)
      return Deferred.await(pending.done).pipe(
        Effect.onInterrupt(() => this.cancel(pending)),
        Effect.ensuring(Effect.sync(() => {
          this.outstanding--
          if (this.outstanding === 0) this.reapWhenIdle()
          this.options.onSettle()
        }))
      )
    })
  }

  /** Stops the worker once it has stayed idle for `idleTimeout`, as its slot's next batch would find it. */
  private reapWhenIdle() {
    const idleTimeout = this.options.idleTimeout
    if (idleTimeout === undefined || this.live === undefined) return
    this.reaper = this.fork(Effect.andThen(
      Effect.sleep(idleTimeout),
      Effect.suspend(() => {
        const live = this.live
        if (this.outstanding > 0 || live === undefined || live.pending.size > 0) return Effect.void
        this.live = undefined
        this.lives.delete(live)
        live.dead = true
        return stop(live)
      })
    ))
  }

  /** Tells the current worker to drop buffers it holds for a finished map. */
  release(ids: ReadonlyArray<number>) {
    const live = this.live
    if (live === undefined || live.dead) return
    const held = ids.filter((id) => live.buffers.delete(id))
    if (held.length > 0) live.endpoint.post({ _: "release", ids: held })
  }

  /**
   * Stops every worker of the slot; a later batch would start a new one. An idle worker is first asked to
   * release what its tasks hold (their layers' finalizers run), for up to `CLOSE_GRACE`; a busy one, or one
   * that does not answer, is terminated.
   */
  get close(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.live = undefined
      const lives = [...this.lives]
      this.lives.clear()
      for (const live of lives) live.dead = true
      this.reaper?.interruptUnsafe()
      return Effect.forEach(lives, stop, { concurrency: "unbounded", discard: true })
    })
  }
}

/**
 * The slots of a pool, closed with the scope; every timer they start is a fiber of that scope. A slot starts its
 * worker with its first batch, or at once when `warm`.
 */
export const makeSlots = Effect.fnUntraced(function*(count: number, spawn: Spawn, options: SlotOptions, warm: boolean) {
  const fork = yield* FiberSet.makeRuntime<never, void, never>()
  const slots = Array.from({ length: count }, (_, i) => new Slot(i, spawn, options, (effect) => fork(effect)))
  yield* Effect.addFinalizer(() => Effect.forEach(slots, (slot) => slot.close, { concurrency: "unbounded" }))
  if (warm) yield* Effect.forEach(slots, (slot) => slot.warm, { concurrency: "unbounded", discard: true })
  return slots
})
