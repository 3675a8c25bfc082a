/**
 * @since 0.1.0
 */

/**
 * Where `Parallel.map` runs its batches: sequential, worker threads.
 *
 * @since 0.1.0
 */
export * as Backend from "./Backend.ts"

/**
 * Batch-size policies as Schedules.
 *
 * @since 0.1.0
 */
export * as Batching from "./Batching.ts"

/**
 * Typed parallel maps over any backend.
 *
 * @since 0.1.0
 */
export * as Parallel from "./Parallel.ts"

/**
 * The typed errors of Parallel and its backends.
 *
 * @since 0.1.0
 */
export * as ParallelError from "./ParallelError.ts"

/**
 * Named, Schema-described units of work.
 *
 * @since 0.1.0
 */
export * as Task from "./Task.ts"

/**
 * Progress of parallel maps: typed events, joblib's `verbose` lines and a terminal progress bar.
 *
 * @since 0.2.0
 */
export * as Progress from "./Progress.ts"

/**
 * Schema-driven binary codec with raw aligned sections and compression.
 *
 * @since 0.1.0
 */
export * as Codec from "./Codec.ts"

/**
 * Compressors as a service: node:zlib (zstd, gzip, zlib, brotli) or fflate.
 *
 * @since 0.1.0
 */
export * as Compression from "./Compression.ts"

/**
 * Deterministic content hashes of values.
 *
 * @since 0.1.0
 */
export * as Hashing from "./Hashing.ts"

/**
 * dump and load to files and streams.
 *
 * @since 0.1.0
 */
export * as Persist from "./Persist.ts"

/**
 * The typed errors of Codec and Persist.
 *
 * @since 0.1.0
 */
export * as PersistError from "./PersistError.ts"

/**
 * The remote backend: batches through a BullMQ queue on Redis, and its workers.
 *
 * @since 0.4.0
 */
export * as Remote from "./Remote.ts"

/**
 * Memoization on a pluggable store: joblib's `Memory`.
 *
 * @since 0.3.0
 */
export * as Cache from "./Cache.ts"

/**
 * Where `Cache` keeps its entries: memory, filesystem, SQLite.
 *
 * @since 0.3.0
 */
export * as Store from "./Store.ts"

/**
 * The typed errors of `Cache` and its stores.
 *
 * @since 0.3.0
 */
export * as CacheError from "./CacheError.ts"
