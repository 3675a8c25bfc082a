/**
 * Where finished batches go: to the sink as they complete, or held until every earlier batch has gone, for
 * results in input order. A batch's pre-dispatch permit comes back only as it leaves, so that results held
 * for order stay bounded too.
 */
import * as Effect from "effect/Effect"
import type * as Semaphore from "effect/Semaphore"
import { type Outcome, sizeOf } from "./outcome.ts"

export const makeReorder = <A, E>(
  emit: (start: number, outcome: Outcome<A, E>) => Effect.Effect<void>,
  permits: Semaphore.Semaphore,
  ordered: boolean
) => {
  const pending = new Map<number, Outcome<A, E>>()
  let expected = 0
  return (start: number, outcome: Outcome<A, E>): Effect.Effect<void> =>
    Effect.gen(function*() {
      if (!ordered) {
        yield* emit(start, outcome)
        yield* permits.release(1)
        return
      }
      pending.set(start, outcome)
      while (pending.has(expected)) {
        const ready = pending.get(expected)!
        pending.delete(expected)
        yield* emit(expected, ready)
        expected += sizeOf(ready)
        yield* permits.release(1)
      }
    })
}
