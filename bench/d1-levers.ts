/**
 * `npm run bench -- d1`: the levers for D1's load (an 80 MB Float64Array) with the checksum on, each timed
 * against the load as it is, interleaved round by round: the load without the checksum; reading alone, into
 * fresh memory and into memory already faulted in; hashing alone (xxh64, the dump's checksum) and crc32
 * (`node:zlib`), on resident bytes; and reading with the hash on a second thread, piece by piece as the
 * reads complete. Ratios are each ÷ the load as it is.
 */
import { Effect } from "effect"
import { createXXHash64 } from "hash-wasm"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Worker } from "node:worker_threads"
import * as Zlib from "node:zlib"
import { Persist } from "../src/index.ts"
import { interleaved } from "./harness.ts"

const PIECE = 8 << 20
const AT_ONCE = 4

/** Reads `path` into `bytes` in pieces, several at once, calling `done(i)` as piece `i` completes whole. */
const readPieces = async (path: string, bytes: Uint8Array, done?: (piece: number) => void) => {
  const handle = await Fs.promises.open(path, "r")
  try {
    const pieces = Math.ceil(bytes.length / PIECE)
    let next = 0
    const reader = async () => {
      while (next < pieces) {
        const i = next++
        let offset = i * PIECE
        const end = Math.min(bytes.length, offset + PIECE)
        while (offset < end) {
          const { bytesRead } = await handle.read(bytes, offset, end - offset, offset)
          if (bytesRead === 0) break
          offset += bytesRead
        }
        done?.(i)
      }
    }
    await Promise.all(Array.from({ length: Math.min(AT_ONCE, pieces) }, reader))
  } finally {
    await handle.close()
  }
}

export const run = async () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-d1-"))
  const walk = new Float64Array(10_000_000)
  let x = 0
  for (let i = 0; i < walk.length; i++) walk[i] = x += Math.random() - 0.5
  const file = Path.join(dir, "walk.ejlb")
  await Effect.runPromise(Persist.dump(walk, file, { compress: false }))
  const size = Fs.statSync(file).size
  const resident = new Uint8Array(Fs.readFileSync(file))
  const faulted = new Uint8Array(size).fill(1)
  const hasher = await createXXHash64()
  const worker = new Worker(new URL("./workers/hash-pieces.mjs", import.meta.url))
  await new Promise((resolve) => worker.once("message", resolve))

  /** Reads into shared memory while the worker hashes each piece in order as it completes. */
  const readHashingElsewhere = async () => {
    const bytes = new Uint8Array(new SharedArrayBuffer(size))
    worker.postMessage({ buffer: bytes.buffer })
    const pieces = Math.ceil(size / PIECE)
    const complete = Array.from({ length: pieces }, () => false)
    let sent = 0
    await readPieces(file, bytes, (i) => {
      complete[i] = true
      while (sent < pieces && complete[sent]) {
        worker.postMessage({ from: sent * PIECE, to: Math.min(size, (sent + 1) * PIECE) })
        sent++
      }
    })
    const digest = new Promise<string>((resolve) => worker.once("message", resolve))
    worker.postMessage({ done: true })
    return digest
  }
  const rereader = new Worker(new URL("./workers/hash-file.mjs", import.meta.url))
  await new Promise((resolve) => rereader.once("message", resolve))
  /** Reads into fresh (unshared) memory while the worker reads the file again, into its own buffer, and hashes it. */
  const readHashingAgainElsewhere = async () => {
    const digest = new Promise<string>((resolve) => rereader.once("message", resolve))
    rereader.postMessage({ path: file, from: 0, to: size })
    await readPieces(file, new Uint8Array(size))
    return digest
  }
  // The worker hashes what the main thread would: the same bytes give the same digest.
  hasher.init()
  hasher.update(resident)
  const expected = hasher.digest("hex")
  const elsewhere = await readHashingElsewhere()
  if (elsewhere !== expected) throw new Error(`the worker's digest ${elsewhere} is not ${expected}`)
  const again = await readHashingAgainElsewhere()
  if (again !== expected) throw new Error(`the re-reading worker's digest ${again} is not ${expected}`)

  const cases: ReadonlyArray<readonly [string, () => Promise<unknown> | unknown]> = [
    ["Persist.load, checksum on (as it is)", () => Effect.runPromise(Persist.load(file))],
    ["Persist.load, verify: false", () => Effect.runPromise(Persist.load(file, undefined, { verify: false }))],
    ["read alone, into fresh memory", () => readPieces(file, new Uint8Array(size))],
    ["read alone, into memory already faulted in", () => readPieces(file, faulted)],
    ["xxh64 alone, resident bytes (main thread)", () => {
      hasher.init()
      hasher.update(resident)
      return hasher.digest("binary")
    }],
    ["crc32 alone, resident bytes (node:zlib)", () => Zlib.crc32(resident)],
    ["read into fresh shared memory, xxh64 on a second thread", readHashingElsewhere],
    ["read into fresh memory, a second thread re-reads the file and hashes it", readHashingAgainElsewhere]
  ]
  const medians = await interleaved(9, cases.map(([, f]) => f))
  console.log(`\n### D1 levers: an 80 MB Float64Array, ${(size / 1e6).toFixed(1)} MB on disk\n`)
  console.log("| case | median ms | ÷ the load as it is |")
  console.log("|---|---:|---:|")
  cases.forEach(([name], i) => {
    console.log(`| ${name} | ${medians[i]!.toFixed(1)} | ${(medians[i]! / medians[0]!).toFixed(2)} |`)
  })
  await worker.terminate()
  await rereader.terminate()
  Fs.rmSync(dir, { recursive: true, force: true })
}
