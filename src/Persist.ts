/**
 * `dump` and `load`: joblib's persistence, Schema-typed and safe to load.
 * Targets and sources are file paths or Effect `Sink`s and `Stream`s of bytes
 * (joblib's file objects). File writes are atomic: a temporary file in the
 * same directory, then a rename, so a crash never leaves a half-written dump
 * under the final name. Typed arrays are written straight from their memory
 * and loaded as views over the bytes read, so a dump or a load needs about one
 * extra copy of the data, not three. Needs Node (`node:fs`).
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import type * as Schema from "effect/Schema"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import * as Codec from "./Codec.ts"
import type * as Compression from "./Compression.ts"
import { writeFileAtomically } from "./internal/atomicFile.ts"
import * as PersistOptions from "./internal/persistOptions.ts"
import {
  type DecodeError,
  InvalidPersistOptions,
  PersistIOError,
  type SchemaMismatch,
  Truncated,
  type UnsupportedValue
} from "./PersistError.ts"

/**
 * Options of {@link dump}.
 *
 * @category models
 * @since 0.1.0
 */
export interface DumpOptions<S extends Schema.Top = never> {
  /**
   * `false` for none, `true` for the default method (zstd level 3), a level,
   * a method name, or `[name, level]`. When left out, a path's extension picks
   * the method: `.zst`, `.gz`, `.z`, `.br`.
   */
  readonly compress?: Codec.CompressOption | undefined
  /** Encode through this Schema (class instances, validation, a fingerprint in the header). */
  readonly schema?: S | undefined
  /**
   * Flush the file to disk before it is renamed into place, so that it also survives a power loss.
   * A process crash never leaves a partial file either way. Default false, as joblib.
   */
  readonly fsync?: boolean | undefined
}

/**
 * Options of {@link load}.
 *
 * @category models
 * @since 0.1.0
 */
export interface LoadOptions {
  /**
   * Read into a SharedArrayBuffer, so that the typed arrays of the result can be
   * handed to `Backend.threads` workers with no copy (joblib's `mmap_mode`).
   */
  readonly shared?: boolean | undefined
  /** Check the body's checksum (default). `false` skips it, for speed on trusted files. */
  readonly verify?: boolean | undefined
}

/**
 * Where a dump goes: a file path or a Sink of bytes.
 *
 * @category models
 * @since 0.1.0
 */
export type Target<E = never, R = never> = string | Sink.Sink<unknown, Uint8Array, unknown, E, R>

/**
 * Where a dump comes from: a file path or a Stream of bytes.
 *
 * @category models
 * @since 0.1.0
 */
export type Source<E = never, R = never> = string | Stream.Stream<Uint8Array, E, R>

const extensionMethods: Record<string, string> = {
  ".zst": "zstd",
  ".zstd": "zstd",
  ".gz": "gzip",
  ".gzip": "gzip",
  ".z": "zlib",
  ".zlib": "zlib",
  ".br": "brotli"
}

/** joblib's other compressed extensions; we have no compressor for them by default. */
const foreignExtensions = new Set([".xz", ".lzma", ".bz2", ".lz4"])

const compressionFor = (
  path: string | undefined,
  option: Codec.CompressOption | undefined
): Effect.Effect<Codec.CompressOption | undefined, InvalidPersistOptions> => {
  if (option !== undefined || path === undefined) return Effect.succeed(option)
  const extension = NodePath.extname(path).toLowerCase()
  const method = extensionMethods[extension]
  if (method !== undefined) return Effect.succeed(method)
  if (foreignExtensions.has(extension)) {
    return Effect.fail(
      new InvalidPersistOptions({
        option: "compress",
        message: `no compressor for "${extension}"; use .zst, .gz, .z or .br, or provide one with Compression.layerWith`
      })
    )
  }
  return Effect.succeed(undefined)
}

const ioReason = (code: unknown): PersistIOError["reason"] => {
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
      return "NotFound"
    case "ENOSPC":
    case "EDQUOT":
    case "EFBIG":
      return "NoSpace"
    case "EROFS":
      return "ReadOnly"
    case "EACCES":
    case "EPERM":
      return "PermissionDenied"
    default:
      return "Other"
  }
}

const ioError = (path: string, doing: string) => (error: unknown) => {
  const code = (error as { code?: unknown }).code
  const reason = ioReason(code)
  return new PersistIOError({
    path,
    reason,
    message: `cannot ${doing} ${path}: ${error instanceof Error ? error.message : String(error)}`
  })
}

const io = <A>(path: string, doing: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: ioError(path, doing) })

/**
 * Writes `parts` then the trailer from `seal` to `path` through a temporary file and a rename.
 * The trailer's checksum is computed on this thread while the thread pool writes the parts.
 */
const writeAtomically = (path: string, parts: ReadonlyArray<Uint8Array>, seal: () => Uint8Array, fsync: boolean) =>
  writeFileAtomically(
    path,
    async (handle) => {
      const writing = writeAll(handle, parts)
      let trailer: Uint8Array
      try {
        trailer = seal()
      } finally {
        await writing
      }
      await writeAll(handle, [trailer])
    },
    fsync,
    ioError
  )

/** Writes parts in order at the file's current position. */
const writeAll = async (handle: Fs.promises.FileHandle, parts: ReadonlyArray<Uint8Array>) => {
  // writev takes at most IOV_MAX (1024) buffers per call.
  for (let i = 0; i < parts.length; i += 1024) {
    const chunk = parts.slice(i, i + 1024) as Array<Uint8Array>
    let expected = 0
    for (const part of chunk) expected += part.byteLength
    const { bytesWritten } = await handle.writev(chunk)
    if (bytesWritten !== expected) await writeRest(handle, chunk, bytesWritten)
  }
}

/** Finishes a short writev, part by part. */
const writeRest = async (handle: Fs.promises.FileHandle, parts: ReadonlyArray<Uint8Array>, written: number) => {
  let skip = written
  for (const part of parts) {
    if (skip >= part.byteLength) {
      skip -= part.byteLength
      continue
    }
    let offset = skip
    skip = 0
    while (offset < part.byteLength) {
      const { bytesWritten } = await handle.write(part, offset, part.byteLength - offset)
      offset += bytesWritten
    }
  }
}

/** Big files are read in this many concurrent pieces: the page faults of fresh memory then spread over the thread pool. */
const READ_PIECES = 4
const PIECE_MIN = 8 << 20

/** Reads a whole file into one buffer (shared memory when asked), at offset 0 so that sections stay aligned. */
const readFile = (path: string, shared: boolean) =>
  Effect.acquireUseRelease(
    io(path, "open", () => Fs.promises.open(path, "r")),
    (handle) =>
      io(path, "read", async () => {
        const { size } = await handle.stat()
        const bytes = new Uint8Array(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size))
        const pieces = size >= PIECE_MIN * 2 ? READ_PIECES : 1
        const piece = Math.ceil(size / pieces / 4096) * 4096
        const read = await Promise.all(Array.from({ length: pieces }, async (_, i) => {
          const end = Math.min(size, (i + 1) * piece)
          let offset = i * piece
          while (offset < end) {
            const { bytesRead } = await handle.read(bytes, offset, end - offset, offset)
            if (bytesRead === 0) break
            offset += bytesRead
          }
          return offset - i * piece
        }))
        const total = read.reduce((a, b) => a + b, 0)
        // A file that shrank while being read is reported as truncated by the decoder.
        return total === size ? bytes : bytes.subarray(0, read[0]!)
      }),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )

/** Collects a byte stream into one buffer (shared memory when asked). */
const collect = <E, R>(stream: Stream.Stream<Uint8Array, E, R>, shared: boolean) =>
  Effect.map(Stream.runCollect(stream), (chunks) => Codec.concat(chunks, { shared }))

/**
 * Writes a value to a file or a Sink. Plain data needs no Schema; with
 * `schema`, class instances round-trip and the value is validated on load.
 *
 * **Example** (joblib's `dump` with compression)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Persist } from "effect-joblib"
 *
 * const data = [["a", [1, 2, 3]], ["b", Float64Array.from({ length: 10 }, (_, i) => i)]]
 * const program = Effect.gen(function*() {
 *   yield* Persist.dump(data, "/tmp/data.gz", { compress: ["gzip", 3] })
 *   return yield* Persist.load("/tmp/data.gz")
 * })
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const dump: {
  /**
   * Writes a value to a file or a Sink.
   *
   * **Example** (Data-last)
   *
   * ```ts
   * import { pipe } from "effect"
   * import { Persist } from "effect-joblib"
   *
   * const program = pipe({ a: 1 }, Persist.dump("/tmp/a.bin"))
   * ```
   */
  <E = never, R = never, S extends Schema.Top = never>(
    target: Target<E, R>,
    options?: DumpOptions<S>
  ): (
    value: [S] extends [never] ? unknown : S["Type"]
  ) => Effect.Effect<void, DumpError | E, R>
  /**
   * Writes a value to a file or a Sink.
   *
   * **Example** (Data-first)
   *
   * ```ts
   * import { Persist } from "effect-joblib"
   *
   * const program = Persist.dump({ a: 1 }, "/tmp/a.bin")
   * ```
   */
  <E = never, R = never, S extends Schema.Top = never>(
    value: [S] extends [never] ? unknown : S["Type"],
    target: Target<E, R>,
    options?: DumpOptions<S>
  ): Effect.Effect<void, DumpError | E, R>
} = dual(
  (args) => args.length >= 2 && (typeof args[1] === "string" || Sink.isSink(args[1])),
  <E, R>(value: unknown, target: Target<E, R>, rawOptions?: DumpOptions<Schema.Top>) =>
    Effect.gen(function*() {
      const options = yield* PersistOptions.parse(PersistOptions.DumpOptions, "Persist.dump", rawOptions)
      const path = typeof target === "string" ? target : undefined
      const compress = yield* compressionFor(path, options?.compress)
      const codec = options?.schema === undefined ? Codec.make() : Codec.make(options.schema)
      if (typeof target === "string") {
        const { parts, seal } = yield* codec.encodeUnsealed(value, { compress })
        return yield* writeAtomically(target, parts, seal, options?.fsync === true)
      }
      const parts = yield* codec.encodeParts(value, { compress })
      return yield* Stream.run(Stream.fromIterable(parts), target).pipe(Effect.asVoid)
    }).pipe(Effect.withSpan("Persist.dump"))
)

/**
 * The errors of {@link dump}.
 *
 * @category models
 * @since 0.1.0
 */
export type DumpError =
  | UnsupportedValue
  | SchemaMismatch
  | InvalidPersistOptions
  | PersistIOError
  | Compression.CompressionError

/**
 * The errors of {@link load}.
 *
 * @category models
 * @since 0.1.0
 */
export type LoadError = DecodeError | InvalidPersistOptions | PersistIOError | Compression.CompressionError

/**
 * Reads a value from a file or a Stream of bytes. The compression method is
 * read from the dump's header, never from the extension. With a Schema the
 * value is validated and decoded (class instances come back as instances);
 * a mismatch fails with `SchemaMismatch` naming the field. Loading never
 * executes code.
 *
 * **Example** (Loading into shared memory for worker threads)
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Persist } from "effect-joblib"
 *
 * const program = Persist.load("/tmp/walk.bin", undefined, { shared: true })
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const load: {
  <E = never, R = never>(source: Source<E, R>, schema?: undefined, options?: LoadOptions): Effect.Effect<
    unknown,
    LoadError | E,
    R
  >
  <S extends Schema.Top, E = never, R = never>(source: Source<E, R>, schema: S, options?: LoadOptions): Effect.Effect<
    S["Type"],
    LoadError | E,
    R
  >
} = <E, R>(source: Source<E, R>, schema?: Schema.Top, rawOptions?: LoadOptions) =>
  Effect.gen(function*() {
    const options = yield* PersistOptions.parse(PersistOptions.LoadOptions, "Persist.load", rawOptions)
    const shared = options?.shared === true
    const bytes = typeof source === "string" ? yield* readFile(source, shared) : yield* collect(source, shared)
    if (bytes.length === 0) {
      return yield* new Truncated({
        expectedBytes: Codec.HEADER_BYTES,
        actualBytes: 0,
        message: typeof source === "string" ? `${source} is empty` : "the stream is empty"
      })
    }
    const codec = schema === undefined ? Codec.make() : Codec.make(schema)
    return yield* codec.decode(bytes, { shared, verify: options?.verify })
  }).pipe(Effect.withSpan("Persist.load"))
