/**
 * Compressors for `Persist` and `Codec`, as a service. The default set uses
 * Node's native `node:zlib` (zstd, gzip, zlib, brotli); `layerFflate` swaps in
 * the pure-JavaScript fflate (gzip, zlib) for runtimes without native zlib.
 * A custom compressor is added by providing `layerWith(compressor)`, which
 * replaces joblib's global `register_compressor`.
 *
 * The default method, zstd at level 3, was chosen by `npm run bench -- persist`:
 * on float data it is faster both ways than gzip/zlib at level 3 and smaller.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Fflate from "fflate"
import * as Zlib from "node:zlib"
import { makeAdditive } from "./internal/additive.ts"
import { importOptional } from "./internal/optional.ts"

/**
 * Compression or decompression failed, or asked for a method that is not available.
 *
 * @category errors
 * @since 0.1.0
 */
export class CompressionError extends Schema.TaggedError<CompressionError>()("CompressionError", {
  method: Schema.String,
  message: Schema.String,
  /** The compressor's own error underneath, when there is one. */
  cause: Schema.optional(Schema.Unknown)
}) {}

/**
 * The names `compress` options take: the built-in methods, and any a program
 * adds by augmenting this interface, so that editors complete them and a typo
 * fails in `tsc`.
 *
 * **Example** (Naming a custom compressor)
 *
 * ```ts
 * import type {} from "effect-joblib"
 *
 * declare module "effect-joblib/Compression" {
 *   interface Methods {
 *     readonly identity: true
 *   }
 * }
 * ```
 *
 * @category models
 * @since 0.6.0
 */
export interface Methods {
  readonly zstd: true
  readonly gzip: true
  readonly zlib: true
  readonly brotli: true
  readonly lz4: true
  readonly xz: true
  readonly lzma: true
  readonly bz2: true
}

/**
 * A compression method's name: one of {@link Methods}.
 *
 * @category models
 * @since 0.6.0
 */
export type Method = keyof Methods & string

/**
 * A compression method. `id` is stored in file headers: 1–127 are reserved for
 * built-in methods, 128–255 are free for custom ones.
 *
 * @category models
 * @since 0.1.0
 */
export interface Compressor {
  readonly id: number
  /** The method's name, as `compress` options give it: add a new one to {@link Methods} to name it there. */
  readonly name: string
  /** File extensions that select this method when a dump names none, e.g. `.zst`. */
  readonly extensions: ReadonlyArray<string>
  readonly levels: { readonly min: number; readonly max: number; readonly default: number }
  /** Compresses the parts as one stream, without joining them first. */
  readonly compress: (
    parts: ReadonlyArray<Uint8Array>,
    level: number
  ) => Effect.Effect<ReadonlyArray<Uint8Array>, CompressionError>
  /**
   * Decompresses `data`, which must hold exactly `size` bytes once decompressed; more or fewer is a
   * `CompressionError`. Returns a buffer of its own, so that no copy is needed after.
   */
  readonly decompress: (data: Uint8Array, size: number) => Effect.Effect<Uint8Array, CompressionError>
  /**
   * Why it cannot run here, if it cannot: what would add it (the optional package to install). Absent or
   * `undefined` for a compressor that always runs. Messages that list the methods available read it.
   */
  readonly unavailable?: Effect.Effect<string | undefined> | undefined
}

/**
 * The ids of the built-in methods, as stored in file headers.
 *
 * @category models
 * @since 0.1.0
 */
export const Ids = { none: 0, zstd: 1, gzip: 2, zlib: 3, brotli: 4, lz4: 5, xz: 6, lzma: 7, bz2: 8 } as const

type NodeStream = ReturnType<typeof Zlib.createGzip>

const fail = (method: string, message: string, cause?: unknown) =>
  new CompressionError(cause === undefined ? { method, message } : { method, message, cause })

/** Runs a Node zlib stream over the parts and collects its output. */
const runNodeStream = (method: string, stream: NodeStream, parts: ReadonlyArray<Uint8Array>) =>
  Effect.callback<Array<Uint8Array>, CompressionError>((resume) => {
    const out: Array<Uint8Array> = []
    stream.on("data", (chunk: Uint8Array) => out.push(chunk))
    stream.on("error", (error: Error) => resume(Effect.fail(fail(method, error.message, error))))
    stream.on("end", () => resume(Effect.succeed(out)))
    for (const part of parts) stream.write(part)
    stream.end()
    return Effect.sync(() => stream.destroy())
  })

/** Bodies up to this size decompress into one chunk. */
const MAX_ONE_CHUNK = 1 << 30

type OneShot = (
  data: Uint8Array,
  options: Zlib.ZlibOptions & { readonly maxOutputLength: number },
  callback: (error: Error | null, result: Buffer) => void
) => void

/**
 * Decompresses in one call on the thread pool, with an output chunk of exactly the expected size: Node
 * then hands back that one chunk, with no growing, joining or copying (streaming in 1 MB chunks made a
 * load 2.5× slower). `maxOutputLength` stops a body that would grow past its stated size.
 */
const decompressOneShot = (method: string, oneShot: OneShot) => (data: Uint8Array, size: number) =>
  Effect.callback<Uint8Array, CompressionError>((resume) => {
    // The size comes from the file: a chunk is reserved up front, so a huge claim gets chunks joined instead.
    const chunkSize = Math.max(64, Math.min(size + 1, MAX_ONE_CHUNK))
    const callback = (error: Error | null, result: Buffer) => {
      if (error !== null) {
        const message = (error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE"
          ? `decompressed to more than the ${size} bytes expected`
          : error.message
        return resume(Effect.fail(fail(method, message, error)))
      }
      resume(
        result.length === size
          ? Effect.succeed(new Uint8Array(result.buffer, result.byteOffset, result.length))
          : Effect.fail(fail(method, `decompressed to ${result.length} bytes, expected ${size}`))
      )
    }
    try {
      oneShot(data, { chunkSize, maxOutputLength: Math.max(1, size + 1) }, callback)
    } catch (error) {
      resume(Effect.fail(fail(method, String(error), error)))
    }
  })

/**
 * A compressor of `node:zlib`. `unmake` is undefined where this Node lacks the method (zstd before
 * 22.15): then both directions fail with an error naming the version it needs.
 */
const node = (
  id: number,
  name: string,
  extensions: ReadonlyArray<string>,
  levels: Compressor["levels"],
  make: (level: number) => NodeStream,
  unmake: OneShot | undefined,
  needs?: string
): Compressor => {
  const missing = unmake === undefined
    ? Effect.fail(fail(name, `${name} needs Node ${needs} or later; this is Node ${process.versions.node}`))
    : undefined
  return {
    id,
    name,
    extensions,
    levels,
    compress: (parts, level) => missing ?? Effect.suspend(() => runNodeStream(name, make(level), parts)),
    decompress: unmake === undefined ? () => missing! : decompressOneShot(name, unmake)
  }
}

const CHUNK = 1 << 20

/**
 * zstd through `node:zlib` (Node 22.15+): levels 1–19, default 3.
 *
 * @category constructors
 * @since 0.1.0
 */
export const zstd: Compressor = node(
  Ids.zstd,
  "zstd",
  [".zst", ".zstd"],
  { min: 1, max: 19, default: 3 },
  (level) => Zlib.createZstdCompress({ chunkSize: CHUNK, params: { [Zlib.constants.ZSTD_c_compressionLevel]: level } }),
  Zlib.zstdDecompress as OneShot | undefined,
  "22.15"
)

/**
 * gzip through `node:zlib`: levels 1–9, default 3.
 *
 * @category constructors
 * @since 0.1.0
 */
export const gzip: Compressor = node(
  Ids.gzip,
  "gzip",
  [".gz", ".gzip"],
  { min: 1, max: 9, default: 3 },
  (level) => Zlib.createGzip({ level, chunkSize: CHUNK }),
  Zlib.gunzip as OneShot
)

/**
 * zlib (deflate with a zlib header, joblib's `.z`) through `node:zlib`: levels 1–9, default 3.
 *
 * @category constructors
 * @since 0.1.0
 */
export const zlib: Compressor = node(
  Ids.zlib,
  "zlib",
  [".z", ".zlib"],
  { min: 1, max: 9, default: 3 },
  (level) => Zlib.createDeflate({ level, chunkSize: CHUNK }),
  Zlib.inflate as OneShot
)

/**
 * brotli through `node:zlib`: quality 0–11, default 4.
 *
 * @category constructors
 * @since 0.1.0
 */
export const brotli: Compressor = node(
  Ids.brotli,
  "brotli",
  [".br"],
  { min: 0, max: 11, default: 4 },
  (level) => Zlib.createBrotliCompress({ chunkSize: CHUNK, params: { [Zlib.constants.BROTLI_PARAM_QUALITY]: level } }),
  Zlib.brotliDecompress as OneShot
)

/** Copies a native addon's view, which may borrow memory the addon reuses. */
const own = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes)

const sized = (name: string, result: Uint8Array, size: number) =>
  result.length === size
    ? Effect.succeed(result)
    : Effect.fail(fail(name, `decompressed to ${result.length} bytes, expected ${size}`))

/**
 * A compressor backed by an optional native package, imported on first use. When the package is missing,
 * both directions fail with a `CompressionError` that says what to install.
 */
const fromPackage = <M>(options: {
  readonly id: number
  readonly name: string
  readonly extensions: ReadonlyArray<string>
  readonly levels: Compressor["levels"]
  readonly packageName: string
  readonly compress: (module: M, parts: ReadonlyArray<Uint8Array>, level: number) => Promise<ReadonlyArray<Uint8Array>>
  readonly decompress: (module: M, data: Uint8Array, size: number) => Promise<Uint8Array>
}): Compressor => {
  const { name, packageName } = options
  let module: M | undefined
  const load = Effect.suspend(() =>
    module !== undefined ? Effect.succeed(module) : importOptional<M & { readonly default?: M }>(
      packageName,
      `compression "${name}"`,
      packageName
    ).pipe(
      Effect.map((loaded) => (module = (loaded.default ?? loaded) as M)),
      Effect.mapError((message) => fail(name, message))
    )
  )
  const attempt = <A>(run: () => Promise<A>) =>
    Effect.tryPromise({
      try: run,
      catch: (error) => fail(name, error instanceof Error ? error.message : String(error), error)
    })
  return {
    id: options.id,
    name,
    extensions: options.extensions,
    levels: options.levels,
    unavailable: Effect.match(load, {
      onFailure: () => `needs the package ${packageName}`,
      onSuccess: () => undefined
    }),
    compress: (parts, level) => Effect.flatMap(load, (m) => attempt(() => options.compress(m, parts, level))),
    decompress: (data, size) =>
      Effect.flatMap(
        load,
        (m) => Effect.flatMap(attempt(() => options.decompress(m, data, size)), (out) => sized(name, out, size))
      )
  }
}

interface Lz4Module {
  readonly compress: (data: Uint8Array) => Promise<Buffer>
  readonly uncompress: (data: Uint8Array) => Promise<Buffer>
}

/** lz4 compresses in independent blocks of this size, several at once on the thread pool (1, 4 and 16 MB measured alike, 1 MB loaded fastest). */
const LZ4_BLOCK = 1 << 20

/** lz4 expands a compressed byte into at most this many. */
const LZ4_MAX_RATIO = 255

/** The parts as blocks of `size` bytes (the last shorter): views where a block lies in one part. */
const cut = (parts: ReadonlyArray<Uint8Array>, size: number): Array<Uint8Array> => {
  const blocks: Array<Uint8Array> = []
  let pending: Array<Uint8Array> = []
  let pendingBytes = 0
  for (const part of parts) {
    let offset = 0
    while (offset < part.length) {
      const take = Math.min(size - pendingBytes, part.length - offset)
      const piece = part.subarray(offset, offset + take)
      offset += take
      if (pendingBytes === 0 && take === size) {
        blocks.push(piece)
        continue
      }
      pending.push(piece)
      pendingBytes += take
      if (pendingBytes === size) {
        blocks.push(Buffer.concat(pending))
        pending = []
        pendingBytes = 0
      }
    }
  }
  if (pendingBytes > 0) blocks.push(pending.length === 1 ? pending[0]! : Buffer.concat(pending))
  return blocks
}

/**
 * lz4 through the optional package `lz4-napi` (Rust's lz4_flex, prebuilt): joblib's fast method. It takes
 * joblib's levels, 0–16 (`lz4.frame`'s `compression_level`), so that `["lz4", 3]` works as it does there; but
 * lz4_flex has one mode, lz4's fast one, and no high-compression (HC) mode, so every level writes the same
 * bytes (joblib's levels from 3 on would use HC: a smaller file, written several times slower). Dumps whose
 * path ends in `.lz4` use it. The body is cut into 1 MB blocks compressed
 * independently and at once on the thread pool: a count, each block's raw and compressed lengths (u32),
 * then the lz4_flex blocks.
 *
 * @category constructors
 * @since 0.5.0
 */
export const lz4: Compressor = fromPackage<Lz4Module>({
  id: Ids.lz4,
  name: "lz4",
  extensions: [".lz4"],
  levels: { min: 0, max: 16, default: 0 },
  packageName: "lz4-napi",
  compress: async (m, parts) => {
    const blocks = cut(parts, LZ4_BLOCK)
    const compressed = await Promise.all(blocks.map((block) => m.compress(block)))
    const table = new DataView(new ArrayBuffer(4 + 8 * blocks.length))
    table.setUint32(0, blocks.length, true)
    blocks.forEach((block, i) => {
      table.setUint32(4 + 8 * i, block.length, true)
      table.setUint32(8 + 8 * i, compressed[i]!.length, true)
    })
    return [new Uint8Array(table.buffer), ...compressed]
  },
  decompress: async (m, data, size) => {
    const damaged = (why: string) => new Error(`the lz4 body is damaged: ${why}`)
    if (data.length < 4) throw damaged("no block table")
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
    const count = view.getUint32(0, true)
    if (4 + 8 * count > data.length) throw damaged(`a table of ${count} blocks does not fit`)
    const blocks: Array<{ readonly raw: number; readonly at: number; readonly bytes: Uint8Array }> = []
    let at = 0
    let offset = 4 + 8 * count
    for (let i = 0; i < count; i++) {
      const raw = view.getUint32(4 + 8 * i, true)
      const length = view.getUint32(8 + 8 * i, true)
      if (offset + length > data.length || at + raw > size) throw damaged(`block ${i} runs past the end`)
      // lz4_flex reserves the size a block states for itself: it must be the one the table states, and no
      // more than lz4 can expand to (at most 255 bytes per compressed byte).
      if (length < 4 || view.getUint32(offset, true) !== raw) throw damaged(`block ${i} states a different size`)
      if (raw > LZ4_MAX_RATIO * length + 64) throw damaged(`block ${i} claims ${raw} bytes from ${length}`)
      blocks.push({ raw, at, bytes: data.subarray(offset, offset + length) })
      at += raw
      offset += length
    }
    if (at !== size || offset !== data.length) throw damaged(`the blocks hold ${at} bytes, expected ${size}`)
    if (count === 1) {
      const out = await m.uncompress(blocks[0]!.bytes)
      return new Uint8Array(out.buffer, out.byteOffset, out.length)
    }
    const out = new Uint8Array(size)
    await Promise.all(blocks.map(async (block, i) => {
      const raw = await m.uncompress(block.bytes)
      if (raw.length !== block.raw) {
        throw damaged(`block ${i} decompressed to ${raw.length} bytes, expected ${block.raw}`)
      }
      out.set(raw, block.at)
    }))
    return out
  }
})

interface StreamingCompressor {
  update(chunk: Uint8Array): Uint8Array
  finish(): Promise<Uint8Array>
}

interface LzmaModule {
  /** Streaming compressors with presets: @napi-rs/lzma 1.5 and later. */
  readonly XzCompressor?: new(options?: { readonly preset?: number }) => StreamingCompressor
  readonly LzmaCompressor?: new(options?: { readonly preset?: number }) => StreamingCompressor
  readonly xz: OneShotLzma
  readonly lzma: OneShotLzma
}

interface OneShotLzma {
  readonly compress: (data: Uint8Array) => Promise<Buffer>
  readonly decompress: (data: Uint8Array) => Promise<Buffer>
}

/** The preset of @napi-rs/lzma's one-shot `compress`, the only one before 1.5. */
const LZMA_DEFAULT_PRESET = 6

const streamed = async (compressor: StreamingCompressor, parts: ReadonlyArray<Uint8Array>) => {
  const out: Array<Uint8Array> = []
  for (const part of parts) {
    const chunk = compressor.update(part)
    if (chunk.length > 0) out.push(own(chunk))
  }
  out.push(own(await compressor.finish()))
  return out
}

const lzmaFamily = (name: "xz" | "lzma", extensions: ReadonlyArray<string>) =>
  fromPackage<LzmaModule>({
    id: Ids[name],
    name,
    extensions,
    levels: { min: 0, max: 9, default: 6 },
    packageName: "@napi-rs/lzma",
    compress: async (m, parts, level) => {
      const Streaming = name === "xz" ? m.XzCompressor : m.LzmaCompressor
      if (Streaming !== undefined) return streamed(new Streaming({ preset: level }), parts)
      // @napi-rs/lzma before 1.5 (the one whose bindings run on Node 22.19): one call, its default preset only.
      if (level !== LZMA_DEFAULT_PRESET) {
        throw new Error(`preset ${level} needs @napi-rs/lzma 1.5 or later; this one offers preset 6 only`)
      }
      return [own(await m[name].compress(Buffer.concat(parts)))]
    },
    decompress: async (m, data) => {
      const out = await m[name].decompress(data)
      return new Uint8Array(out.buffer, out.byteOffset, out.length)
    }
  })

/**
 * xz through the optional package `@napi-rs/lzma` (prebuilt): presets 0–9, default 6, as joblib's `xz`.
 * Dumps whose path ends in `.xz` use it.
 *
 * @category constructors
 * @since 0.5.0
 */
export const xz: Compressor = lzmaFamily("xz", [".xz"])

/**
 * Legacy `.lzma` (LZMA1) through the optional package `@napi-rs/lzma`: presets 0–9, default 6, as joblib's
 * `lzma`. Dumps whose path ends in `.lzma` use it.
 *
 * @category constructors
 * @since 0.5.0
 */
export const lzma: Compressor = lzmaFamily("lzma", [".lzma"])

/**
 * joblib's `bz2`, which no well-kept npm package provides (the bzip2 packages on the registry decompress
 * only, or have not been released since 2016): both directions fail with a `CompressionError` that says
 * so. Provide a compressor with `layerWith` to read or write `.bz2` dumps.
 *
 * @category constructors
 * @since 0.5.0
 */
export const bz2: Compressor = (() => {
  const unavailable = Effect.fail(
    fail(
      "bz2",
      "no well-kept bzip2 package exists for Node, so bz2 is not built in; use xz or zstd, " +
        "or provide a bz2 compressor with Compression.layerWith"
    )
  )
  return {
    id: Ids.bz2,
    name: "bz2",
    extensions: [".bz2"],
    levels: { min: 1, max: 9, default: 9 },
    compress: () => unavailable,
    decompress: () => unavailable,
    unavailable: Effect.succeed("no well-kept package compresses it; provide one with Compression.layerWith")
  }
})()

const fflateCompress = (
  name: string,
  make: (level: number, ondata: (chunk: Uint8Array) => void) => { push(chunk: Uint8Array, final?: boolean): void }
) =>
(parts: ReadonlyArray<Uint8Array>, level: number) =>
  Effect.try({
    try: () => {
      const out: Array<Uint8Array> = []
      const stream = make(level, (chunk) => out.push(chunk))
      for (const part of parts) stream.push(part)
      stream.push(new Uint8Array(0), true)
      return out as ReadonlyArray<Uint8Array>
    },
    catch: (error) => fail(name, String(error), error)
  })

// fflate silently truncates output that overflows a given buffer, so it decompresses into its own and the size is checked.
const fflateDecompress = (name: string, run: (data: Uint8Array) => Uint8Array) => (data: Uint8Array, size: number) =>
  Effect.flatMap(
    Effect.try({ try: () => run(data), catch: (error) => fail(name, String(error), error) }),
    (result) =>
      result.length === size
        ? Effect.succeed(result)
        : Effect.fail(fail(name, `decompressed to ${result.length} bytes, expected ${size}`))
  )

/**
 * gzip in pure JavaScript (fflate), readable and writable interchangeably with {@link gzip}.
 *
 * @category constructors
 * @since 0.1.0
 */
export const fflateGzip: Compressor = {
  id: Ids.gzip,
  name: "gzip",
  extensions: gzip.extensions,
  levels: gzip.levels,
  compress: fflateCompress("gzip", (level, ondata) => {
    const stream = new Fflate.Gzip({ level } as Fflate.GzipOptions)
    stream.ondata = (chunk) => ondata(chunk)
    return stream
  }),
  decompress: fflateDecompress("gzip", (data) => Fflate.gunzipSync(data))
}

/**
 * zlib in pure JavaScript (fflate), readable and writable interchangeably with {@link zlib}.
 *
 * @category constructors
 * @since 0.1.0
 */
export const fflateZlib: Compressor = {
  id: Ids.zlib,
  name: "zlib",
  extensions: zlib.extensions,
  levels: zlib.levels,
  compress: fflateCompress("zlib", (level, ondata) => {
    const stream = new Fflate.Zlib({ level } as Fflate.ZlibOptions)
    stream.ondata = (chunk) => ondata(chunk)
    return stream
  }),
  decompress: fflateDecompress("zlib", (data) => Fflate.unzlibSync(data))
}

/**
 * The available compressors, and the default method. Without a provided
 * Layer, Node's native set is used with zstd as the default.
 *
 * **Example** (Compressing with the pure-JavaScript set)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Compression, Persist } from "effect-joblib"
 *
 * const program = Persist.dump({ a: [1, 2, 3] }, "/tmp/a.gz", { compress: true }).pipe(
 *   Effect.provide(Compression.layerFflate)
 * )
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class Compression extends Context.Service<Compression, {
  readonly compressors: ReadonlyArray<Compressor>
  /** The method used for `compress: true` or a bare level. */
  readonly defaultMethod: string
}>()("effect-joblib/Compression") {}

const nodeSet = { compressors: [zstd, gzip, zlib, brotli, lz4, xz, lzma, bz2], defaultMethod: "zstd" }

/**
 * Node's native compressors: zstd (default), gzip, zlib, brotli; and lz4, xz and lzma when their optional
 * packages (`lz4-napi`, `@napi-rs/lzma`) are installed.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerNode: Layer.Layer<Compression> = Layer.succeed(Compression)(nodeSet)

/**
 * Pure-JavaScript compressors from fflate: gzip (default) and zlib.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerFflate: Layer.Layer<Compression> = Layer.succeed(Compression)({
  compressors: [fflateGzip, fflateZlib],
  defaultMethod: "gzip"
})

/**
 * The compressors in use: the provided service, or Node's native set.
 *
 * **Example** (Listing the method names)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Compression } from "effect-joblib"
 *
 * const names = Effect.map(Compression.current, (set) => set.compressors.map((c) => c.name))
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const current: Effect.Effect<Compression["Service"]> = Effect.gen(function*() {
  const provided = yield* Effect.serviceOption(Compression)
  const base = provided._tag === "Some" ? provided.value : nodeSet
  const added = yield* additions.entries
  if (added.length === 0) return base
  let compressors = base.compressors
  let defaultMethod = base.defaultMethod
  for (const { compressor, asDefault } of added) {
    compressors = [...compressors.filter((c) => c.id !== compressor.id && c.name !== compressor.name), compressor]
    if (asDefault) defaultMethod = compressor.name
  }
  return { compressors, defaultMethod }
})

/** Compressors added by {@link layerWith}, each under a key of its own so that merged Layers keep them all. */
const additions = makeAdditive<{ readonly compressor: Compressor; readonly asDefault: boolean }>(
  "effect-joblib/Compression/added"
)

/**
 * Adds a compressor to those in use (the provided set, or Node's native one),
 * as joblib's `register_compressor`; a dump whose path ends in one of its
 * extensions uses it. One with the name or id of a built-in method replaces it
 * only with `force: true`, as joblib's `register_compressor(…, force=True)`;
 * without it, building the Layer fails with a `CompressionError` naming the
 * method.
 *
 * **Example** (A custom compressor)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Compression, Persist } from "effect-joblib"
 *
 * const identity: Compression.Compressor = {
 *   id: 200,
 *   name: "identity",
 *   extensions: [".id"],
 *   levels: { min: 0, max: 0, default: 0 },
 *   compress: (parts) => Effect.succeed(parts),
 *   decompress: (data) => Effect.succeed(data)
 * }
 * const program = Persist.dump([1, 2, 3], "/tmp/x.id").pipe(Effect.provide(Compression.layerWith(identity)))
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerWith = (
  compressor: Compressor,
  options?: { readonly asDefault?: boolean | undefined; readonly force?: boolean | undefined }
): Layer.Layer<never, CompressionError> =>
  additions.layer(Effect.suspend(() => {
    const builtIn = Object.entries(Ids).find(([name, id]) => name === compressor.name || id === compressor.id)
    if (builtIn !== undefined && options?.force !== true) {
      const [name, id] = builtIn
      return Effect.fail(
        fail(
          compressor.name,
          `a compressor named "${compressor.name}" (id ${compressor.id}) would replace the built-in ${name} (id ${id}); ` +
            `pass { force: true } to replace it, or give it a name and an id of its own (128–255)`
        )
      )
    }
    return Effect.succeed({ compressor, asDefault: options?.asDefault === true })
  }))
