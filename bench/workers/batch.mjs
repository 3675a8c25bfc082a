// Raw worker_threads, hand-batched: one message per batch of items.
import { parentPort } from "node:worker_threads"

parentPort.on("message", ({ id, items }) => {
  const out = []
  for (let i = 0; i < items.length; i++) out.push(Math.sqrt(items[i] * items[i]))
  parentPort.postMessage({ id, out })
})
parentPort.postMessage("ready")
