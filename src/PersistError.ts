/**
 * The typed errors of `Codec` and `Persist`. Each names the problem: a file
 * that is not ours, from a newer version, truncated, corrupted, compressed
 * with an unknown method, or holding data that does not match the Schema.
 *
 * @stability unstable
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import * as Compression from "./Compression.ts"

/**
 * The bytes do not start with the effect-joblib magic number: not a dump, or not one of ours.
 *
 * @category errors
 * @since 0.1.0
 */
export class BadMagic extends Schema.TaggedError<BadMagic>()("BadMagic", {
  found: Schema.String,
  message: Schema.String
}) {}

/**
 * The dump was written by a format version this library cannot read.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnsupportedVersion extends Schema.TaggedError<UnsupportedVersion>()("UnsupportedVersion", {
  version: Schema.Number,
  supported: Schema.Number,
  message: Schema.String
}) {}

/**
 * The dump names a compression method that no provided compressor has.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnknownCompression extends Schema.TaggedError<UnknownCompression>()("UnknownCompression", {
  method: Schema.String,
  message: Schema.String
}) {}

/**
 * The dump ends before its declared end.
 *
 * @category errors
 * @since 0.1.0
 */
export class Truncated extends Schema.TaggedError<Truncated>()("Truncated", {
  expectedBytes: Schema.Number,
  actualBytes: Schema.Number,
  message: Schema.String
}) {}

/**
 * The dump's bytes do not match their checksum, or its structure is malformed: it was corrupted.
 *
 * @category errors
 * @since 0.1.0
 */
export class Corrupted extends Schema.TaggedError<Corrupted>()("Corrupted", {
  message: Schema.String
}) {}

/**
 * The data does not match the Schema it is read (or written) with; `path` names the failing field.
 *
 * @category errors
 * @since 0.1.0
 */
export class SchemaMismatch extends Schema.TaggedError<SchemaMismatch>()("SchemaMismatch", {
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * A value cannot be encoded: a function, a symbol, a circular reference, or a
 * class instance without a Schema.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnsupportedValue extends Schema.TaggedError<UnsupportedValue>()("UnsupportedValue", {
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Reading or writing a file failed: it does not exist, the disk is full, the
 * directory is read-only, and so on.
 *
 * @category errors
 * @since 0.1.0
 */
export class PersistIOError extends Schema.TaggedError<PersistIOError>()("PersistIOError", {
  path: Schema.String,
  reason: Schema.Literals(["NotFound", "NoSpace", "ReadOnly", "PermissionDenied", "Other"]),
  message: Schema.String,
  /** The system's error underneath (its `code` and `syscall`). */
  cause: Schema.optional(Schema.Unknown)
}) {}

/**
 * An option of `dump`/`load` is out of range or unknown.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidPersistOptions extends Schema.TaggedError<InvalidPersistOptions>()("InvalidPersistOptions", {
  option: Schema.String,
  message: Schema.String
}) {}

/**
 * Every error of decoding a dump, as one Schema.
 *
 * @category schemas
 * @since 0.6.0
 */
export const DecodeError = Schema.Union([
  BadMagic,
  UnsupportedVersion,
  UnknownCompression,
  Truncated,
  Corrupted,
  SchemaMismatch
])

/**
 * Every error of decoding a dump.
 *
 * @category models
 * @since 0.1.0
 */
export type DecodeError = typeof DecodeError.Type

/**
 * Every error of `Codec` and `Persist`, the compressors' included, as one Schema: its type and its guard
 * derive from it, so a new error is one more member here.
 *
 * @category schemas
 * @since 0.6.0
 */
export const PersistError = Schema.Union([
  ...DecodeError.members,
  UnsupportedValue,
  PersistIOError,
  InvalidPersistOptions,
  Compression.CompressionError
])

/**
 * Every error of `Codec` and `Persist`, the compressors' included.
 *
 * @category models
 * @since 0.1.0
 */
export type PersistError = typeof PersistError.Type

/**
 * Tells whether a value is one of the {@link PersistError}s.
 *
 * **Example** (Guarding a failure)
 *
 * ```ts
 * import { PersistError } from "effect-joblib"
 *
 * PersistError.isPersistError(new PersistError.Corrupted({ message: "bad checksum" })) // true
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isPersistError: (u: unknown) => u is PersistError = Schema.is(PersistError)
