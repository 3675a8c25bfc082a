/**
 * A fixed set of worker slots speaking the batch protocol. Each slot owns at
 * most one live worker. A worker that dies, overruns a timeout, ignores a
 * cancel or outgrows its memory limit is replaced; batches queued behind it
 * that had not started move to the replacement.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { TaskModuleError, TaskNotFound, WorkerCrashed } from "../../ParallelError.ts"
import { CANCEL, type FromWorker, type Partial, Status, type ToWorker, type WorkSpec } from "./protocol.ts"

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

/** How long an idle worker may take to release its tasks' layers when its pool closes. */
const CLOSE_GRACE = 2000

/** How much of a worker's stderr a `WorkerCrashed` carries: the end, where a crash report is. */
const STDERR_TAIL = 8 * 1024

export type Spawn = (control: SharedArrayBuffer, handlers: EndpointHandlers) => Endpoint

export interface RawOutcome {
  readonly values: ReadonlyArray<unknown>
  readonly status: Uint8Array | undefined
  /** The batch stopped because a task interrupted itself; items from `values.length` on did not finish. */
  readonly interrupted: boolean
  /**
   * The item at this batch index overran its timeout in a worker that would not yield, so the worker was
   * replaced: the values stop there (its own value is the elapsed milliseconds) and later items did not run.
   */
  readonly stoppedAt: number | undefined
  readonly duration: number
  /** When asked for: each finished item's start and end, in epoch milliseconds, in pairs. */
  readonly timings?: ReadonlyArray<number> | undefined
}

export interface SlotOptions {
  /** How long a cancelled or overrunning batch may take to stop before its worker is terminated. */
  readonly grace: number
  /** Recycle a worker between batches once it reports holding more bytes than this. */
  readonly memoryLimit: number | undefined
  /** Called when any batch settles, for dispatchers waiting for a free slot. */
  readonly onSettle: () => void
  /** Also write what workers write to stderr to this process's stderr, as it comes. */
  readonly forwardStderr: boolean
}

export interface BatchRequest {
  readonly key: number
  readonly spec: WorkSpec
  readonly items: ReadonlyArray<unknown>
  readonly start: number
  readonly failFast: boolean
  readonly timeout: number | undefined
  /** Buffers the items refer to by id, sent to each worker process once. */
  readonly refs: ReadonlyMap<number, ArrayBuffer> | undefined
  readonly transfer: ReadonlyArray<ArrayBuffer>
  readonly onProgress: ((index: number, data: unknown) => void) | undefined
  /** Ask the worker when each item started and ended. */
  readonly timings?: boolean | undefined
  /** The batch's span, for its tasks' spans and logs. */
  readonly parent?: { readonly traceId: string; readonly spanId: string } | undefined
}

interface Pending {
  readonly request: BatchRequest
  readonly resolve: (exit: Exit.Exit<RawOutcome, TaskNotFound | TaskModuleError | WorkerCrashed>) => void
  /** Results received with ticks so far (timeouts only). */
  values: Array<unknown>
  status: Array<number> | undefined
  /** The item running now and since when, from ticks. */
  current: number
  since: number
  watchdog: ReturnType<typeof setTimeout> | undefined
  /** Interrupts the batch where it was last sent. */
  cancel?: () => Promise<void>
  /** Ends a wait started by `cancel` when the worker answers. */
  resolveCancelled?: () => void
}

interface Live {
  readonly endpoint: Endpoint
  readonly control: Int32Array
  readonly ready: Promise<void>
  /** In the order the worker runs them: the first has started or is next. */
  readonly pending: Map<number, Pending>
  readonly keys: Set<number>
  readonly buffers: Set<number>
  dead: boolean
  /** Takes no new batches; terminated once its pending batches finish. */
  retiring: boolean
  /** The end of what the worker wrote to stderr. */
  stderr: string
  /** Resolves a graceful close when the worker answers `closed`. */
  closed?: (() => void) | undefined
}

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

export class Slot {
  readonly index: number
  private live: Live | undefined
  /** Every worker not yet terminated, including retiring ones. */
  private readonly lives = new Set<Live>()
  private readonly spawn: Spawn
  private readonly options: SlotOptions
  /** Batches sent to this slot and not yet answered. */
  outstanding = 0
  /** How many workers this slot has started. */
  spawned = 0

  constructor(index: number, spawn: Spawn, options: SlotOptions) {
    this.index = index
    this.spawn = spawn
    this.options = options
  }

  /** Starts the worker now, so that the first batch finds it warm. */
  warm(): Promise<void> {
    return this.ensure().ready
  }

  get workerId(): number | undefined {
    return this.live?.endpoint.id
  }

  private ensure(): Live {
    if (this.live !== undefined && !this.live.dead && !this.live.retiring) return this.live
    const controlBuffer = new SharedArrayBuffer(4)
    let markReady!: () => void
    let failReady!: (error: Error) => void
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve
      failReady = reject
    })
    ready.catch(() => {})
    const live: Live = {
      endpoint: undefined as unknown as Endpoint,
      control: new Int32Array(controlBuffer),
      ready,
      pending: new Map(),
      keys: new Set(),
      buffers: new Set(),
      dead: false,
      retiring: false,
      stderr: ""
    }
    const die = (exitCode: number | undefined, signal: string | undefined, reason: string) => {
      if (live.dead) return
      const id = live.endpoint?.id ?? -1
      failReady(new Error(reason))
      // The batch the worker was running is lost; those queued behind it never started.
      const running = live.pending.values().next().value
      const stderr = live.stderr.trim()
      this.bury(live, running, () => {
        running?.resolve(Exit.fail(
          new WorkerCrashed({
            worker: id,
            exitCode,
            signal,
            stderr: stderr === "" ? undefined : stderr,
            message: `worker ${id} ${reason} while running ${specName(running.request.spec)}` +
              (stderr === "" ? "" : `; its stderr ended with:\n${stderr}`)
          })
        ))
      })
    }
    ;(live as { endpoint: Endpoint }).endpoint = this.spawn(controlBuffer, {
      onMessage: (message) => this.receive(live, message, markReady),
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

  private receive(live: Live, message: FromWorker, markReady: () => void) {
    switch (message._) {
      case "ready":
        return markReady()
      case "closed":
        return live.closed?.()
      case "tick": {
        const pending = live.pending.get(message.id)
        if (pending === undefined) return
        append(pending, message)
        pending.current = message.index
        pending.since = performance.now()
        this.watch(live, message.id, pending)
        return
      }
      case "progress":
        return live.pending.get(message.id)?.request.onProgress?.(message.index, message.data)
      case "done": {
        const pending = live.pending.get(message.id)
        if (pending === undefined) return
        live.pending.delete(message.id)
        clearTimeout(pending.watchdog)
        let values = message.values
        let status = message.status
        if (pending.values.length > 0) {
          append(pending, message)
          values = pending.values
          status = pending.status === undefined ? undefined : Uint8Array.from(pending.status)
        }
        pending.resolve(Exit.succeed({
          values,
          status,
          interrupted: message.interrupted,
          stoppedAt: undefined,
          duration: message.duration,
          timings: message.timings
        }))
        const limit = this.options.memoryLimit
        if (limit !== undefined && message.memory > limit && !live.retiring) {
          live.retiring = true
          if (this.live === live) this.live = undefined
        }
        if (live.retiring && live.pending.size === 0) this.retire(live)
        return
      }
      case "loadFailed": {
        const pending = live.pending.get(message.id)
        live.pending.delete(message.id)
        if (pending === undefined) return
        const spec = pending.request.spec
        if (message.unguarded === true && spec.kind === "task") {
          return pending.resolve(Exit.fail(
            new TaskModuleError({ module: spec.url, reason: "TopLevelProgram", message: message.message })
          ))
        }
        pending.resolve(Exit.fail(
          new TaskNotFound({
            task: specName(spec),
            module: spec.kind === "task" ? spec.url : "<inline>",
            message: `cannot load ${specName(spec)}: ${message.message}`
          })
        ))
      }
    }
  }

  /** Terminates a worker that finished its last batch after outgrowing its memory limit. */
  private retire(live: Live) {
    live.dead = true
    this.lives.delete(live)
    live.endpoint.terminate().catch(() => {})
  }

  /**
   * Marks `live` dead, settles `stopped` (the batch it was running) with `settle`, and moves the
   * batches queued behind it to a new worker.
   */
  private bury(live: Live, stopped: Pending | undefined, settle: () => void) {
    live.dead = true
    this.lives.delete(live)
    if (this.live === live) this.live = undefined
    const queued = [...live.pending.values()].filter((pending) => pending !== stopped)
    live.pending.clear()
    clearTimeout(stopped?.watchdog)
    settle()
    for (const pending of queued) {
      clearTimeout(pending.watchdog)
      this.send(pending)
    }
  }

  /** Arms the timeout watchdog of the item that just started. */
  private watch(live: Live, id: number, pending: Pending) {
    clearTimeout(pending.watchdog)
    const timeout = pending.request.timeout
    if (timeout === undefined) return
    const item = pending.current
    pending.watchdog = setTimeout(() => {
      if (live.dead || !live.pending.has(id) || pending.current !== item) return
      // The worker did not yield within the grace period: replace it and report the item as timed out.
      const elapsed = performance.now() - pending.since
      live.endpoint.terminate().catch(() => {})
      this.bury(live, pending, () => {
        append(pending, { values: [elapsed], status: Uint8Array.of(Status.Timeout) })
        pending.resolve(Exit.succeed({
          values: pending.values,
          status: Uint8Array.from(pending.status!),
          interrupted: false,
          stoppedAt: item,
          duration: performance.now() - pending.since
        }))
      })
    }, timeout + this.options.grace)
  }

  /** Sends a batch to the current worker (starting one if needed). */
  private send(pending: Pending) {
    let live: Live
    try {
      live = this.ensure()
    } catch (error) {
      pending.resolve(Exit.fail(new WorkerCrashed({ worker: -1, message: `cannot start a worker: ${String(error)}` })))
      return
    }
    const id = nextBatchId++
    pending.values = []
    pending.status = undefined
    live.pending.set(id, pending)
    live.ready.then(() => {
      if (live.dead || live.pending.get(id) !== pending) return
      const { request } = pending
      const first = !live.keys.has(request.key)
      live.keys.add(request.key)
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
        pending.resolve(Exit.die(error))
      }
    }, () => {})
    pending.cancel = () => this.cancel(live, id, pending)
  }

  /**
   * Interrupts a batch. One still queued is dropped at once. One running is asked to stop; if it has
   * not answered within the grace period its worker is terminated and the batches behind it move on.
   */
  private cancel(live: Live, id: number, pending: Pending): Promise<void> {
    if (live.dead || live.pending.get(id) !== pending) return Promise.resolve()
    const running = live.pending.keys().next().value === id
    live.endpoint.post({ _: "cancel", id })
    if (!running) {
      live.pending.delete(id)
      return Promise.resolve()
    }
    Atomics.store(live.control, CANCEL, id)
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        if (live.dead || live.pending.get(id) !== pending) return resolve()
        live.endpoint.terminate().catch(() => {}).finally(resolve)
        this.bury(live, pending, () => {})
      }, this.options.grace)
      pending.resolveCancelled = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  run(request: BatchRequest): Effect.Effect<RawOutcome, TaskNotFound | TaskModuleError | WorkerCrashed> {
    return Effect.callback<RawOutcome, TaskNotFound | TaskModuleError | WorkerCrashed>((resume) => {
      let settled = false
      this.outstanding++
      const pending: Pending = {
        request,
        values: [],
        status: undefined,
        current: 0,
        since: 0,
        watchdog: undefined,
        resolve: (exit) => {
          pending.resolveCancelled?.()
          if (settled) return
          settled = true
          this.outstanding--
          this.options.onSettle()
          resume(exit)
        }
      }
      this.send(pending)
      return Effect.promise(() => {
        if (settled) return Promise.resolve()
        const cancelled = pending.cancel?.() ?? Promise.resolve()
        // The caller sees the interruption at once; the worker is dealt with in the background of the finalizer.
        if (!settled) {
          settled = true
          this.outstanding--
          this.options.onSettle()
        }
        return cancelled
      })
    })
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
  close(): Promise<void> {
    this.live = undefined
    const lives = [...this.lives]
    this.lives.clear()
    for (const live of lives) live.dead = true
    return Promise.all(lives.map((live) => this.stop(live))).then(() => undefined)
  }

  private stop(live: Live): Promise<void> {
    if (live.pending.size > 0) return live.endpoint.terminate()
    return live.ready.then(
      () =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, CLOSE_GRACE)
          live.closed = () => {
            clearTimeout(timer)
            resolve()
          }
          try {
            live.endpoint.post({ _: "close" })
          } catch {
            resolve()
          }
        }),
      () => undefined
    ).then(() => live.endpoint.terminate())
  }
}
