/**
 * The filesystem store's primitives: one file per entry (metadata and data together) in two levels of shard
 * directories, written by rename; locks are files made whole and linked into place.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import type { StoreError } from "../../../CacheError.ts"
import type { Entry, Lock, Meta, NewEntry, Primitives } from "../../../Store.ts"
import { writeFileAtomicallySync } from "../../atomicFile.ts"
import { AccessLog } from "../accessLog.ts"
import { alive, attempt, attemptRead, checkedEntry, Damaged, isMissing, kernelNow, parseMetaText } from "./shared.ts"

const ENTRY_MAGIC = Buffer.from("EJLBC1\n\0", "latin1")

/** The file of an entry: two levels of shards, so that no directory grows huge. */
const entryPath = (root: string, key: string) => {
  const name = key.replaceAll(":", "_")
  const digest = name.length > 4 ? name.slice(-4) : name.padStart(4, "0")
  // Joined by hand: `root` is resolved and a checked key has no separators, and this is on every hit.
  return `${root}${NodePath.sep}${digest.slice(0, 2)}${NodePath.sep}${digest.slice(2, 4)}${NodePath.sep}${name}.entry`
}

/**
 * Writes `bytes` to `path` through a temporary file and a rename, so that readers never see a part.
 * `accessed` (epoch ms) becomes the file's modification time: the filesystem store's access record.
 */
const encodeEntry = (entry: NewEntry): Array<Uint8Array> => {
  const json = JSON.stringify(entry.meta)
  // Padded with spaces so that the data starts 64-byte aligned in the file: views over it need no copy.
  const metaBytes = Buffer.byteLength(json, "utf8")
  const meta = Buffer.from(json + " ".repeat((64 - ((12 + metaBytes) % 64)) % 64), "utf8")
  const length = Buffer.alloc(4)
  length.writeUInt32LE(meta.length)
  return [ENTRY_MAGIC, length, meta, ...(entry.data instanceof Uint8Array ? [entry.data] : entry.data)]
}

/** Parses an entry file; throws `Damaged` when it is not one, or not whole. */
const decodeEntry = (bytes: Uint8Array, key: string): Entry => {
  if (bytes.length < 12) throw new Damaged(`the entry file has ${bytes.length} bytes, too few for its header`)
  if (!ENTRY_MAGIC.equals(bytes.subarray(0, 8))) throw new Damaged("the entry file does not start with its magic")
  const metaLength = (bytes[8]! | (bytes[9]! << 8) | (bytes[10]! << 16) | (bytes[11]! << 24)) >>> 0
  if (12 + metaLength > bytes.length) throw new Damaged("the entry file is cut short in its metadata")
  const meta = parseMetaText(Buffer.from(bytes.buffer, bytes.byteOffset + 12, metaLength).toString("utf8"))
  return checkedEntry(meta, bytes.subarray(12 + metaLength), key)
}

/** Opens a file for reading; undefined when it does not exist. */
const openIfExists = (path: string): number | undefined => {
  try {
    return Fs.openSync(path, "r")
  } catch (error) {
    if (isMissing(error)) return undefined
    throw error
  }
}

/** Small entries are read in one call into this buffer, then copied out. */
const scratch = Buffer.allocUnsafe(64 * 1024)

/** What tells one file from another at the same path: entries are replaced by rename, never in place. */
interface FileIdentity {
  readonly ino: number
  readonly size: number
  readonly ctimeMs: number
}

const sameFile = (stat: FileIdentity, file: FileIdentity) =>
  stat.ino === file.ino && stat.size === file.size && stat.ctimeMs === file.ctimeMs

/** Entries kept in memory by a filesystem store, at most; and only those of this size or less. */
const RECENT_ENTRIES = 4096
const RECENT_BYTES = 16 * 1024 * 1024
const RECENT_ENTRY_BYTES = 64 * 1024

/** More than a filesystem timestamp's granularity (a kernel tick). */
const RACY_MILLIS = 100

/** Reads a whole entry file, and which file it was; undefined when it does not exist. */
const readEntryFile = (path: string): { readonly bytes: Uint8Array; readonly file: FileIdentity } | undefined => {
  const fd = openIfExists(path)
  if (fd === undefined) return undefined
  try {
    const n = Fs.readSync(fd, scratch, 0, scratch.length, 0)
    const { ino, size, ctimeMs } = Fs.fstatSync(fd)
    const file = { ino, size, ctimeMs }
    if (n < scratch.length) {
      // Copied into a buffer of its own at offset 0, so that the data's 64-byte alignment holds.
      const out = new Uint8Array(n)
      out.set(scratch.subarray(0, n))
      return { bytes: out, file }
    }
    const out = new Uint8Array(size)
    let offset = 0
    while (offset < size) {
      const read = Fs.readSync(fd, out, offset, size - offset, offset)
      if (read === 0) break
      offset += read
    }
    return { bytes: offset === size ? out : out.subarray(0, offset), file }
  } finally {
    Fs.closeSync(fd)
  }
}

interface LockHolder {
  readonly token: string
  readonly pid: number
  readonly host: string
  readonly expires: number
}

/** A lock file's body: its holder, and when it expires on the Clock of the caller that took it. */
const lockBody = (token: string, expires: number) =>
  JSON.stringify({ token, pid: process.pid, host: Os.hostname(), expires })

/**
 * Creates a lock file whole or not at all: its body goes to a file of its own, which is then linked to the
 * lock's name. A link fails when the name exists, so no one ever reads a half-written lock.
 */
const createLockFile = (path: string, token: string, body: string): boolean => {
  const written = `${path}.${token}.tmp`
  try {
    // Inside the try: a write that fails (a full disk) leaves no empty temp file behind.
    Fs.writeFileSync(written, body)
    Fs.linkSync(written, path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false
    throw error
  } finally {
    Fs.rmSync(written, { force: true })
  }
}

const readLockFile = (path: string): LockHolder | "missing" | "unreadable" => {
  let text: string
  try {
    text = Fs.readFileSync(path, "utf8")
  } catch (error) {
    if (isMissing(error)) return "missing"
    throw error
  }
  try {
    return JSON.parse(text) as LockHolder
  } catch {
    return "unreadable"
  }
}

/** A lock whose holder can no longer be working: past its expiry, or its process gone on this host. */
const staleLock = (holder: LockHolder, now: number) =>
  holder.expires < now || (holder.host === Os.hostname() && !alive(holder.pid))

/**
 * Locks this process released but could not delete, by token, with their file: free for its own later calls,
 * in any store it opens on the same cache; each lookup or lock tries the delete again.
 */
const released = new Map<string, string>()

/** Deletes the locks this process could not delete before, where they are still its own. */
const retryReleases = () => {
  for (const [token, path] of released) {
    try {
      const held = readLockFile(path)
      if (typeof held === "object" && held.token === token) Fs.rmSync(path, { force: true })
      released.delete(token)
    } catch {}
  }
}

/** How long one process may take to break a stale lock before others may break its claim. */
const BREAK_TTL = 10_000

/**
 * Removes the stale lock `token` (undefined: an unreadable one) so that waiters can race for it again. One
 * breaker at a time, by a claim file made like a lock, and only if the lock is still the one judged stale:
 * two waiters that both saw it stale never remove a lock that one of them has just taken.
 */
const breakLock = (path: string, token: string | undefined, now: number): boolean => {
  const claim = `${path}.break`
  const mine = Crypto.randomUUID()
  if (!createLockFile(claim, mine, lockBody(mine, now + BREAK_TTL))) {
    // A breaker that died leaves its claim behind: clear it once it is stale, for the next try.
    const breaker = readLockFile(claim)
    if (breaker === "unreadable" || (typeof breaker === "object" && staleLock(breaker, now))) {
      Fs.rmSync(claim, { force: true })
    }
    return false
  }
  try {
    const current = readLockFile(path)
    if (current === "missing") return true
    if ((current === "unreadable" ? undefined : current.token) !== token) return false
    Fs.rmSync(path, { force: true })
    return true
  } finally {
    Fs.rmSync(claim, { force: true })
  }
}

const store = "filesystem"

/** An entry's metadata from the head of its file, with its last access: undefined if it is not a whole entry of `key`. */
const readMeta = (path: string, key: string, accesses: AccessLog<string>): Meta | undefined => {
  const fd = openIfExists(path)
  if (fd === undefined) return undefined
  try {
    const head = Buffer.alloc(12)
    if (Fs.readSync(fd, head, 0, 12, 0) < 12 || !ENTRY_MAGIC.equals(head.subarray(0, 8))) return undefined
    const metaLength = head.readUInt32LE(8)
    const metaBytes = Buffer.alloc(metaLength)
    if (Fs.readSync(fd, metaBytes, 0, metaLength, 12) < metaLength) return undefined
    const meta = JSON.parse(metaBytes.toString("utf8")) as Meta
    const { size, mtimeMs } = Fs.fstatSync(fd)
    if (meta.key !== key || 12 + metaLength + meta.size !== size) return undefined
    return { ...meta, accessed: Math.max(Math.floor(mtimeMs), accesses.lastSeen(path) ?? 0) }
  } catch {
    return undefined
  } finally {
    Fs.closeSync(fd)
  }
}

const keyOfFile = (file: string) => file.slice(0, -".entry".length).replaceAll("_", ":")

/** Visits every entry file under `root`, two directory levels down. */
const walkEntries = (root: string, visit: (path: string, file: string) => void) => {
  for (const a of Fs.readdirSync(root)) {
    if (a.startsWith(".") || !Fs.statSync(NodePath.join(root, a)).isDirectory()) continue
    for (const b of Fs.readdirSync(NodePath.join(root, a))) {
      const dir = NodePath.join(root, a, b)
      for (const file of Fs.readdirSync(dir)) {
        if (file.endsWith(".entry")) visit(NodePath.join(dir, file), file)
      }
    }
  }
}

/**
 * Small entries read lately, with the identity of the file they came from: while a `stat` shows the same file
 * (entries are replaced by rename, so a new entry is a new inode with a new ctime), a hit is one system call
 * instead of three. Handed out as copies, so that a caller mutating its result changes nothing here.
 */
const makeRecentEntries = () => {
  const recent = new Map<string, { readonly file: FileIdentity; readonly entry: Entry }>()
  let recentBytes = 0
  const forget = (path: string) => {
    const known = recent.get(path)
    if (known === undefined) return
    recent.delete(path)
    recentBytes -= known.entry.data.length
  }
  const remember = (path: string, file: FileIdentity, entry: Entry) => {
    // A file changed just before it was read could change again within the same timestamp tick, unseen by
    // `stat`: only files older than that are remembered (git's "racily clean" rule).
    if (entry.data.length > RECENT_ENTRY_BYTES || kernelNow() - file.ctimeMs < RACY_MILLIS) return false
    recent.set(path, { file, entry })
    recentBytes += entry.data.length
    for (const [oldest] of recent) {
      if (recent.size <= RECENT_ENTRIES && recentBytes <= RECENT_BYTES) break
      forget(oldest)
    }
    return true
  }
  const readFresh = (path: string, key: string): Entry | undefined => {
    const read = readEntryFile(path)
    if (read === undefined) return undefined
    const entry = decodeEntry(read.bytes, key)
    if (entry === undefined || !remember(path, read.file, entry)) return entry
    return { meta: entry.meta, data: entry.data.slice() }
  }
  /** The entry of `key` in `path`: the one remembered while its file is the same, or read afresh. */
  const read = (path: string, key: string): Entry | undefined => {
    const known = recent.get(path)
    if (known === undefined) return readFresh(path, key)
    const stat = Fs.statSync(path, { throwIfNoEntry: false })
    if (stat === undefined) {
      forget(path)
      return undefined
    }
    if (sameFile(stat, known.file)) return { meta: known.entry.meta, data: known.entry.data.slice() }
    forget(path)
    return readFresh(path, key)
  }
  const clear = () => {
    recent.clear()
    recentBytes = 0
  }
  return { read, forget, clear }
}

/**
 * Takes the lock file of `key`, or undefined while another holds it. A lock whose holder died or expired is
 * taken over, and only the lock judged so; a lock this process released but could not delete is as free.
 */
const takeLock = (root: string, key: string, ttl: Duration.Input, now: number): Lock | undefined => {
  if (released.size > 0) retryReleases()
  const path = `${entryPath(root, key)}.lock`
  Fs.mkdirSync(NodePath.dirname(path), { recursive: true })
  const token = Crypto.randomUUID()
  const body = lockBody(token, now + Duration.toMillis(ttl))
  for (let tries = 0; tries < 2; tries++) {
    if (createLockFile(path, token, body)) {
      return {
        // A release that fails is remembered: this process's later calls take the lock as free.
        release: attempt(store, "unlock", () => {
          const held = readLockFile(path)
          if (typeof held === "object" && held.token === token) Fs.rmSync(path, { force: true })
        }).pipe(Effect.catch(() => Effect.sync(() => void released.set(token, path))))
      }
    }
    const holder = readLockFile(path)
    if (holder === "missing") continue
    const free = holder === "unreadable" || released.delete(holder.token) || staleLock(holder, now)
    if (!free) return undefined
    if (!breakLock(path, holder === "unreadable" ? undefined : holder.token, now)) return undefined
  }
  return undefined
}

const makeFileSystem = (directory: string, accesses: AccessLog<string>): Primitives => {
  const root = NodePath.resolve(directory)
  const existing = Fs.statSync(root, { throwIfNoEntry: false })
  if (existing !== undefined && !existing.isDirectory()) {
    throw new Error(`${root} is a file, not a cache directory (a SQLite cache ends in .sqlite or .db)`)
  }
  Fs.mkdirSync(root, { recursive: true })
  const ignore = NodePath.join(root, ".gitignore")
  if (!Fs.existsSync(ignore)) writeFileAtomicallySync(ignore, [Buffer.from("# Created by effect-joblib\n*\n")])
  const recent = makeRecentEntries()
  return {
    name: store,
    get: (key) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        attemptRead(store, key, () => {
          if (released.size > 0) retryReleases()
          const path = entryPath(root, key)
          const entry = recent.read(path, key)
          if (entry === undefined) return undefined
          accesses.seen(path, now)
          return { meta: { ...entry.meta, accessed: now }, data: entry.data }
        })),
    meta: (key) => attempt(store, "meta", () => readMeta(entryPath(root, key), key, accesses)),
    put: (entry) =>
      attempt(store, "put", () => {
        const path = entryPath(root, entry.meta.key)
        Fs.mkdirSync(NodePath.dirname(path), { recursive: true })
        writeFileAtomicallySync(path, encodeEntry(entry), entry.meta.accessed)
        accesses.stores(path, entry.meta.accessed)
      }),
    remove: (key) =>
      attempt(store, "remove", () => {
        const path = entryPath(root, key)
        accesses.forget(path)
        recent.forget(path)
        try {
          Fs.unlinkSync(path)
          return true
        } catch (error) {
          if (isMissing(error)) return false
          throw error
        }
      }),
    list: attempt(store, "list", () => {
      const out: Array<Meta> = []
      walkEntries(root, (path, file) => {
        const meta = readMeta(path, keyOfFile(file), accesses)
        if (meta !== undefined) out.push(meta)
      })
      return out
    }),
    clear: attempt(store, "clear", () => {
      accesses.forgetAll()
      recent.clear()
      walkEntries(root, (path) => Fs.rmSync(path, { force: true }))
    }),
    lock: (key, ttl) =>
      Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => attempt(store, "lock", () => takeLock(root, key, ttl, now))
      )
  }
}

/** Opens the store in `directory`, creating it; access times are flushed when the scope closes. */
export const open = (directory: string): Effect.Effect<Primitives, StoreError, Scope.Scope> =>
  Effect.gen(function*() {
    // Best effort: a read-only cache still serves hits.
    const accesses = new AccessLog<string>((batch) => {
      for (const [path, at] of batch) {
        try {
          Fs.utimesSync(path, at / 1000, at / 1000)
        } catch {}
      }
    })
    // Best effort, and typed: a flush that fails must not become a defect as the store closes.
    yield* Effect.addFinalizer(() => Effect.ignore(attempt("filesystem", "flush", () => accesses.flush())))
    return yield* attempt("filesystem", "open", () => makeFileSystem(directory, accesses))
  })
