// @ts-check
/**
 * Entry point of a worker process of `Backend.processes`; plain JavaScript so
 * that it starts without type stripping. Messages use the "advanced"
 * serialization, so typed arrays travel as raw bytes.
 */
import { makeRuntime } from "./workerRuntime.js"

const send = /** @type {NonNullable<typeof process.send>} */ (process.send).bind(process)
const threshold = Number(process.env.EFFECT_JOBLIB_THRESHOLD ?? 1024 * 1024)
// No memory is shared with the parent: cancellations arrive as messages and are recorded here.
const handle = makeRuntime(
  (message) => send(message),
  new Int32Array(1),
  threshold,
  () => process.memoryUsage.rss(),
  20
)
process.on("message", (message) => handle(/** @type {import("./protocol.ts").ToWorker} */ (message)))
// The parent is gone (killed, or closed the channel): nothing is left to work for.
process.on("disconnect", () => process.exit(0))
// Ctrl-C reaches the whole process group; the parent decides when its workers stop.
process.on("SIGINT", () => {})
send({ _: "ready" })
