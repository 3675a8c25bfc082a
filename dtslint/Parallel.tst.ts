import { type Effect, type Exit, Layer, pipe, type Result, Schedule, Schema, Stream } from "effect"
import { describe, expect, it } from "tstyche"
import { Backend, Parallel, type ParallelError, Task } from "../src/index.ts"

class Negative extends Schema.TaggedError<Negative>()("Negative", { value: Schema.Number }) {}

declare const SquareRoot: Task.Task<number, number, Negative>
declare const numbers: ReadonlyArray<number>
declare const numberStream: Stream.Stream<number, "StreamError">

describe("Parallel.map", () => {
  it("infers A and E from a Task, data-first and data-last", () => {
    expect(Parallel.map(numbers, SquareRoot)).type.toBe<
      Effect.Effect<Array<number>, Negative | ParallelError.ParallelError>
    >()
    expect(pipe(numbers, Parallel.map(SquareRoot))).type.toBe<
      Effect.Effect<Array<number>, Negative | ParallelError.ParallelError>
    >()
  })

  it("infers A from an inline function, awaiting promises", () => {
    expect(Parallel.map(numbers, (x) => String(x))).type.toBe<
      Effect.Effect<Array<string>, ParallelError.ParallelError>
    >()
    expect(Parallel.map(numbers, async (x) => x > 1)).type.toBe<
      Effect.Effect<Array<boolean>, ParallelError.ParallelError>
    >()
    expect(pipe(numbers, Parallel.map((x: number, index: number) => [x, index] as const))).type.toBe<
      Effect.Effect<Array<readonly [number, number]>, ParallelError.ParallelError>
    >()
  })

  it("carries a Stream input's error and requirements", () => {
    expect(Parallel.map(numberStream, SquareRoot)).type.toBe<
      Effect.Effect<Array<number>, Negative | "StreamError" | ParallelError.ParallelError>
    >()
  })

  it("moves typed errors into the values in exit and result modes", () => {
    expect(Parallel.map(numbers, SquareRoot, { mode: "exit" })).type.toBe<
      Effect.Effect<Array<Exit.Exit<number, Negative | ParallelError.TaskTimeout>>, ParallelError.ParallelError>
    >()
    expect(Parallel.map(numbers, SquareRoot, { mode: "result" })).type.toBe<
      Effect.Effect<Array<Result.Result<number, Negative | ParallelError.TaskTimeout>>, ParallelError.ParallelError>
    >()
  })

  it("types retry's filter with the task's errors, timeouts and crashes", () => {
    Parallel.map(numbers, (x) => x, {
      retry: {
        schedule: Schedule.recurs(2),
        while: (error) => {
          expect(error).type.toBeAssignableTo<ParallelError.TaskTimeout | ParallelError.WorkerCrashed>()
          return true
        }
      }
    })
    Parallel.map(numbers, SquareRoot, {
      retry: {
        schedule: Schedule.recurs(2),
        while: (error) => {
          expect(error).type.toBeAssignableTo<Negative | ParallelError.TaskTimeout | ParallelError.WorkerCrashed>()
          expect<Negative | ParallelError.TaskTimeout | ParallelError.WorkerCrashed>().type.toBeAssignableTo<
            typeof error
          >()
          return error._tag !== "Negative"
        }
      }
    })
    expect(Parallel.map).type.not.toBeCallableWith(numbers, SquareRoot, { retry: 3 })
    expect(Parallel.map).type.not.toBeCallableWith(numbers, SquareRoot, { timeout: true })
  })

  it("rejects items of the wrong type", () => {
    expect(Parallel.map).type.not.toBeCallableWith(["a"], SquareRoot)
  })
})

describe("Parallel.stream", () => {
  it("emits values in order, or indexed values when unordered", () => {
    expect(Parallel.stream(numbers, SquareRoot)).type.toBe<
      Stream.Stream<number, Negative | ParallelError.ParallelError>
    >()
    expect(Parallel.stream(numbers, SquareRoot, { ordered: false })).type.toBe<
      Stream.Stream<Parallel.Indexed<number>, Negative | ParallelError.ParallelError>
    >()
    expect(pipe(numbers, Parallel.stream(SquareRoot))).type.toBe<
      Stream.Stream<number, Negative | ParallelError.ParallelError>
    >()
  })
})

describe("Task.make", () => {
  it("infers payload, success and error from the Schemas", () => {
    const task = Task.make("T", {
      payload: Schema.String,
      success: Schema.Number,
      error: Negative,
      run: (s) => s.length,
      url: "file:///t.ts"
    })
    expect(task).type.toBe<Task.Task<string, number, Negative>>()
  })

  it("takes a layer that provides no service (a tracer, say) when run needs none", () => {
    expect(Task.make).type.toBeCallableWith("T", {
      payload: Schema.String,
      success: Schema.Number,
      run: (s: string) => s.length,
      layer: Layer.empty
    })
  })

  it("requires a layer when run needs services", () => {
    expect(Task.make).type.not.toBeCallableWith("T", {
      payload: Schema.String,
      success: Schema.Number,
      run: (_: string) => Stream.runCount(Stream.never) as Effect.Effect<number, never, "Service">
    })
  })
})

describe("worker backends", () => {
  it("fail to build with InvalidOptions, or TaskModuleError inside a worker importing a task module", () => {
    expect(Backend.layerThreads()).type.toBe<
      Layer.Layer<never, ParallelError.InvalidOptions | ParallelError.TaskModuleError>
    >()
    expect(Backend.layerProcesses({ stderr: "capture" })).type.toBe<
      Layer.Layer<never, ParallelError.InvalidOptions | ParallelError.TaskModuleError>
    >()
    expect(Backend.layerProcesses).type.not.toBeCallableWith({ stderr: "discard" })
  })

  it("a ParallelError may be a TaskModuleError", () => {
    expect<ParallelError.TaskModuleError>().type.toBeAssignableTo<ParallelError.ParallelError>()
  })
})

describe("Backend.make", () => {
  it("is a Layer that fails only with InvalidOptions, and runBatch must return an Outcome", () => {
    expect(Backend.make({ name: "custom", workers: 2, runBatch: (batch) => batch.runHere })).type.toBe<
      Layer.Layer<never, ParallelError.InvalidOptions>
    >()
    expect(Backend.make).type.not.toBeCallableWith({
      name: "custom",
      workers: 2,
      runBatch: () => Schedule.forever
    })
  })
})

describe("Backend.Backend", () => {
  it("shows a name and a worker count, and nothing of the engine", () => {
    expect<keyof Backend.Backend>().type.toBe<"name" | "workers">()
  })
})

describe("Parallel.all", () => {
  it("types its results per position for a tuple of calls, and as a union for an array", () => {
    const Fit = Task.make("Fit", {
      payload: Schema.Tuple([Schema.Number, Schema.Number]),
      success: Schema.Number,
      run: ([x, y]) => x * y
    })
    const Label = Task.make("Label", { payload: Schema.Number, success: Schema.String, error: Negative, run: String })
    expect(Fit(1, 2)).type.toBe<Task.Call<readonly [number, number], number, never>>()
    expect(Fit).type.not.toBeCallableWith(1)
    expect(Label).type.not.toBeCallableWith("1")
    expect(Parallel.all([Fit(1, 2), Label(3)])).type.toBe<
      Effect.Effect<[number, string], Negative | ParallelError.ParallelError>
    >()
    const calls = [Fit(1, 2), Label(3)] as Array<Task.Call<any, number, never> | Task.Call<any, string, Negative>>
    expect(Parallel.all(calls)).type.toBe<
      Effect.Effect<Array<number | string>, Negative | ParallelError.ParallelError>
    >()
    expect(Parallel.all([Label(3)], { mode: "result" })).type.toBe<
      Effect.Effect<[Result.Result<string, Negative | ParallelError.TaskTimeout>], ParallelError.ParallelError>
    >()
  })
})
