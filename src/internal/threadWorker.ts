/** Entry point of a worker thread of `Backend.threads`. */
import { parentPort, workerData } from "node:worker_threads"
import type { ToWorker } from "./protocol.ts"
import { makeRuntime } from "./workerRuntime.ts"

const port = parentPort!
const { control, threshold } = workerData as { control: SharedArrayBuffer; threshold: number }
const handle = makeRuntime(
  (message, transfer) => port.postMessage(message, transfer as Array<ArrayBuffer>),
  new Int32Array(control),
  threshold
)
port.on("message", (message: ToWorker) => handle(message))
port.postMessage({ _: "ready" })
