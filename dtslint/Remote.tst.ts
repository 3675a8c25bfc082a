import type { Effect, Scope } from "effect"
import { describe, expect, it } from "tstyche"
import { type Backend, type ParallelError, Remote } from "../src/index.ts"

describe("Remote.status and Remote.monitor", () => {
  it("read a queue's Status, failing with RemoteFailure or InvalidOptions", () => {
    expect(Remote.status({ redis: "redis://127.0.0.1:6379/0" })).type.toBe<
      Effect.Effect<Remote.Status, ParallelError.RemoteFailure | ParallelError.InvalidOptions>
    >()
    expect(Remote.monitor({ redis: "redis://127.0.0.1:6379/0", queue: "q" })).type.toBe<
      Effect.Effect<
        Effect.Effect<Remote.Status, ParallelError.RemoteFailure>,
        ParallelError.RemoteFailure | ParallelError.InvalidOptions,
        Scope.Scope
      >
    >()
  })

  it("a Status lists workers with their threads", () => {
    expect<Remote.Status["workers"][number]>().type.toBe<Remote.WorkerInfo>()
    expect<Remote.WorkerInfo["threads"]>().type.toBe<number>()
  })

  it("take a queue name and a timeout, nothing else", () => {
    expect(Remote.status).type.not.toBeCallableWith({ redis: "redis://x", slots: 4 })
  })
})

describe("Backend", () => {
  it("exports the custom backend's contract, not the engine's bookkeeping", () => {
    expect<Backend.Outcome<number, string>>().type.toBeAssignableFrom({
      _tag: "Values" as const,
      values: [1],
      duration: 1
    })
  })
})

// The engine's side is internal: naming it is an error (an unused directive would fail this file).
// @ts-expect-error has no exported member 'Runner'
export type NoRunner = Backend.Runner<number, number, never>
// @ts-expect-error has no exported member 'RunOptions'
export type NoRunOptions = Backend.RunOptions
describe("Backend's engine side", () => {
  it("is not exported", () => {
    expect<Backend.Prefer>().type.toBe<"threads" | "processes">()
  })
})
