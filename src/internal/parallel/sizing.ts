/**
 * The batch-size policy, in one place: joblib's automatic rule (`Batching.auto`), and how a map applies a
 * policy. A map feeds its policy one observation per finished batch, keeps the smoothed run time per item
 * and per batch, and lets a backend whose round trip is costly set the least work a batch should hold. Near
 * the end of the input it splits the tail finely, as joblib does, so that every worker stays busy.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Pull from "effect/Pull"
import * as Schedule from "effect/Schedule"
import type { Observation } from "../../Batching.ts"
import type { Outcome } from "./outcome.ts"
import type { Runner } from "./runner.ts"
import { estimateBytes } from "./sizeEstimate.ts"
import type { Source } from "./source.ts"

/** Exponential smoothing of run times, the same for the policy's durations and the map's estimates. */
export const smooth = (previous: number, sample: number) => (previous === 0 ? sample : 0.8 * previous + 0.2 * sample)

/** Batches finishing faster than this grow (joblib's `MIN_IDEAL_BATCH_DURATION`). */
const MIN_IDEAL = 200
/** Batches slower than this shrink (joblib's `MAX_IDEAL_BATCH_DURATION`). */
const MAX_IDEAL = 2000

/**
 * joblib's `batch_size="auto"` as a Schedule step: starts at 1, grows (at most doubling) while batches finish in
 * under about 0.2 s, and shrinks when they take over 2 s. Only batches of the current size count.
 */
export const autoStep = () => {
  let size = 1
  let smoothed = 0
  return (_now: number, input: Observation) => {
    if (input.size === size && input.duration >= 0) {
      smoothed = smooth(smoothed, input.duration)
      const old = size
      if (smoothed > 0 && smoothed < MIN_IDEAL) {
        const ideal = Math.floor((old * MIN_IDEAL) / smoothed) * 2
        size = Math.max(1, Math.min(2 * old, ideal))
      } else if (smoothed > MAX_IDEAL && old >= 2) {
        size = Math.max(1, 2 * Math.floor((old * MIN_IDEAL) / smoothed))
      }
      if (size !== old) smoothed = 0
    }
    return Effect.succeed([size, Duration.zero] as [number, Duration.Duration])
  }
}

/** A tail batch should run at least this long, or its round trip costs more than the balance it buys. */
const MIN_TAIL_MILLIS = 10

/** Tasks below `minBatchMillis / RAMP_ITEMS` jump to the backend's least batch instead of ramping. */
const RAMP_ITEMS = 100

/**
 * The most items one batch holds, whatever the batching policy asks: tiny tasks would otherwise grow
 * batches to millions of items, and a stream's memory with them. At this size a batch of the tiniest task
 * (about 20 ns) still runs for over a millisecond, long enough that its round trip stays a small part.
 */
export const MAX_BATCH_ITEMS = 65_536

/**
 * The most bytes one batch carries, input or output, by {@link estimateBytes}: a batch is copied whole to
 * its worker and back, and a stream holds a few batches at a time, so this bounds its memory whatever
 * the items weigh.
 */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024

type Step = Effect.Success<ReturnType<typeof Schedule.toStep<number, Observation, never, never>>>

/** What a warm backend remembers of the last map of the same work: the policy's state, the run time per item and per batch. */
interface Warm {
  readonly step: Step
  perItemMillis: number
  batchMillis: number
}

export interface SizingOptions {
  readonly batchSize: Schedule.Schedule<number, Observation>
  /** Apply joblib's rule of splitting the tail of the input finely, for auto batching. */
  readonly splitTail: boolean
}

/** A map's batch sizing, started from what a warm backend remembers of the same work. */
export const makeSizing = Effect.fnUntraced(function*<I, A, E>(runner: Runner<I, A, E>, options: SizingOptions) {
  const known = runner.batchState?.get(options.batchSize) as Warm | undefined
  const remembered: Warm = known ??
    { step: yield* Schedule.toStep(options.batchSize), perItemMillis: 0, batchMillis: 0 }
  if (known === undefined) runner.batchState?.set(options.batchSize, remembered)
  const nextSize = (observation: Observation, current: number) =>
    remembered.step(0, observation).pipe(
      Effect.map(([size]) => Math.max(1, Math.min(MAX_BATCH_ITEMS, Math.floor(size)))),
      Pull.catchDone(() => Effect.succeed(current)),
      Effect.orDie
    )
  let size = yield* nextSize({ size: 0, duration: 0 }, 1)
  let tailSize: number | undefined
  // Smoothed run time per item and per batch, from finished batches.
  let perItemMillis = remembered.perItemMillis
  let batchMillis = remembered.batchMillis
  const startedWarm = perItemMillis > 0
  let anyFinished = false
  // Estimated bytes per item: of the next input, and of the last batch's first result.
  let inputBytes = 8
  let outputBytes = 8

  /** Learns from a finished batch of `items` items. */
  const observe = (items: number, outcome: Outcome<A, E>) =>
    Effect.map(nextSize({ size: items, duration: outcome.duration }, size), (sized) => {
      perItemMillis = smooth(perItemMillis, outcome.duration / items)
      remembered.perItemMillis = perItemMillis
      batchMillis = smooth(batchMillis, outcome.duration)
      remembered.batchMillis = batchMillis
      // A backend whose round trip is costly (a queue on a server) names the least work worth a batch. For tasks
      // so small that a hundred of them would not fill it, automatic batching grows straight to it rather than
      // doubling from one item; longer tasks ramp as joblib's, so that a long one does not hold many short ones.
      const floor = options.splitTail ? runner.minBatchMillis : undefined
      size = floor === undefined || perItemMillis <= 0 || perItemMillis * RAMP_ITEMS >= floor
        ? sized
        : Math.max(sized, Math.min(MAX_BATCH_ITEMS, Math.ceil(floor / perItemMillis)))
      const target = options.splitTail ? runner.targetBatchMillis : undefined
      if (target !== undefined && perItemMillis > 0) {
        size = Math.max(size, Math.min(MAX_BATCH_ITEMS, Math.floor(target / perItemMillis)))
      }
      anyFinished = true
      if (outcome._tag === "Values" && outcome.values.length > 0) {
        outputBytes = Math.max(1, estimateBytes(outcome.values[0]))
      }
    })

  /** The size of joblib's tail batches, once the input's end is in sight. */
  const tail = (left: number, concurrency: number, byteCap: number) => {
    const minMillis = runner.minBatchMillis ?? MIN_TAIL_MILLIS
    const worthwhile = Math.ceil(minMillis / perItemMillis)
    return Math.max(
      1,
      Math.min(Math.ceil(left / concurrency), byteCap, Math.max(Math.floor(left / (10 * concurrency)), worthwhile))
    )
  }

  /**
   * Pulls the next batch's items into `source`'s buffer and says how many to take. joblib's pre_dispatch with
   * automatic batching: until a batch has finished, at most `preDispatch` items are pulled in all (its batches
   * start at one item, so its count of batches and of items agree). A warm backend already knows its batch
   * size: its first batches are not cut.
   */
  const nextBatch = <EI>(
    source: Source<I, EI>,
    pulled: number,
    preDispatch: number,
    concurrency: number
  ): Effect.Effect<number, EI> =>
    Effect.gen(function*() {
      const pullCap = anyFinished || !options.splitTail || startedWarm ? Infinity : preDispatch - pulled
      const fill = (n: number) => source.fill(Math.max(1, Math.min(n, pullCap)))
      yield* fill(1)
      const first = source.peek()
      if (first !== undefined) inputBytes = Math.max(1, estimateBytes(first))
      const byteCap = Math.max(1, Math.floor(MAX_BATCH_BYTES / Math.max(inputBytes, outputBytes)))
      let batch = Math.min(tailSize ?? size, byteCap)
      if (options.splitTail && tailSize === undefined) {
        const lookahead = Math.min(size, byteCap) * concurrency
        yield* fill(lookahead)
        if (source.done() && source.buffered() < lookahead) {
          // joblib: near the end, split what is left finely so that every worker stays busy. Unlike joblib,
          // never below what keeps a batch worth its round trip, nor above an even share per worker. Until a
          // batch has finished, what a batch is worth is unknown: an even share for now.
          const left = source.buffered()
          if (perItemMillis === 0) batch = Math.min(batch, Math.ceil(left / concurrency))
          else {
            tailSize = tail(left, concurrency, byteCap)
            batch = Math.min(batch, tailSize)
          }
        }
      } else {
        yield* fill(batch)
      }
      return Math.min(batch, Math.max(1, pullCap))
    })

  return { observe, nextBatch }
})
