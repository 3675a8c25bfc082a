/**
 * The contract between the dispatch engine and a backend: a backend prepares a `Runner` for one map, and the
 * engine runs batches on its slots. Internal: users build backends with `Backend.make` or a layer constructor.
 */
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { InvalidOptions, ParallelError } from "../../ParallelError.ts"
import type { Outcome } from "./outcome.ts"
import type { Work } from "./work.ts"

/** A worker that ran a batch: its name ("threads worker 3", "<host> pid <pid> thread <n>"), and where it is. */
export interface WorkerRef {
  readonly name: string
  readonly host?: string | undefined
  readonly pid?: number | undefined
  /** The thread within its process (0: the main thread). */
  readonly thread?: number | undefined
}

/** How one batch runs. */
export interface RunOptions {
  /** Stop the batch at its first failure. */
  readonly failFast: boolean
  /** Per-item limit in milliseconds, counted from the moment the item starts. */
  readonly timeout: number | undefined
  /** Receives what a running task reports with `Progress.report`, with the item's input index. */
  readonly onProgress: ((index: number, data: unknown) => void) | undefined
  /** Told when the batch lost its worker and went to another (a Remote batch that stalled). */
  readonly onMoved?: (() => void) | undefined
  /** Told which worker ran the batch, for reports and span attributes. */
  readonly onRanBy?: ((worker: WorkerRef) => void) | undefined
  /** Report when each item started and ended (`Outcome.timings`), for a tracer's task spans. */
  readonly timings?: boolean | undefined
  /** The batch's span: a Task's own spans become its children, and its logs carry its ids, wherever it runs. */
  readonly parent?: { readonly traceId: string; readonly spanId: string } | undefined
}

/** What a map tells its backend when it prepares: whether the input's buffers may be moved. */
export interface PrepareOptions {
  readonly transfer?: boolean | undefined
}

/** A backend prepared for one map: its slots and a way to run a batch on one of them. */
export interface Runner<I, A, E> {
  readonly slots: number
  /**
   * Slots usable now, for a backend whose capacity changes during a map (Remote: the workers connected).
   * Absent: every slot, always. `settled` also completes when it changes.
   */
  readonly capacity?: (() => number) | undefined
  /** Batches sent to a slot and not yet finished, by every map sharing the backend. */
  readonly outstanding: (slot: number) => number
  /** Completes when the next batch of any map sharing the backend finishes. */
  readonly settled: Effect.Effect<void>
  /**
   * Batch-size policy state kept across maps of the same work on this backend, by policy, so that a warm
   * pool starts where the last map left off (joblib keeps its auto batch size within `with Parallel()`).
   */
  readonly batchState: WeakMap<object, unknown> | undefined
  /** Workers started so far to replace others (crashed, timed out, or over their memory limit). */
  readonly restarts: () => number
  /**
   * The least work (milliseconds) worth a batch's round trip: auto batching never splits the tail of the
   * input below it. Default 10; a backend with a costlier round trip (a queue on a server) asks for more.
   */
  readonly minBatchMillis?: number | undefined
  /**
   * How long automatic batching makes a batch once it knows how long an item takes, before the tail: a backend
   * whose every batch costs milliseconds of CPU between machines asks for batches long enough to make that a
   * small share. Absent: joblib's rule (batches of 0.2 to 2 seconds, reached by doubling).
   */
  readonly targetBatchMillis?: number | undefined
  readonly run: (
    slot: number,
    items: ReadonlyArray<I>,
    /** Input index of the first item. */
    start: number,
    options: RunOptions
  ) => Effect.Effect<Outcome<A, E>, ParallelError>
}

/** Which implementation a map would rather run on, for a hint-aware backend. */
export type Prefer = "threads" | "processes"

/**
 * The engine side of a `Backend` service: every Backend Layer provides an object of this shape, whose public
 * type shows only its name and workers.
 */
export const engineOf = (backend: { readonly name: string; readonly workers: number }): Backend => backend as Backend

/** The backend service's shape (public as `Backend.Backend`). */
export interface Backend {
  readonly name: string
  /** How many batches it runs at once. */
  readonly workers: number
  /**
   * Present on a hint-aware backend (`Backend.layerAuto`): the backend to use for a map's `prefer` hint.
   * Backends without it ignore the hint, so that an explicitly provided Layer always wins.
   */
  readonly select?: ((prefer: Prefer) => Effect.Effect<Backend, InvalidOptions>) | undefined
  /** Checks that the work can run here (for example that a function can be shipped) before any dispatch. */
  readonly prepare: <I, A, E>(
    work: Work<I, A, E>,
    /** The whole input, when it is an array: lets a backend plan how to move big buffers. */
    items?: ReadonlyArray<I> | undefined,
    options?: PrepareOptions | undefined
  ) => Effect.Effect<Runner<I, A, E>, ParallelError, Scope.Scope>
}
