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
import * as Schema from "effect/Schema"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import * as Codec from "./Codec.ts"
import * as Compression from "./Compression.ts"
import { writeFileAtomically } from "./internal/atomicFile.ts"
import { acquireStepHasher, releaseStepHasher, rememberDigest } from "./internal/codec/hashers.ts"
import * as PersistOptions from "./internal/codec/persistOptions.ts"
import {
  DecodeError,
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
   * handed to `Backend.layerThreads` workers with no copy (joblib's `mmap_mode`).
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

/** Extensions that mean compressed data, in joblib or here: one of them with no compressor in use is an error. */
const compressedExtensions = new Set([
  ".zst",
  ".zstd",
  ".gz",
  ".gzip",
  ".z",
  ".zlib",
  ".br",
  ".lz4",
  ".xz",
  ".lzma",
  ".bz2"
])

/**
 * The method a path's extension selects when the dump names none: the compressor in use that lists the
 * extension. Any other path is written uncompressed.
 */
const compressionFor = (
  path: string | undefined,
  option: Codec.CompressOption | undefined
): Effect.Effect<Codec.CompressOption | undefined, InvalidPersistOptions> => {
  if (option !== undefined || path === undefined) return Effect.succeed(option)
  const extension = NodePath.extname(path).toLowerCase()
  if (extension === "") return Effect.succeed(undefined)
  return Effect.flatMap(Compression.current, (set) => {
    const compressor = set.compressors.find((c) => c.extensions.some((e) => e.toLowerCase() === extension))
    // A compressor's name is a Method: Compression.Methods lists it, built-in or added by augmentation.
    if (compressor !== undefined) return Effect.succeed(compressor.name as Compression.Method)
    if (!compressedExtensions.has(extension)) return Effect.succeed(undefined)
    return Effect.fail(
      new InvalidPersistOptions({
        option: "compress",
        message: `no compressor in use handles "${extension}" (in use: ${
          set.compressors.map((c) => `${c.name} ${c.extensions.join(" ")}`).join(", ")
        }); provide one with Compression.layerWith, or name a method with "compress"`
      })
    )
  })
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
    message: `cannot ${doing} ${path}: ${error instanceof Error ? error.message : String(error)}`,
    cause: error
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

/**
 * Big files are read in pieces of this size, this many at a time: the page faults of fresh memory then
 * spread over the thread pool, and the checksum of each piece is computed while later ones are read.
 */
const PIECE_BYTES = 8 << 20
const READS_AT_ONCE = 4

/**
 * Reads a whole file into one buffer (shared memory when asked), at offset 0 so that sections stay
 * aligned. With `checksum`, the body's xxh64 is computed piece by piece as the pieces arrive, and handed
 * to the decoder with the bytes.
 */
const readFile = (path: string, shared: boolean, checksum: boolean) =>
  Effect.acquireUseRelease(
    io(path, "open", () => Fs.promises.open(path, "r")),
    (handle) =>
      io(path, "read", async () => {
        const { size } = await handle.stat()
        const bytes = new Uint8Array(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size))
        const pieces = Math.max(1, Math.ceil(size / PIECE_BYTES))
        const got = Array.from({ length: pieces }, () => -1)
        // The body the checksum covers, if the file is a whole dump: between the header and the trailer.
        const bodyEnd = size - Codec.TRAILER_BYTES
        const hasher = checksum && bodyEnd > Codec.HEADER_BYTES ? await acquireStepHasher() : undefined
        /** Piece `i` was read whole. */
        const complete = (i: number) => got[i] === Math.min(PIECE_BYTES, size - i * PIECE_BYTES)
        let hashed = 0
        const hashReady = () => {
          while (hashed < pieces && complete(hashed)) {
            const from = Math.max(Codec.HEADER_BYTES, hashed * PIECE_BYTES)
            const to = Math.min(bodyEnd, (hashed + 1) * PIECE_BYTES)
            if (to > from) hasher!.update(bytes.subarray(from, to))
            hashed++
          }
        }
        let next = 0
        const reader = async () => {
          while (next < pieces) {
            const i = next++
            const start = i * PIECE_BYTES
            const end = Math.min(size, start + PIECE_BYTES)
            let offset = start
            while (offset < end) {
              const { bytesRead } = await handle.read(bytes, offset, end - offset, offset)
              if (bytesRead === 0) break
              offset += bytesRead
            }
            got[i] = offset - start
            if (hasher !== undefined) hashReady()
          }
        }
        try {
          await Promise.all(Array.from({ length: Math.min(READS_AT_ONCE, pieces) }, reader))
        } catch (error) {
          // Readers still running may yet feed the hasher: it is dropped, never handed to another load.
          next = pieces
          throw error
        }
        if (hasher !== undefined) {
          if (hashed === pieces) rememberDigest(bytes, bodyEnd - Codec.HEADER_BYTES, hasher.digest("binary"))
          releaseStepHasher(hasher)
        }
        // A file that shrank while being read is reported as truncated by the decoder.
        let whole = 0
        while (whole < pieces && complete(whole)) whole++
        return whole === pieces ? bytes : bytes.subarray(0, whole * PIECE_BYTES + Math.max(0, got[whole] ?? 0))
      }),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )

/** Collects a byte stream into one buffer (shared memory when asked). */
const collect = <E, R>(stream: Stream.Stream<Uint8Array, E, R>, shared: boolean) =>
  Effect.map(Stream.runCollect(stream), (chunks) => Codec.concat(chunks, { shared }))

/**
 * Writes a value to a file or a Sink. Plain data needs no Schema; with
 * `schema`, class instances round-trip and the value is validated on load.
 * Returns the files written, as joblib's `dump` returns its filenames: the
 * one file (big arrays included), or none for a Sink.
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
  ) => Effect.Effect<ReadonlyArray<string>, DumpError | E, R>
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
  ): Effect.Effect<ReadonlyArray<string>, DumpError | E, R>
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
        yield* writeAtomically(target, parts, seal, options?.fsync === true)
        // As joblib's dump, the files written: one, whatever the value holds.
        return [target] as ReadonlyArray<string>
      }
      const parts = yield* codec.encodeParts(value, { compress })
      yield* Stream.run(Stream.fromIterable(parts), target)
      return [] as ReadonlyArray<string>
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
    const bytes = typeof source === "string"
      ? yield* readFile(source, shared, options?.verify !== false)
      : yield* collect(source, shared)
    if (bytes.length === 0) {
      return yield* new Truncated({
        expectedBytes: Codec.HEADER_BYTES,
        actualBytes: 0,
        message: typeof source === "string" ? `${source} is empty` : "the stream is empty"
      })
    }
    const codec = schema === undefined ? Codec.make() : Codec.make(schema)
    const decoded = codec.decode(bytes, { shared, verify: options?.verify })
    return yield* typeof source === "string" ? Effect.mapError(decoded, naming(source)) : decoded
  }).pipe(Effect.withSpan("Persist.load"))

const isDecodeError = Schema.is(DecodeError)
const encodeDecodeError = Schema.encodeSync(DecodeError)
const decodeDecodeError = Schema.decodeUnknownSync(DecodeError)

/** A file's decode error, naming the file: which dump is damaged is the first thing its reader needs. */
const naming = (path: string) => <E>(error: E): E =>
  isDecodeError(error) && !error.message.includes(path)
    ? decodeDecodeError({ ...encodeDecodeError(error), message: `${path}: ${error.message}` }) as E
    : error
