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

/**
 * Compression or decompression failed, or asked for a method that is not available.
 *
 * @category errors
 * @since 0.1.0
 */
export class CompressionError extends Schema.TaggedError<CompressionError>()("CompressionError", {
  method: Schema.String,
  message: Schema.String
}) {}

/**
 * A compression method. `id` is stored in file headers: 1–127 are reserved for
 * built-in methods, 128–255 are free for custom ones.
 *
 * @category models
 * @since 0.1.0
 */
export interface Compressor {
  readonly id: number
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
}

/**
 * The ids of the built-in methods, as stored in file headers.
 *
 * @category models
 * @since 0.1.0
 */
export const Ids = { none: 0, zstd: 1, gzip: 2, zlib: 3, brotli: 4 } as const

type NodeStream = ReturnType<typeof Zlib.createGzip>

const fail = (method: string, message: string) => new CompressionError({ method, message })

/** Runs a Node zlib stream over the parts and collects its output. */
const runNodeStream = (method: string, stream: NodeStream, parts: ReadonlyArray<Uint8Array>) =>
  Effect.callback<Array<Uint8Array>, CompressionError>((resume) => {
    const out: Array<Uint8Array> = []
    stream.on("data", (chunk: Uint8Array) => out.push(chunk))
    stream.on("error", (error: Error) => resume(Effect.fail(fail(method, error.message))))
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
        return resume(Effect.fail(fail(method, message)))
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
      resume(Effect.fail(fail(method, String(error))))
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
    catch: (error) => fail(name, String(error))
  })

// fflate silently truncates output that overflows a given buffer, so it decompresses into its own and the size is checked.
const fflateDecompress = (name: string, run: (data: Uint8Array) => Uint8Array) => (data: Uint8Array, size: number) =>
  Effect.flatMap(
    Effect.try({ try: () => run(data), catch: (error) => fail(name, String(error)) }),
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

const nodeSet = { compressors: [zstd, gzip, zlib, brotli], defaultMethod: "zstd" }

/**
 * Node's native compressors: zstd (default), gzip, zlib, brotli.
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
export const current: Effect.Effect<Compression["Service"]> = Effect.map(
  Effect.serviceOption(Compression),
  (option) => (option._tag === "Some" ? option.value : nodeSet)
)

/**
 * Adds a compressor to those in use (the provided set, or Node's native one).
 * A compressor with the id or name of an existing one replaces it.
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
 *   decompress: (data, out) => Effect.sync(() => out.set(data))
 * }
 * const program = Persist.dump([1, 2, 3], "/tmp/x.id").pipe(Effect.provide(Compression.layerWith(identity)))
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerWith = (compressor: Compressor, options?: { readonly asDefault?: boolean | undefined }) =>
  Layer.effect(Compression)(Effect.map(current, (set) => ({
    compressors: [
      ...set.compressors.filter((c) => c.id !== compressor.id && c.name !== compressor.name),
      compressor
    ],
    defaultMethod: options?.asDefault === true ? compressor.name : set.defaultMethod
  })))
