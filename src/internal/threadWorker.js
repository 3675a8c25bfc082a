// @ts-check
/** Entry point of a worker thread of `Backend.threads`; plain JavaScript so that it starts without type stripping. */
import { getHeapStatistics } from "node:v8"
import { parentPort, workerData } from "node:worker_threads"
import { makeRuntime } from "./workerRuntime.js"

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort)
const { control, threshold } = /** @type {{ control: SharedArrayBuffer; threshold: number }} */ (workerData)
const handle = makeRuntime(
  (message, transfer) => port.postMessage(message, /** @type {Array<ArrayBuffer>} */ (transfer)),
  new Int32Array(control),
  threshold,
  // A thread shares its process's resident set, so it is judged by its own heap and the buffers it holds.
  () => {
    const heap = getHeapStatistics()
    return heap.used_heap_size + heap.external_memory
  },
  undefined
)
port.on("message", handle)
port.postMessage({ _: "ready" })
