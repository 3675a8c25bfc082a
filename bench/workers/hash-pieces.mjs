// Hashes pieces of a shared buffer as the main thread finishes reading them (bench/d1-levers.ts).
import { createXXHash64 } from "hash-wasm"
import { parentPort } from "node:worker_threads"

const hasher = await createXXHash64()
let view
parentPort.on("message", (message) => {
  if (message.buffer !== undefined) {
    view = new Uint8Array(message.buffer)
    hasher.init()
  } else if (message.done === true) {
    parentPort.postMessage(hasher.digest("hex"))
  } else {
    hasher.update(view.subarray(message.from, message.to))
  }
})
parentPort.postMessage("ready")
