/**
 * A fixed set of worker slots speaking the batch protocol. Each slot owns at
 * most one live worker; a worker that dies or ignores a cancel is replaced on
 * the slot's next batch.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { TaskNotFound, WorkerCrashed } from "../ParallelError.ts"
import { CANCEL, type FromWorker, type ToWorker, type WorkSpec } from "./protocol.ts"

/** A started worker, thread or process. */
export interface Endpoint {
  readonly id: number
  readonly post: (message: ToWorker, transfer?: ReadonlyArray<ArrayBuffer>) => void
  readonly terminate: () => Promise<void>
}

export interface EndpointHandlers {
  readonly onMessage: (message: FromWorker) => void
  readonly onExit: (exitCode: number | undefined, signal: string | undefined) => void
  readonly onError: (error: Error) => void
}

export type Spawn = (control: SharedArrayBuffer, handlers: EndpointHandlers) => Endpoint

export interface RawOutcome {
  readonly values: ReadonlyArray<unknown>
  readonly status: Uint8Array | undefined
  /** The batch stopped because a task interrupted itself; items from `values.length` on did not finish. */
  readonly interrupted: boolean
  readonly duration: number
}

interface Pending {
  readonly resolve: (exit: Exit.Exit<RawOutcome, TaskNotFound | WorkerCrashed>) => void
  readonly spec: WorkSpec
}

interface Live {
  readonly endpoint: Endpoint
  readonly control: Int32Array
  readonly ready: Promise<void>
  readonly pending: Map<number, Pending>
  readonly keys: Set<number>
  dead: boolean
}

let nextBatchId = 1

const specName = (spec: WorkSpec) => (spec.kind === "task" ? spec.name : "<inline function>")

export class Slot {
  readonly index: number
  private live: Live | undefined
  private readonly spawn: Spawn
  private readonly grace: number
  /** Batches sent to this slot and not yet answered. */
  outstanding = 0
  /** How many workers this slot has started. */
  spawned = 0

  private readonly onSettle: () => void
  constructor(index: number, spawn: Spawn, grace: number, onSettle: () => void) {
    this.index = index
    this.spawn = spawn
    this.grace = grace
    this.onSettle = onSettle
  }

  /** Starts the worker now, so that the first batch finds it warm. */
  warm(): Promise<void> {
    return this.ensure().ready
  }

  get workerId(): number | undefined {
    return this.live?.endpoint.id
  }

  private ensure(): Live {
    if (this.live !== undefined && !this.live.dead) return this.live
    const controlBuffer = new SharedArrayBuffer(4)
    let markReady!: () => void
    let failReady!: (error: Error) => void
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve
      failReady = reject
    })
    ready.catch(() => {})
    const pending = new Map<number, Pending>()
    const live: Live = {
      endpoint: undefined as unknown as Endpoint,
      control: new Int32Array(controlBuffer),
      ready,
      pending,
      keys: new Set(),
      dead: false
    }
    const die = (exitCode: number | undefined, signal: string | undefined, reason: string) => {
      if (live.dead) return
      live.dead = true
      const id = live.endpoint?.id ?? -1
      failReady(new Error(reason))
      for (const [, request] of pending) {
        request.resolve(Exit.fail(
          new WorkerCrashed({
            worker: id,
            exitCode,
            signal,
            message: `worker ${id} ${reason} while running ${specName(request.spec)}`
          })
        ))
      }
      pending.clear()
    }
    ;(live as { endpoint: Endpoint }).endpoint = this.spawn(controlBuffer, {
      onMessage: (message) => {
        switch (message._) {
          case "ready":
            return markReady()
          case "done": {
            const request = pending.get(message.id)
            pending.delete(message.id)
            request?.resolve(
              Exit.succeed({
                values: message.values,
                status: message.status,
                interrupted: message.interrupted,
                duration: message.duration
              })
            )
            return
          }
          case "loadFailed": {
            const request = pending.get(message.id)
            pending.delete(message.id)
            if (request === undefined) return
            const spec = request.spec
            request.resolve(Exit.fail(
              new TaskNotFound({
                task: specName(spec),
                module: spec.kind === "task" ? spec.url : "<inline>",
                message: `cannot load ${specName(spec)}: ${message.message}`
              })
            ))
          }
        }
      },
      onExit: (exitCode, signal) =>
        die(exitCode, signal, `exited${signal ? ` on signal ${signal}` : ` with code ${exitCode}`}`),
      onError: (error) => die(undefined, undefined, `failed: ${error.stack ?? error.message}`)
    })
    this.live = live
    this.spawned++
    return live
  }

  /** Kills the current worker; the next batch starts a new one. */
  kill(): Promise<void> {
    const live = this.live
    this.live = undefined
    if (live === undefined) return Promise.resolve()
    return live.endpoint.terminate()
  }

  run(
    key: number,
    spec: WorkSpec,
    items: ReadonlyArray<unknown>,
    start: number,
    failFast: boolean,
    transfer: ReadonlyArray<ArrayBuffer>
  ) {
    return Effect.callback<RawOutcome, TaskNotFound | WorkerCrashed>((resume) => {
      const id = nextBatchId++
      let live: Live
      let settled = false
      this.outstanding++
      const settle = (exit: Exit.Exit<RawOutcome, TaskNotFound | WorkerCrashed>) => {
        if (settled) return
        settled = true
        this.outstanding--
        this.onSettle()
        resume(exit)
      }
      try {
        live = this.ensure()
      } catch (error) {
        settle(Exit.fail(new WorkerCrashed({ worker: -1, message: `cannot start a worker: ${String(error)}` })))
        return
      }
      const request: Pending = { resolve: settle, spec }
      live.pending.set(id, request)
      live.ready.then(() => {
        if (settled || live.dead) return
        const first = !live.keys.has(key)
        live.keys.add(key)
        try {
          live.endpoint.post({ _: "run", id, key, spec: first ? spec : undefined, items, start, failFast }, transfer)
        } catch (error) {
          live.pending.delete(id)
          settle(Exit.die(error))
        }
      }, () => {})
      // Interruption: ask the worker to stop the batch, then kill it if it does not answer in time.
      return Effect.callback<void>((done) => {
        if (settled || live.dead) {
          settle(Exit.failCause(Cause.interrupt()))
          return done(Effect.void)
        }
        Atomics.store(live.control, CANCEL, id)
        live.endpoint.post({ _: "cancel", id })
        const timer = setTimeout(() => {
          live.pending.delete(id)
          settle(Exit.failCause(Cause.interrupt()))
          if (this.live === live) this.live = undefined
          for (const [, other] of live.pending) {
            other.resolve(Exit.fail(
              new WorkerCrashed({
                worker: live.endpoint.id,
                message: `worker ${live.endpoint.id} was terminated: a batch ignored its cancellation`
              })
            ))
          }
          live.pending.clear()
          live.dead = true
          live.endpoint.terminate().finally(() => done(Effect.void))
        }, this.grace)
        live.pending.set(id, {
          spec,
          resolve: () => {
            clearTimeout(timer)
            settle(Exit.failCause(Cause.interrupt()))
            done(Effect.void)
          }
        })
      })
    })
  }

  close(): Promise<void> {
    return this.kill()
  }
}
