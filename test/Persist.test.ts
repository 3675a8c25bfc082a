import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema, Sink, Stream } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Codec, Compression, Persist, PersistError } from "../src/index.ts"
import { everything, joblibExample } from "./fixtures/values.ts"
import { tmpfs } from "./tmpfs.ts"

/** A fresh directory, removed afterwards. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-persist-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const headerOf = (path: string) => Codec.readHeader(new Uint8Array(Fs.readFileSync(path)))

describe("Persist", () => {
  describe("joblib's persistence examples", () => {
    // joblib.dump([('a', [1, 2, 3]), ('b', np.arange(10))], filename, compress=...)
    const cases: ReadonlyArray<readonly [string, Persist.DumpOptions | undefined, number]> = [
      ["data.pkl", undefined, Compression.Ids.none],
      ["data.pkl", { compress: true }, Compression.Ids.zstd],
      ["data.pkl.z", undefined, Compression.Ids.zlib],
      ["data.pkl.gz", { compress: ["gzip", 3] }, Compression.Ids.gzip],
      ["data.pkl.zst", undefined, Compression.Ids.zstd],
      ["data.pkl.br", undefined, Compression.Ids.brotli]
    ]
    for (const [name, options, method] of cases) {
      it.effect(`${name} ${JSON.stringify(options ?? {})}`, () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const file = Path.join(dir, name)
          // As joblib's dump, it returns the files it wrote.
          assert.deepStrictEqual(yield* Persist.dump(joblibExample(), file, options), [file])
          assert.strictEqual((yield* headerOf(file)).compression, method)
          assert.deepStrictEqual(yield* Persist.load(file), joblibExample())
          assert.deepStrictEqual(Fs.readdirSync(dir), [name], "no temporary file is left")
        }))
    }

    it.effect("a file object: dump to a Sink, load from a Stream", () =>
      Effect.gen(function*() {
        const chunks: Array<Uint8Array> = []
        const sink = Sink.forEach((chunk: Uint8Array) => Effect.sync(() => void chunks.push(chunk)))
        assert.deepStrictEqual(yield* Persist.dump(joblibExample(), sink, { compress: 3 }), [], "no file written")
        assert.isAbove(chunks.length, 1)
        // Re-chunk into odd sizes, as a network stream would.
        const all = Codec.concat(chunks)
        const pieces = Array.from({ length: Math.ceil(all.length / 7) }, (_, i) => all.subarray(i * 7, i * 7 + 7))
        assert.deepStrictEqual(yield* Persist.load(Stream.fromIterable(pieces)), joblibExample())
      }))
  })

  describe("files", () => {
    it.effect("the method comes from the header, never from the extension", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const zst = Path.join(dir, "really-zstd.gz")
        yield* Persist.dump(everything(), zst, { compress: "zstd" })
        assert.strictEqual((yield* headerOf(zst)).compression, Compression.Ids.zstd)
        assert.deepStrictEqual(yield* Persist.load(zst), everything())
      }))

    it.effect("concurrent loads of big files each verify their own checksum, computed as they are read", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        // 20 MB each: several 8 MB pieces, hashed as they arrive, by loads running at once.
        const files = Array.from({ length: 4 }, (_, k) => Path.join(dir, `big-${k}.bin`))
        yield* Effect.forEach(files, (file, k) => Persist.dump(new Float64Array(2_500_000).fill(k + 0.5), file))
        const loaded = yield* Effect.forEach(files, (file) => Persist.load(file), { concurrency: "unbounded" })
        loaded.forEach((value, k) => {
          const walk = value as Float64Array
          assert.strictEqual(walk.length, 2_500_000)
          assert.strictEqual(walk[2_499_999], k + 0.5)
        })
        // A flipped byte deep in a later piece is still caught.
        const bytes = Fs.readFileSync(files[0]!)
        bytes[17 << 20] ^= 1
        Fs.writeFileSync(files[0]!, bytes)
        const damaged = yield* Effect.flip(Persist.load(files[0]!))
        assert.instanceOf(damaged, PersistError.Corrupted)
        assert.include(damaged.message, "checksum")
      }))

    it.effect("fsync: true writes a durable dump that loads the same", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = Path.join(dir, "durable.bin")
        yield* Persist.dump(everything(), file, { fsync: true, compress: true })
        assert.deepStrictEqual(yield* Persist.load(file), everything())
      }))

    it.effect("data-last and a Schema", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = Path.join(dir, "typed.bin")
        const Row = Schema.Struct({ id: Schema.Int, when: Schema.Date })
        yield* Persist.dump(file, { schema: Schema.Array(Row) })([{ id: 1, when: new Date(9) }])
        assert.deepStrictEqual(yield* Persist.load(file, Schema.Array(Row)), [{ id: 1, when: new Date(9) }])
        const mismatch = yield* Effect.flip(Persist.load(file, Schema.Array(Schema.Struct({ id: Schema.String }))))
        assert.instanceOf(mismatch, PersistError.SchemaMismatch)
        assert.include(mismatch.message, `["id"]`)
      }))

    it.effect("load into shared memory hands arrays to workers without copies", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        for (const compress of [false, true]) {
          const file = Path.join(dir, `walk-${compress}.bin`)
          yield* Persist.dump({ walk: new Float64Array(10_000).fill(3) }, file, { compress })
          const back = (yield* Persist.load(file, undefined, { shared: true })) as { walk: Float64Array }
          assert.instanceOf(back.walk.buffer, SharedArrayBuffer)
          assert.strictEqual(back.walk[9_999], 3)
        }
      }))

    it.effect("a missing file, a truncated file, a file that is not a dump", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const missing = yield* Effect.flip(Persist.load(Path.join(dir, "nope.bin")))
        assert.instanceOf(missing, PersistError.PersistIOError)
        assert.strictEqual((missing as PersistError.PersistIOError).reason, "NotFound")

        const file = Path.join(dir, "cut.bin")
        yield* Persist.dump(everything(), file)
        const bytes = Fs.readFileSync(file)
        Fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100))
        const cut = yield* Effect.flip(Persist.load(file))
        assert.instanceOf(cut, PersistError.Truncated)
        assert.include(cut.message, file, "names the file")
        Fs.writeFileSync(file, "")
        assert.instanceOf(yield* Effect.flip(Persist.load(file)), PersistError.Truncated)
        Fs.writeFileSync(file, "name,score\nada,1\n")
        const notADump = yield* Effect.flip(Persist.load(file))
        assert.instanceOf(notADump, PersistError.BadMagic)
        assert.strictEqual((notADump as PersistError.BadMagic).found.length > 0, true)
        assert.include(notADump.message, file, "names the file")
        const flipped = Buffer.from(bytes)
        flipped[flipped.length - 10]! ^= 0xff
        Fs.writeFileSync(file, flipped)
        const corrupted = yield* Effect.flip(Persist.load(file))
        assert.instanceOf(corrupted, PersistError.Corrupted)
        assert.include(corrupted.message, file, "names the file")
      }))

    it.effect("an extension with no compressor in use is refused, never written uncompressed", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        // The pure-JavaScript set has no zstd.
        const error = yield* Effect.flip(
          Persist.dump([1], Path.join(dir, "data.zst")).pipe(Effect.provide(Compression.layerFflate))
        )
        assert.instanceOf(error, PersistError.InvalidPersistOptions)
        assert.include(error.message, `".zst"`)
        assert.include(error.message, "Compression.layerWith")
        assert.deepStrictEqual(Fs.readdirSync(dir), [])
      }))

    it.effect("bz2 says that no well-kept package provides it", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        for (
          const dump of [
            Persist.dump([1], Path.join(dir, "a.bz2")),
            Persist.dump([1], Path.join(dir, "b"), { compress: "bz2" })
          ]
        ) {
          const error = yield* Effect.flip(dump)
          assert.instanceOf(error, Compression.CompressionError)
          assert.include(error.message, "no well-kept bzip2 package")
        }
        assert.deepStrictEqual(Fs.readdirSync(dir), [])
      }))

    it.effect("a custom compressor's own extension selects it", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        let compressed = 0
        const reversed: Compression.Compressor = {
          id: 201,
          name: "reversed",
          extensions: [".rdf"],
          levels: { min: 0, max: 0, default: 0 },
          compress: (parts) =>
            Effect.sync(() => {
              compressed++
              return [Buffer.concat(parts).reverse()]
            }),
          decompress: (data) => Effect.sync(() => new Uint8Array(data).reverse())
        }
        const file = Path.join(dir, "x.RDF")
        yield* Persist.dump(everything(), file).pipe(Effect.provide(Compression.layerWith(reversed)))
        assert.strictEqual(compressed, 1)
        assert.strictEqual((yield* headerOf(file)).compression, 201)
        assert.deepStrictEqual(
          yield* Persist.load(file).pipe(Effect.provide(Compression.layerWith(reversed))),
          everything()
        )
        // Without the compressor, the dump names the method id it needs.
        assert.instanceOf(yield* Effect.flip(Persist.load(file)), PersistError.UnknownCompression)
      }))

    it.effect("test_register_compressor_already_registered: replacing a built-in method needs force", () =>
      Effect.gen(function*() {
        const mine: Compression.Compressor = { ...Compression.gzip, compress: Compression.zlib.compress }
        const refused = yield* Effect.flip(
          Persist.dump([1], Path.join(yield* tempDir, "x.gz")).pipe(Effect.provide(Compression.layerWith(mine)))
        )
        assert.instanceOf(refused, Compression.CompressionError)
        assert.include(refused.message, "built-in gzip")
        assert.include(refused.message, "force: true")
        // An id of a built-in under a new name is refused too.
        const sameId = yield* Effect.flip(
          Persist.dump([1], Path.join(yield* tempDir, "y.gz")).pipe(
            Effect.provide(Compression.layerWith({ ...mine, name: "mine" }))
          )
        )
        assert.include(sameId.message, "built-in gzip")
      }))

    it.effect("test_lz4_compression: lz4 takes joblib's levels, 0–16, and refuses others", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        for (const level of [0, 3, 16]) {
          const file = Path.join(dir, `x${level}.lz4`)
          yield* Persist.dump([1, 2, 3], file, { compress: ["lz4", level] })
          assert.deepStrictEqual(yield* Persist.load(file), [1, 2, 3])
        }
        const refused = yield* Effect.flip(Persist.dump([1], Path.join(dir, "y.lz4"), { compress: ["lz4", 17] }))
        assert.include(refused.message, "lz4 levels are 0–16, got 17")
      }))

    it.effect("an unknown method's message lists what runs here, and what would add the rest", () =>
      Effect.gen(function*() {
        const absent: Compression.Compressor = {
          ...Compression.gzip,
          id: 210,
          name: "absent",
          extensions: [],
          unavailable: Effect.succeed("needs the package absent-napi")
        }
        const refused = yield* Effect.flip(
          Persist.dump([1], Path.join(yield* tempDir, "x.bin"), { compress: "zip" as never }).pipe(
            Effect.provide(Compression.layerWith(absent))
          )
        )
        assert.include(refused.message, "unknown compression method \"zip\"")
        assert.include(refused.message, "available here: zstd, gzip, zlib, brotli, lz4, xz, lzma;")
        assert.include(refused.message, "bz2 no well-kept package compresses it")
        assert.include(refused.message, "absent needs the package absent-napi")
        assert.notInclude(refused.message.split(";")[0]!, "bz2")
      }))

    it.effect("an lz4 compressor given through layerWith replaces the built-in one on .lz4", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        let used = 0
        const mine: Compression.Compressor = {
          ...Compression.lz4,
          compress: (parts, level) => Effect.andThen(Effect.sync(() => used++), Compression.lz4.compress(parts, level))
        }
        const file = Path.join(dir, "x.lz4")
        yield* Persist.dump([1, 2, 3], file).pipe(Effect.provide(Compression.layerWith(mine, { force: true })))
        assert.strictEqual(used, 1)
        assert.deepStrictEqual(yield* Persist.load(file), [1, 2, 3])
      }))
  })

  describe("lz4, xz and lzma (optional packages, installed here)", () => {
    for (const [method, extension] of [["lz4", ".lz4"], ["xz", ".xz"], ["lzma", ".lzma"]] as const) {
      it.effect(`${method}: by extension and by name, and a damaged body is refused`, () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const byExtension = Path.join(dir, `data${extension}`)
          yield* Persist.dump(everything(), byExtension)
          assert.strictEqual((yield* headerOf(byExtension)).compression, Compression.Ids[method])
          assert.deepStrictEqual(yield* Persist.load(byExtension), everything())

          const byName = Path.join(dir, "data.bin")
          // 2.4 MB: several lz4 blocks.
          const walk = new Float64Array(300_000).map((_, i) => Math.round(i / 7))
          yield* Persist.dump({ walk }, byName, { compress: method })
          assert.strictEqual((yield* headerOf(byName)).compression, Compression.Ids[method])
          assert.isBelow(Fs.statSync(byName).size, walk.byteLength / 2, "it compresses")
          assert.deepStrictEqual(yield* Persist.load(byName), { walk })

          // Damage the compressed body (after the 64-byte header), with the checksum off so the codec sees it.
          const raw = Path.join(dir, "raw.bin")
          yield* Persist.dump({ walk }, raw, { compress: method })
          const bytes = Fs.readFileSync(raw)
          for (let i = 80; i < 120; i++) bytes[i] ^= 0x5a
          Fs.writeFileSync(raw, bytes)
          const error = yield* Effect.flip(Persist.load(raw, undefined, { verify: false }))
          assert.include(["CompressionError", "Corrupted", "Truncated"], error._tag, String(error))
        }))
    }

    it.effect("lz4: a block that states a huge size is refused before anything is reserved for it", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = Path.join(dir, "huge.lz4")
        yield* Persist.dump({ rows: Array.from({ length: 1000 }, (_, i) => i) }, file)
        const bytes = Fs.readFileSync(file)
        // After the 64-byte header: the block count, one (raw, compressed) pair, then the block's own size.
        assert.strictEqual(bytes.readUInt32LE(64), 1)
        bytes.writeUInt32LE(0xfffffff0, 64 + 4 + 8)
        Fs.writeFileSync(file, bytes)
        const error = yield* Effect.flip(Persist.load(file, undefined, { verify: false }))
        assert.instanceOf(error, Compression.CompressionError)
        assert.include(error.message, "states a different size")
        // A table and a block that agree on a size far past what the dump holds.
        const table = bytes.readUInt32LE(64 + 4)
        bytes.writeUInt32LE(0x7ffffff0, 64 + 4)
        bytes.writeUInt32LE(0x7ffffff0, 64 + 4 + 8)
        Fs.writeFileSync(file, bytes)
        const claim = yield* Effect.flip(Persist.load(file, undefined, { verify: false }))
        assert.instanceOf(claim, Compression.CompressionError)
        bytes.writeUInt32LE(table, 64 + 4)
        bytes.writeUInt32LE(7, 64)
        Fs.writeFileSync(file, bytes)
        const count = yield* Effect.flip(Persist.load(file, undefined, { verify: false }))
        assert.instanceOf(count, Compression.CompressionError)
      }))

    it.effect("levels outside a method's range are refused", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const lz4 = yield* Effect.flip(Persist.dump([1], Path.join(dir, "a"), { compress: ["lz4", 20] }))
        assert.include(lz4.message, "lz4 levels are 0–16, got 20")
        const xz = yield* Effect.flip(Persist.dump([1], Path.join(dir, "b"), { compress: ["xz", 10] }))
        assert.include(xz.message, "xz levels are 0–9")
      }))
  })

  describe("faults", () => {
    it.effect("a full disk fails with NoSpace and leaves neither a partial dump nor a temporary file", () =>
      Effect.gen(function*() {
        const dir = yield* tmpfs("size=256k")
        const file = Path.join(dir, "big.bin")
        yield* Persist.dump({ small: [1, 2, 3] }, file)
        const before = Fs.readFileSync(file)
        const error = yield* Effect.flip(Persist.dump({ walk: new Float64Array(200_000).fill(1) }, file))
        assert.instanceOf(error, PersistError.PersistIOError)
        assert.strictEqual((error as PersistError.PersistIOError).reason, "NoSpace")
        assert.strictEqual(((error as PersistError.PersistIOError).cause as { code?: string }).code, "ENOSPC")
        assert.deepStrictEqual(Fs.readdirSync(dir), ["big.bin"], "only the earlier dump")
        assert.deepStrictEqual(Fs.readFileSync(file), before, "the earlier dump is intact")
        assert.deepStrictEqual(yield* Persist.load(file), { small: [1, 2, 3] })
      }))

    it.effect("a read-only directory fails with ReadOnly", () =>
      Effect.gen(function*() {
        const dir = yield* tmpfs("size=64k,ro")
        const error = yield* Effect.flip(Persist.dump([1], Path.join(dir, "x.bin")))
        assert.instanceOf(error, PersistError.PersistIOError)
        assert.strictEqual((error as PersistError.PersistIOError).reason, "ReadOnly")
      }))

    it.effect("a failing Sink fails the dump with its own error", () =>
      Effect.gen(function*() {
        const sink = Sink.forEach((_: Uint8Array) => Effect.fail("disk on fire" as const))
        assert.strictEqual(yield* Effect.flip(Persist.dump([1], sink)), "disk on fire")
      }))

    it.effect("a flipped byte on disk is caught by the checksum", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = Path.join(dir, "flip.bin")
        yield* Persist.dump({ walk: new Float64Array(5_000).fill(2) }, file)
        const bytes = Fs.readFileSync(file)
        bytes[bytes.length - 1000]! ^= 0x10
        Fs.writeFileSync(file, bytes)
        assert.instanceOf(yield* Effect.flip(Persist.load(file)), PersistError.Corrupted)
        // Skipping verification is a choice the caller makes explicitly.
        const unchecked = (yield* Persist.load(file, undefined, { verify: false })) as { walk: Float64Array }
        assert.strictEqual(unchecked.walk.length, 5_000)
      }))
  })
})
