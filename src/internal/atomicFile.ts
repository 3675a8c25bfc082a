/**
 * The one way this library replaces a file: write a temporary file beside it, then rename it into place,
 * so that a reader sees the old file or the new one, never part of either, and a crash leaves no partial
 * file under the final name.
 */
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as NodePath from "node:path"

/** A hidden, unique name beside `path` for the file that will replace it. */
export const temporaryPath = (path: string) =>
  NodePath.join(
    NodePath.dirname(path),
    `.${NodePath.basename(path)}.${process.pid}.${Crypto.randomBytes(6).toString("hex")}.tmp`
  )

/** Replaces `path` with `parts`, synchronously; `accessed` (epoch millis) sets its times. */
export const writeFileAtomicallySync = (path: string, parts: ReadonlyArray<Uint8Array>, accessed?: number) => {
  const temporary = temporaryPath(path)
  try {
    const fd = Fs.openSync(temporary, "wx", 0o644)
    try {
      for (const part of parts) {
        // A write may be short (a nearly full disk): keep going until it fails or completes.
        for (let offset = 0; offset < part.length;) offset += Fs.writeSync(fd, part, offset)
      }
      if (accessed !== undefined) Fs.futimesSync(fd, accessed / 1000, accessed / 1000)
    } finally {
      Fs.closeSync(fd)
    }
    Fs.renameSync(temporary, path)
  } catch (error) {
    Fs.rmSync(temporary, { force: true })
    throw error
  }
}

/**
 * Replaces `path` with what `write` writes to an open handle, asynchronously; `fsync` also flushes it to
 * disk before the rename. `failure(path, doing)` maps an I/O error to the caller's own.
 */
export const writeFileAtomically = <E>(
  path: string,
  write: (handle: Fs.promises.FileHandle) => Promise<void>,
  fsync: boolean,
  failure: (path: string, doing: string) => (error: unknown) => E
): Effect.Effect<void, E> => {
  const temporary = temporaryPath(path)
  const io = <A>(at: string, doing: string, f: () => Promise<A>) =>
    Effect.tryPromise({ try: f, catch: failure(at, doing) })
  return Effect.acquireUseRelease(
    io(temporary, "create", () => Fs.promises.open(temporary, "wx", 0o644)),
    (handle) =>
      io(temporary, "write", async () => {
        await write(handle)
        if (fsync) await handle.datasync()
      }),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  ).pipe(
    Effect.andThen(io(path, "rename into", () => Fs.promises.rename(temporary, path))),
    Effect.onExit((exit) =>
      exit._tag === "Success"
        ? Effect.void
        : Effect.promise(() => Fs.promises.rm(temporary, { force: true }).catch(() => undefined))
    )
  )
}
