// @ts-check
/** Entry point of a worker thread of `Backend.threads`; plain JavaScript so that it starts without type stripping. */
import { parentPort, workerData } from "node:worker_threads"
import { makeRuntime } from "./workerRuntime.js"

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort)
const { control, threshold } = /** @type {{ control: SharedArrayBuffer; threshold: number }} */ (workerData)
const handle = makeRuntime(
  (message, transfer) => port.postMessage(message, /** @type {Array<ArrayBuffer>} */ (transfer)),
  new Int32Array(control),
  threshold
)
port.on("message", handle)
port.postMessage({ _: "ready" })
