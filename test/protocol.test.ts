/**
 * The batch protocol's Schemas against the worker runtime itself: a real worker thread is sent requests that
 * decode as `ToWorker`, and every message it sends back must decode as `FromWorker`, so the Schemas and the
 * runtime (plain JavaScript, eval'd in workers) cannot drift apart unnoticed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { Worker } from "node:worker_threads"
import { CacheError, Compression, ParallelError, PersistError } from "../src/index.ts"
import * as Protocol from "../src/internal/parallel/protocol.ts"
import { CANCEL, makeRuntime, Status, workerSource } from "../src/internal/parallel/workerRuntime.js"

const tasks = new URL("./fixtures/tasks.ts", import.meta.url).href
const slowModule = new URL("./fixtures/slowModule.ts", import.meta.url).href
const toWorker = Schema.decodeUnknownSync(Protocol.ToWorker)
const fromWorker = Schema.decodeUnknownSync(Protocol.FromWorker)
const defect = Schema.decodeUnknownSync(Protocol.SerializedDefect)

/** A worker thread speaking the protocol; `until` collects its messages up to the first that `last` accepts. */
const startWorker = () => {
  const control = new SharedArrayBuffer(4)
  const worker = new Worker(workerSource("startThread"), {
    eval: true,
    workerData: { control, threshold: 1024 * 1024 }
  })
  // Each message as it decodes, or what refused it.
  const inbox: Array<() => Protocol.FromWorker> = []
  let wake = () => {}
  worker.on("message", (message) => {
    try {
      const decoded = fromWorker(message)
      inbox.push(() => decoded)
    } catch (error) {
      inbox.push(() => {
        throw error
      })
    }
    wake()
  })
  const until = async (last: (message: Protocol.FromWorker) => boolean) => {
    const taken: Array<Protocol.FromWorker> = []
    while (true) {
      const next = inbox.shift()
      if (next === undefined) {
        await new Promise<void>((resolve) => (wake = resolve))
        continue
      }
      const message = next()
      taken.push(message)
      if (last(message)) return taken
    }
  }
  const send = (message: unknown) => worker.postMessage(toWorker(message))
  return { worker, until, send, control: new Int32Array(control) }
}

const run = (id: number, name: string, items: ReadonlyArray<unknown>, extra: object = {}) => ({
  _: "run",
  id,
  key: id,
  spec: { kind: "task", url: tasks, name },
  items,
  start: 0,
  failFast: false,
  ...extra
})

const isDone = (id: number) => (message: Protocol.FromWorker) =>
  (message._ === "done" || message._ === "loadFailed") && message.id === id

describe("the batch protocol's Schemas", () => {
  it("describe every message a worker thread sends, for each kind of result", async () => {
    const { send, until, worker } = startWorker()
    try {
      assert.deepStrictEqual(await until((m) => m._ === "ready"), [{ _: "ready" }])

      send(run(1, "SquareRoot", [4, 9]))
      const values = (await until(isDone(1))).at(-1)!
      assert.strictEqual(values._, "done")
      assert.deepStrictEqual((values as { values: unknown }).values, [2, 3])
      assert.isUndefined((values as { status?: unknown }).status, "no status when every item succeeded")

      send(run(2, "SquareRoot", [-1]))
      const failed = (await until(isDone(2))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
      assert.deepStrictEqual([...failed.status!], [Status.Failure])
      assert.deepStrictEqual(failed.values, [{ _tag: "Negative", value: -1 }])

      send(run(3, "Throws", [3], { timings: true }))
      const died = (await until(isDone(3))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
      assert.deepStrictEqual([...died.status!], [Status.Defect])
      const serialized = defect(died.values[0])
      assert.strictEqual(serialized.message, "three is not allowed")
      assert.strictEqual(serialized.builtin, "RangeError")
      assert.strictEqual(died.timings!.length, 2)

      send(run(4, "Sleep", [1, 1], { timeout: 5_000 }))
      const timed = await until(isDone(4))
      assert.deepStrictEqual(timed.filter((m) => m._ === "tick").map((m) => (m as { index: number }).index), [0, 1])

      send(run(5, "Reports", [7]))
      const reported = await until(isDone(5))
      assert.deepStrictEqual(
        reported.filter((m) => m._ === "progress").map((m) => (m as { data: unknown }).data),
        [{ step: 1, of: 2 }, { step: 2, of: 2 }]
      )

      send({ ...run(6, "Nothing", [1]), spec: { kind: "task", url: tasks, name: "Nothing" } })
      const missing = (await until(isDone(6))).at(-1)!
      assert.strictEqual(missing._, "loadFailed")

      send({ _: "close" })
      assert.deepStrictEqual((await until((m) => m._ === "closed")).at(-1), { _: "closed" })
    } finally {
      await worker.terminate()
    }
  }, 30_000)

  it(
    "a key's spec, sent with its first batch only, serves the batches after one cancelled before it started",
    async () => {
      const { send, until, worker } = startWorker()
      try {
        await until((m) => m._ === "ready")
        // The pool cancels a batch it has sent (its map failed elsewhere) before the worker reached it.
        send({ _: "cancel", id: 1 })
        send(run(1, "Square", [3]))
        const cancelled = (await until(isDone(1))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
        assert.isTrue(cancelled.interrupted)
        const { spec: _, ...later } = run(2, "Square", [4])
        send({ ...later, key: 1 })
        const served = (await until(isDone(2))).at(-1)!
        assert.strictEqual(served._, "done", JSON.stringify(served))
        assert.deepStrictEqual((served as { values: unknown }).values, [16])

        // A load that failed is tried again by the key's next batch, which reports why, not "unknown work key".
        send({ ...run(3, "Square", [1]), spec: { kind: "task", url: `${tasks}?missing`, name: "Nothing" } })
        const failed = (await until(isDone(3))).at(-1) as Extract<Protocol.FromWorker, { _: "loadFailed" }>
        assert.strictEqual(failed._, "loadFailed")
        const { spec: __, ...again } = run(4, "Square", [1])
        send({ ...again, key: 3 })
        const retried = (await until(isDone(4))).at(-1) as Extract<Protocol.FromWorker, { _: "loadFailed" }>
        assert.strictEqual(retried._, "loadFailed")
        assert.notInclude(retried.message, "unknown work key")
        assert.strictEqual(retried.message, failed.message)
      } finally {
        await worker.terminate()
      }
    },
    30_000
  )

  it("a worker keeps no time of its own: an item stops when its pool sends timeout, and only that item", async () => {
    const { send, until, worker } = startWorker()
    try {
      await until((m) => m._ === "ready")
      // Item 0 sleeps 10 ms and succeeds; item 1 would sleep an hour. A timeout of 20 ms is the pool's to apply.
      send(run(1, "Sleep", [10, 3_600_000], { timeout: 20 }))
      await until((m) => m._ === "tick" && m.index === 1)
      // A stale timeout, for item 0 that already finished, does nothing to item 1.
      send({ _: "timeout", id: 1, index: 0 })
      await new Promise((resolve) => setTimeout(resolve, 200))
      send({ _: "timeout", id: 1, index: 1 })
      const done = (await until(isDone(1))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
      assert.deepStrictEqual([...done.status!], [Status.Timeout], "item 1 timed out when told, not before")
      assert.isAtLeast(done.values[0] as number, 150, "item 1 ran until its timeout message, well past 20 ms")

      // A timeout that arrives before its item starts waiting still stops it.
      send(run(2, "Sleep", [3_600_000], { timeout: 20 }))
      send({ _: "timeout", id: 2, index: 0 })
      const early = (await until(isDone(2))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
      assert.deepStrictEqual([...early.status!], [Status.Timeout])
    } finally {
      await worker.terminate()
    }
  }, 30_000)

  it("a cancel message that arrives late never undoes a newer cancel written to the shared word", async () => {
    const { send, until, worker, control } = startWorker()
    try {
      await until((m) => m._ === "ready")
      send(run(1, "Sleep", [300]))
      // The pool cancels batch 1, then batch 2 (queued behind it): each time it writes the shared word first,
      // and its cancel messages follow. Batch 1's message is handled after the word already names batch 2.
      Atomics.store(control, CANCEL, 1)
      Atomics.store(control, CANCEL, 2)
      send({ _: "cancel", id: 1 })
      send(run(2, "Sleep", [60_000]))
      const first = (await until(isDone(1))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
      assert.isTrue(first.interrupted)
      const second = (await until(isDone(2))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
      assert.isTrue(second.interrupted, "batch 2 was cancelled by the shared word: it must not start")
      assert.deepStrictEqual(second.values, [])
      assert.strictEqual(Atomics.load(control, CANCEL), 2, "the word still names the newest cancel")
    } finally {
      await worker.terminate()
    }
  }, 30_000)

  it("a batch cancelled while its worker loads the task module is answered at once; the load goes on", async () => {
    const { send, until, worker } = startWorker()
    try {
      await until((m) => m._ === "ready")
      send(run(1, "SlowModule", [1], { spec: { kind: "task", url: slowModule, name: "SlowModule" } }))
      send({ _: "cancel", id: 1 })
      const started = performance.now()
      const cancelled = (await until(isDone(1))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
      assert.isTrue(cancelled.interrupted)
      assert.isBelow(performance.now() - started, 2000, "answered before the 3 s load ended, not after it")
      // The module finished loading in the background: the key's next batch runs at once.
      const { spec: _, ...next } = run(2, "SlowModule", [5])
      send({ ...next, key: 1 })
      const served = (await until(isDone(2))).at(-1) as Extract<Protocol.FromWorker, { _: "done" }>
      assert.deepStrictEqual(served.values, [10])
    } finally {
      await worker.terminate()
    }
  }, 30_000)

  it("keeps no cancelled id past its batch: bounded, whatever order cancels and batches come in", async () => {
    const posted: Array<Protocol.FromWorker> = []
    let wake = () => {}
    const handle = makeRuntime(
      (message) => {
        posted.push(message)
        wake()
      },
      new Int32Array(1),
      1024 * 1024,
      () => 0,
      undefined
    )
    const done = async (id: number) => {
      while (!posted.some((message) => message._ === "done" && message.id === id)) {
        await new Promise<void>((resolve) => (wake = resolve))
      }
    }
    const batch = (id: number) => ({
      _: "run" as const,
      id,
      key: 1,
      spec: id === 1 ? { kind: "fn" as const, source: "(x) => x + 1" } : undefined,
      items: [id],
      start: 0,
      failFast: true
    })
    for (let id = 1; id <= 300; id++) {
      if (id % 3 === 0) {
        // A cancel that arrives after its batch has ended.
        handle(batch(id))
        await done(id)
        handle({ _: "cancel", id })
      } else if (id % 3 === 1) {
        // A cancel before its batch arrives.
        handle({ _: "cancel", id })
        handle(batch(id))
        await done(id)
      } else {
        handle(batch(id))
        await done(id)
      }
      assert.isAtMost(handle.cancelledIds(), 1)
    }
    assert.strictEqual(handle.cancelledIds(), 0)
    const interrupted = posted.filter((message) => message._ === "done" && message.interrupted).length
    assert.strictEqual(interrupted, 100, "each batch cancelled before it came was answered as interrupted")
  })

  it("refuse a message that is not the protocol's, naming the field", () => {
    assert.throws(() => toWorker({ ...run(1, "Square", []), items: "not an array" }), /items/)
    assert.throws(() => toWorker({ _: "run", id: -1, key: 0, items: [], start: 0, failFast: true }), /id/)
    assert.throws(() => fromWorker({ _: "done", id: 1, values: [], interrupted: false, memory: 0 }), /duration/)
    assert.throws(() => defect({ name: "Error", message: 1, stack: undefined }), /message/)
  })
})

describe("error families", () => {
  it("each family's guard and wire form derive from its Schema union: every member crosses, a look-alike does not", () => {
    const samples: ReadonlyArray<ParallelError.ParallelError> = [
      new ParallelError.InvalidOptions({ option: "batchSize", message: "0" }),
      new ParallelError.UnshippableFunction({ function: "f", identifiers: ["x"], message: "captures x" }),
      new ParallelError.TaskNotFound({ task: "T", module: "m", message: "no T" }),
      new ParallelError.TaskModuleError({ module: "m", reason: "TestFile", message: "broken" }),
      new ParallelError.WorkerCrashed({ worker: 3, message: "exit 1", cause: new Error("beneath") }),
      new ParallelError.TaskTimeout({ index: 2, timeout: 10, elapsed: 12, message: "slow" }),
      new ParallelError.RemoteFailure({ reason: "Rejected", message: "no", cause: new Error("beneath") })
    ]
    // Every member of the union is sampled, so a new error added to the union is a new case here.
    assert.deepStrictEqual(
      samples.map((error) => error._tag).sort(),
      ParallelError.ParallelError.members.map((member) => member.identifier).sort()
    )
    for (const error of samples) {
      assert.isTrue(ParallelError.isParallelError(error), error._tag)
      const crossed = Protocol.decodeError(structuredClone(Protocol.encodeError(error)))
      assert.strictEqual(crossed._tag, error._tag)
      assert.strictEqual(Object.getPrototypeOf(crossed), Object.getPrototypeOf(error))
      assert.notProperty(crossed, "cause")
    }
    assert.isFalse(ParallelError.isParallelError({ _tag: "InvalidOptions", option: "x", message: "y" }))
    assert.isTrue(PersistError.isPersistError(new Compression.CompressionError({ method: "gzip", message: "bad" })))
    assert.isFalse(PersistError.isPersistError(new ParallelError.InvalidOptions({ option: "x", message: "y" })))
    assert.isTrue(CacheError.isCacheError(new CacheError.Unstorable({ function: "f", message: "class" })))
  })
})
