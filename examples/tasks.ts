/**
 * Tasks: named, Schema-typed work with typed errors and per-worker services.
 * Workers import this module to find the task, so the program itself is
 * guarded by `import.meta.main` (JavaScript's `if __name__ == "__main__"`).
 * Run: `node examples/tasks.ts`
 */
import { Context, Effect, Layer, Schema } from "effect"
import { Backend, Parallel, Task } from "effect-joblib"
import * as assert from "node:assert/strict"

class Tokenizer extends Context.Service<Tokenizer, { readonly split: (text: string) => Array<string> }>()(
  "examples/Tokenizer"
) {}

class EmptyDocument extends Schema.TaggedError<EmptyDocument>()("EmptyDocument", { index: Schema.Int }) {}

const Document = Schema.Struct({ index: Schema.Int, text: Schema.String })

/** Counts the words of a document; the tokenizer is built once per worker (joblib's initializer). */
export const CountWords = Task.make("CountWords", {
  payload: Document,
  success: Schema.Struct({ index: Schema.Int, words: Schema.Int }),
  error: EmptyDocument,
  run: (document) =>
    Effect.gen(function*() {
      const tokenizer = yield* Tokenizer
      const words = tokenizer.split(document.text)
      if (words.length === 0) return yield* new EmptyDocument({ index: document.index })
      return { index: document.index, words: words.length }
    }),
  layer: Layer.succeed(Tokenizer)({ split: (text) => text.split(/\s+/).filter((word) => word.length > 0) })
})

if (import.meta.main) {
  const documents = ["the quick brown fox", "jumps over", "the lazy dog"].map((text, index) => ({ index, text }))
  const program = Effect.gen(function*() {
    const counts = yield* Parallel.map(documents, CountWords)
    console.log(counts)
    assert.deepEqual(counts.map((c) => c.words), [4, 2, 3])

    // A typed failure crosses the worker boundary as the same class.
    const failed = yield* Effect.flip(Parallel.map([...documents, { index: 3, text: "   " }], CountWords))
    console.log(`failed with ${failed._tag}`)
    assert.ok(failed instanceof EmptyDocument)

    // Or keep every item's outcome.
    const outcomes = yield* Parallel.map([{ index: 0, text: "" }, documents[1]!], CountWords, { mode: "result" })
    assert.deepEqual(outcomes.map((r) => r._tag), ["Failure", "Success"])
  })
  await Effect.runPromise(program.pipe(Effect.provide(Backend.layerThreads({ workers: 2 }))))
}
