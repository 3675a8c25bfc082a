/**
 * The runner every transport of the batch protocol shares (a pool's slots, a Remote queue): it encodes and
 * shares a batch's items, sends them, decodes what comes back, and runs again the items after a worker
 * replaced at a stuck one.
 */
import * as Effect from "effect/Effect"
import { InvalidOptions, type ParallelError } from "../../ParallelError.ts"
import { decode, exitsOf, type Outcome } from "./outcome.ts"
import type { Shipment } from "./pool.ts"
import type { Encoded } from "./protocol.ts"
import type { RunOptions, WorkerRef } from "./runner.ts"
import { MovedTwice, shareAll, type Sharer } from "./share.ts"
import { identity, inlineEffect, type Work } from "./work.ts"
import { Status } from "./workerRuntime.js"

/**
 * Runs batches of `work` over a transport: `send` carries a shipment to a slot's worker and returns its raw
 * results; `describe` names the worker in a defect's stack.
 */
export const transportRun = <I, A, E>(
  work: Work<I, A, E>,
  sharer: Sharer,
  send: (slot: number, shipment: Shipment) => Effect.Effect<Encoded, ParallelError>,
  describe: (slot: number) => string,
  /** Where the slot's worker is; `undefined` when the transport tells `onRanBy` itself, from each reply (Remote). */
  whereIs: ((slot: number) => Omit<WorkerRef, "name">) | undefined
) => {
  const ship = (slot: number, items: ReadonlyArray<I>, start: number, options: RunOptions) =>
    Effect.suspend((): Effect.Effect<Encoded, ParallelError> => {
      let encoded: ReadonlyArray<unknown> = items
      if (work.encodeItem !== identity) {
        // Pushed, not preallocated: structured clone copies packed arrays much faster than holey ones.
        const out: Array<unknown> = []
        for (let i = 0; i < items.length; i++) out.push(work.encodeItem(items[i]!))
        encoded = out
      }
      if (work.mayShare) {
        try {
          encoded = shareAll(sharer, encoded)
        } catch (error) {
          if (!(error instanceof MovedTwice)) throw error
          return Effect.fail(new InvalidOptions({ option: "transfer", message: error.message }))
        }
      }
      const onProgress = options.onProgress
      return send(slot, {
        items: encoded,
        start,
        failFast: options.failFast,
        timeout: options.timeout,
        refs: sharer.takeRefs(),
        transfer: sharer.takeTransfer(),
        timings: options.timings,
        parent: options.parent,
        onProgress: onProgress === undefined ? undefined : (index, data) => onProgress(start + index, data),
        onMoved: options.onMoved,
        onRanBy: options.onRanBy
      }).pipe(
        // The slot's worker (started by now), unless the transport learnt from the reply who ran it (Remote).
        Effect.tap(() =>
          Effect.sync(() => {
            if (options.onRanBy !== undefined && whereIs !== undefined) {
              options.onRanBy({ name: describe(slot), ...whereIs(slot) })
            }
          })
        )
      )
    })
  const run = (
    slot: number,
    items: ReadonlyArray<I>,
    start: number,
    options: RunOptions
  ): Effect.Effect<Outcome<A, E>, ParallelError> =>
    Effect.flatMap(ship(slot, items, start, options), (raw) => {
      if (raw.status?.includes(Status.InlineEffect)) return Effect.fail(inlineEffect(work.label))
      const outcome = decode(work, raw, start, items.length, options.timeout, describe(slot))
      const stoppedAt = raw.stoppedAt
      if (stoppedAt === undefined || options.failFast || stoppedAt + 1 >= items.length) {
        return Effect.succeed(outcome)
      }
      // The worker was replaced at a stuck item: the items after it run on the replacement.
      const next = stoppedAt + 1
      return Effect.map(run(slot, items.slice(next), start + next, options), (rest): Outcome<A, E> => ({
        _tag: "Exits" as const,
        exits: [...exitsOf(outcome), ...exitsOf(rest)],
        duration: outcome.duration + rest.duration
        // No timings: the stuck item's end died with its worker, so they would not line up with the items.
      }))
    })
  return run
}
