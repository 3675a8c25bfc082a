/**
 * A map's input as the dispatcher pulls it: an array, an iterable, an async iterable or a Stream, behind one
 * lazy, buffered puller. Nothing is pulled before the dispatcher asks for it.
 */
import * as Effect from "effect/Effect"
import * as Pull from "effect/Pull"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/** A lazy, buffered puller over any input. */
export interface Source<I, E> {
  /** The input's length, when known up front. */
  readonly length?: number | undefined
  /** Pulls until `n` items are buffered or the input ends. */
  readonly fill: (n: number) => Effect.Effect<void, E>
  readonly buffered: () => number
  readonly done: () => boolean
  readonly take: (n: number) => Array<I>
  /** The next buffered item, if any. */
  readonly peek: () => I | undefined
}

/** `pull(n)` returns some items (at most `n` where it can tell), or undefined at the end. */
const bufferedSource = <I, E>(pull: (n: number) => Effect.Effect<ReadonlyArray<I> | undefined, E>): Source<I, E> => {
  // Pulled chunks are kept as they come and copied once, into the batch that takes them.
  const chunks: Array<ReadonlyArray<I>> = []
  let head = 0
  let offset = 0
  let count = 0
  let ended = false
  const fill = (n: number): Effect.Effect<void, E> =>
    Effect.whileLoop({
      while: () => !ended && count < n,
      body: () => pull(n - count),
      step: (chunk) => {
        if (chunk === undefined) ended = true
        else if (chunk.length > 0) {
          chunks.push(chunk)
          count += chunk.length
        }
      }
    })
  return {
    fill,
    buffered: () => count,
    done: () => ended,
    peek: () => (head < chunks.length ? chunks[head]![offset] : undefined),
    take: (n) => {
      const out: Array<I> = []
      while (out.length < n && head < chunks.length) {
        const chunk = chunks[head]!
        const end = Math.min(chunk.length, offset + n - out.length)
        for (let i = offset; i < end; i++) out.push(chunk[i]!)
        offset = end
        if (offset === chunk.length) {
          chunks[head++] = undefined!
          offset = 0
        }
      }
      if (head === chunks.length || head >= 1024) {
        chunks.splice(0, head)
        head = 0
      }
      count -= out.length
      return out
    }
  }
}

const arraySource = <I>(array: ReadonlyArray<I>): Source<I, never> => {
  let offset = 0
  return {
    length: array.length,
    fill: () => Effect.void,
    buffered: () => array.length - offset,
    done: () => true,
    peek: () => array[offset],
    take: (n) => {
      const out = array.slice(offset, offset + n)
      offset += out.length
      return out
    }
  }
}

export type Input<I, E, R> = Iterable<I> | AsyncIterable<I> | Stream.Stream<I, E, R>

export const makeSource = <I, E, R>(input: Input<I, E, R>): Effect.Effect<Source<I, E>, never, R | Scope.Scope> => {
  if (Array.isArray(input)) return Effect.succeed(arraySource(input as ReadonlyArray<I>))
  if (Stream.isStream(input)) {
    return Effect.map(
      Stream.toPull(input as Stream.Stream<I, E, R>),
      (pull) =>
        bufferedSource<I, E>(() =>
          pull.pipe(Pull.catchDone(() => Effect.succeed(undefined))) as Effect.Effect<ReadonlyArray<I> | undefined, E>
        )
    )
  }
  if (Symbol.asyncIterator in (input as object)) {
    return Effect.acquireRelease(
      Effect.sync(() => (input as AsyncIterable<I>)[Symbol.asyncIterator]()),
      (iterator) => Effect.promise(async () => void (await iterator.return?.())).pipe(Effect.ignore)
    ).pipe(
      Effect.map((iterator) =>
        bufferedSource<I, E>(() =>
          Effect.map(Effect.promise(() => iterator.next()), (next) => (next.done ? undefined : [next.value]))
        )
      )
    )
  }
  return Effect.acquireRelease(
    Effect.sync(() => (input as Iterable<I>)[Symbol.iterator]()),
    (iterator) => Effect.sync(() => iterator.return?.())
  ).pipe(Effect.map((iterator) =>
    bufferedSource<I, E>((n) =>
      Effect.sync(() => {
        // Exactly as many as asked for: a generator is never run ahead of dispatch.
        const chunk: Array<I> = []
        for (let i = 0; i < n; i++) {
          const next = iterator.next()
          if (next.done) return chunk.length > 0 ? chunk : undefined
          chunk.push(next.value)
        }
        return chunk
      })
    )
  ))
}
