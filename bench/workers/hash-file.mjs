// Re-reads a file from the page cache into a scratch buffer of its own (faulted in once) and hashes it
// (bench/d1-levers.ts): a checksum for a load whose bytes live in memory this thread cannot see.
import { createXXHash64 } from "hash-wasm"
import * as Fs from "node:fs"
import { parentPort } from "node:worker_threads"

const PIECE = 8 << 20
const hasher = await createXXHash64()
const scratch = new Uint8Array(PIECE).fill(1)
parentPort.on("message", ({ path, from, to }) => {
  const fd = Fs.openSync(path, "r")
  hasher.init()
  for (let at = from; at < to;) {
    const n = Fs.readSync(fd, scratch, 0, Math.min(PIECE, to - at), at)
    if (n === 0) break
    hasher.update(scratch.subarray(0, n))
    at += n
  }
  Fs.closeSync(fd)
  parentPort.postMessage(hasher.digest("hex"))
})
parentPort.postMessage("ready")
