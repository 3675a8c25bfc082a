/**
 * The SQLite store's primitives, on `node:sqlite`: a table of entries indexed by last access, a table of
 * locks naming their holder, WAL mode; entries of 100 KB or more keep their data in files beside it.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import type * as NodeSqlite from "node:sqlite"
import { StoreError } from "../../../CacheError.ts"
import type { Entry, Limits, Meta, NewEntry, Primitives } from "../../../Store.ts"
import { writeFileAtomicallySync } from "../../atomicFile.ts"
import * as Options from "../../options.ts"
import { AccessLog } from "../accessLog.ts"
import {
  alive,
  attempt,
  attemptRead,
  checkedEntry,
  Damaged,
  isMissing,
  joined,
  kernelNow,
  parseMetaText
} from "./shared.ts"

/** Blobs of at least this size are kept by a SQLite store in files beside the database. */
const EXTERNAL_BYTES = 100 * 1024

/** How old a blob file named by no row must be before a SQLite store removes it as left by a crash. */
const ORPHAN_AGE = 10 * 60 * 1000

/**
 * Locks this process released but could not delete (a full disk), by token, with their database: free for its
 * own later calls, in any store it opens on the same cache; each operation tries the delete again.
 */
const released = new Map<string, string>()

/** Sets up a cache database: its pages, journal and tables, with the columns later versions added. */
const prepareSchema = (db: NodeSqlite.DatabaseSync) => {
  // Large pages and a rowid table keep big blobs cheap to write (4× faster than the defaults for 1 MB).
  db.exec(`
    PRAGMA page_size = 65536;
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS entries (
      key TEXT PRIMARY KEY, meta TEXT NOT NULL, data BLOB NOT NULL,
      size INTEGER NOT NULL, accessed INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS entries_by_access ON entries (accessed);
    CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, token TEXT NOT NULL, expires INTEGER NOT NULL);
  `)
  // Caches made by earlier versions gain the columns added since: an entry's file (big blobs beside the
  // database), and a lock's holder (so that a lock whose process is gone is taken over at once).
  const addColumn = (table: string, column: string, type: string) => {
    const columns = db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>
    if (columns.some((existing) => existing.name === column)) return
    try {
      db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`)
    } catch (error) {
      // Another process added it first.
      if (!String(error).includes("duplicate column")) throw error
    }
  }
  addColumn("entries", "file", "TEXT")
  addColumn("locks", "pid", "INTEGER")
  addColumn("locks", "host", "TEXT")
}

const store = "sqlite"

/** The database `file` for the life of the scope, with its schema set up. */
const openDatabase = (file: string) =>
  Effect.gen(function*() {
    const sqlite = process.getBuiltinModule("node:sqlite") as typeof NodeSqlite | undefined
    if (sqlite === undefined) {
      return yield* new StoreError({
        store,
        operation: "open",
        message: `Store.layerSqlite needs node:sqlite, from Node 22.13 on; this is Node ${process.versions.node}`
      })
    }
    const { DatabaseSync } = sqlite
    return yield* Effect.acquireRelease(
      attempt(store, "open", () => {
        if (file !== ":memory:") Fs.mkdirSync(NodePath.dirname(NodePath.resolve(file)), { recursive: true })
        const db = new DatabaseSync(file, { timeout: 5000 })
        try {
          prepareSchema(db)
        } catch (error) {
          // Opened but not set up (a full disk): closed here, since no release runs for a failed acquire.
          db.close()
          throw error
        }
        return db
      }),
      // On a full disk the close's checkpoint may fail: typed and ignored, never a defect.
      (db) => Effect.ignore(attempt(store, "close", () => db.close()))
    )
  })

/** Every statement the store runs, prepared once. */
const prepareStatements = (db: NodeSqlite.DatabaseSync) => ({
  get: db.prepare("SELECT meta, data, file FROM entries WHERE key = ?"),
  meta: db.prepare("SELECT meta, accessed FROM entries WHERE key = ?"),
  fileOf: db.prepare("SELECT file FROM entries WHERE key = ?"),
  files: db.prepare("SELECT file FROM entries WHERE file IS NOT NULL"),
  put: db.prepare(
    "INSERT OR REPLACE INTO entries (key, meta, data, size, accessed, file) VALUES (?, ?, ?, ?, ?, ?)"
  ),
  touch: db.prepare("UPDATE entries SET accessed = ? WHERE key = ? AND accessed < ?"),
  remove: db.prepare("DELETE FROM entries WHERE key = ? RETURNING file"),
  list: db.prepare("SELECT meta, accessed FROM entries"),
  totals: db.prepare("SELECT count(*) AS items, coalesce(sum(size), 0) AS bytes FROM entries"),
  oldest: db.prepare("SELECT key, size FROM entries ORDER BY accessed LIMIT ?"),
  expired: db.prepare("DELETE FROM entries WHERE accessed < ? RETURNING file"),
  clear: db.prepare("DELETE FROM entries"),
  lock: db.prepare(
    "INSERT INTO locks (key, token, expires, pid, host) VALUES (?, ?, ?, ?, ?) " +
      "ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires = excluded.expires, pid = excluded.pid, " +
      "host = excluded.host WHERE locks.expires < ?"
  ),
  holder: db.prepare("SELECT token, pid, host FROM locks WHERE key = ?"),
  // Takes over the lock `token` held: one caller wins, since the first changes the token.
  takeOver: db.prepare("UPDATE locks SET token = ?, expires = ?, pid = ?, host = ? WHERE key = ? AND token = ?"),
  unlock: db.prepare("DELETE FROM locks WHERE key = ? AND token = ?"),
  unlockToken: db.prepare("DELETE FROM locks WHERE token = ?")
})

type Statements = ReturnType<typeof prepareStatements>

/**
 * Big blobs live in files beside the database, named in the row: SQLite would write each twice (its log, then
 * the database), and measures external files as faster from about 100 KB
 * (https://www.sqlite.org/intern-v-extern-blob.html). The rows still say which entries exist.
 */
const makeBlobs = (file: string) => {
  const dir = file === ":memory:" ? undefined : `${NodePath.resolve(file)}.blobs`
  return {
    dir,
    /** Writes a blob of `size` bytes to a file of its own, if it is big enough; its name, or null. */
    write: (key: string, parts: ReadonlyArray<Uint8Array>, size: number): string | null => {
      if (dir === undefined || size < EXTERNAL_BYTES) return null
      Fs.mkdirSync(dir, { recursive: true })
      const name = `${key.replaceAll(":", "_")}.${Crypto.randomBytes(8).toString("hex")}`
      writeFileAtomicallySync(NodePath.join(dir, name), parts)
      return name
    },
    drop: (name: string | null | undefined) => {
      if (name != null && dir !== undefined) Fs.rmSync(NodePath.join(dir, name), { force: true })
    },
    read: (name: string): Uint8Array | undefined => {
      try {
        const bytes = Fs.readFileSync(NodePath.join(dir!, name))
        return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
      } catch (error) {
        if (isMissing(error)) return undefined
        throw error
      }
    },
    clear: () => {
      if (dir === undefined || !Fs.existsSync(dir)) return
      for (const name of Fs.readdirSync(dir)) Fs.rmSync(NodePath.join(dir, name), { force: true })
    }
  }
}

type Blobs = ReturnType<typeof makeBlobs>

/**
 * Removes blob files a crash left behind (written but never named by a row, or unnamed but not yet removed),
 * once old enough that no writer can still be about to name them. At most once per `ORPHAN_AGE` across
 * processes (a marker file's time says when), so that opening a big cache in every worker does not walk its
 * files each time.
 */
const sweepOrphans = (blobs: Blobs, statements: Statements) =>
  attempt(store, "open", () => {
    const dir = blobs.dir
    if (dir === undefined || !Fs.existsSync(dir)) return
    const marker = NodePath.join(dir, ".swept")
    const before = kernelNow() - ORPHAN_AGE
    if ((Fs.statSync(marker, { throwIfNoEntry: false })?.mtimeMs ?? 0) >= before) return
    Fs.writeFileSync(marker, "")
    const named = new Set((statements.files.all() as Array<{ file: string }>).map((row) => row.file))
    for (const name of Fs.readdirSync(dir)) {
      if (name.startsWith(".") || named.has(name)) continue
      const path = NodePath.join(dir, name)
      const stat = Fs.statSync(path, { throwIfNoEntry: false })
      if (stat !== undefined && stat.mtimeMs < before) Fs.rmSync(path, { force: true })
    }
  })

/**
 * The lock operation: a row naming its holder's token, process and host. A holder whose process is gone on this
 * host, or a lock this process released but could not delete (a full disk), is taken over at once.
 */
const makeLocking = (statements: Statements, database: string) => {
  /** Deletes the locks this process could not delete before, now that it may. */
  const retryReleases = () => {
    for (const [token, owner] of released) {
      if (owner !== database) continue
      try {
        statements.unlockToken.run(token)
        released.delete(token)
      } catch {}
    }
  }
  const lock: Primitives["lock"] = (key, lifetime) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      attempt(store, "lock", () => {
        if (released.size > 0) retryReleases()
        const ttl = Duration.toMillis(lifetime)
        const token = Crypto.randomUUID()
        const host = Os.hostname()
        // A release that fails is remembered: this process's later calls take the lock as free, rather than wait
        // out its ttl behind a holder that is this very process.
        const release = {
          release: attempt(store, "unlock", () => statements.unlock.run(key, token)).pipe(
            Effect.catch(() => Effect.sync(() => void released.set(token, database)))
          )
        }
        if (statements.lock.run(key, token, now + ttl, process.pid, host, now).changes > 0) return release
        const holder = statements.holder.get(key) as
          | { token: string; pid: number | null; host: string | null }
          | undefined
        if (holder === undefined) return undefined
        const free = released.delete(holder.token) ||
          (holder.pid !== null && holder.host === host && !alive(holder.pid))
        if (!free) return undefined
        const taken = statements.takeOver.run(token, now + ttl, process.pid, host, key, holder.token).changes > 0
        return taken ? release : undefined
      }))
  return { lock, retryReleases }
}

/** Records of access, written in batches in one transaction rather than on every hit. */
const makeAccessLog = (db: NodeSqlite.DatabaseSync, statements: Statements) =>
  new AccessLog<string>((batch) => {
    db.exec("BEGIN")
    try {
      for (const [key, at] of batch) statements.touch.run(at, key, at)
      db.exec("COMMIT")
    } catch (error) {
      db.exec("ROLLBACK")
      throw error
    }
  })

/** The limits applied in SQL, from the totals and the exact access order, rather than by listing every entry. */
const enforceInSql = (
  statements: Statements,
  blobs: Blobs,
  accesses: AccessLog<string>,
  remove: (key: string) => boolean
) =>
(limits: Limits, now: number) => {
  if (limits.maxAge !== undefined) {
    const before = now - Options.toMillis(limits.maxAge)
    for (const row of statements.expired.all(before) as Array<{ file: string | null }>) blobs.drop(row.file)
  }
  const { items, bytes } = statements.totals.get() as { items: number; bytes: number }
  let overItems = limits.maxItems === undefined ? 0 : items - limits.maxItems
  let overBytes = limits.maxBytes === undefined ? 0 : bytes - limits.maxBytes
  if (overItems <= 0 && overBytes <= 0) return
  accesses.flush(true)
  const rows = statements.oldest.all(Math.max(overItems, 64)) as Array<{ key: string; size: number }>
  for (const row of rows) {
    if (overItems <= 0 && overBytes <= 0) break
    remove(row.key)
    overItems--
    overBytes -= row.size
  }
}

/** Opens (or creates) the database `file`; access records are flushed when the scope closes. */
export const open = (file: string): Effect.Effect<Primitives, StoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const db = yield* openDatabase(file)
    const statements = yield* attempt(store, "open", () => prepareStatements(db))
    const blobs = makeBlobs(file)
    yield* sweepOrphans(blobs, statements)
    const accesses = makeAccessLog(db, statements)
    // Best effort, and typed: a flush on a full disk must not become a defect as the store closes.
    yield* Effect.addFinalizer(() => Effect.ignore(attempt(store, "flush", () => accesses.flush())))
    const { lock, retryReleases } = makeLocking(statements, NodePath.resolve(file))
    const parseMeta = (row: { meta: string; accessed: number }): Meta | undefined => {
      try {
        const meta = JSON.parse(row.meta) as Meta
        return { ...meta, accessed: Math.max(row.accessed, accesses.lastSeen(meta.key) ?? 0) }
      } catch {
        return undefined
      }
    }
    const remove = (key: string) => {
      accesses.forget(key)
      const rows = statements.remove.all(key) as Array<{ file: string | null }>
      for (const row of rows) blobs.drop(row.file)
      return rows.length > 0
    }
    const missing = Symbol("missing")
    /** The entry of `key`; undefined without a row; `missing` when its row names a data file that is gone. */
    const read = (key: string): Entry | undefined | typeof missing => {
      const row = statements.get.get(key) as { meta: string; data: Uint8Array; file: string | null } | undefined
      if (row === undefined) return undefined
      const meta = parseMetaText(row.meta)
      const data = row.file === null ? row.data : blobs.read(row.file)
      if (data === undefined) return missing
      return checkedEntry(meta, data, key)
    }
    const put = (entry: NewEntry) => {
      const meta = entry.meta
      const parts = entry.data instanceof Uint8Array ? [entry.data] : entry.data
      const size = parts.reduce((sum, part) => sum + part.length, 0)
      const name = blobs.write(meta.key, parts, size)
      const old = (statements.fileOf.get(meta.key) as { file: string | null } | undefined)?.file
      try {
        statements.put.run(
          meta.key,
          JSON.stringify(meta),
          name === null ? joined(parts) : new Uint8Array(0),
          size,
          meta.accessed,
          name
        )
      } catch (error) {
        blobs.drop(name)
        throw error
      }
      if (old !== name) blobs.drop(old)
      accesses.stores(meta.key, meta.accessed)
    }
    const enforce = enforceInSql(statements, blobs, accesses, remove)
    return {
      name: store,
      get: (key) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          attemptRead(store, key, () => {
            if (released.size > 0) retryReleases()
            // A blob file gone between the row and the read was replaced by another process: read the row again.
            let entry = read(key)
            if (entry === missing) entry = read(key)
            if (entry === missing) throw new Damaged("the entry's data file is missing")
            if (entry === undefined) return undefined
            accesses.seen(key, now)
            return { meta: { ...entry.meta, accessed: now }, data: entry.data }
          })),
      meta: (key) =>
        attempt(store, "meta", () => {
          const row = statements.meta.get(key) as { meta: string; accessed: number } | undefined
          return row === undefined ? undefined : parseMeta(row)
        }),
      put: (entry) => attempt(store, "put", () => put(entry)),
      enforce: (limits) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => attempt(store, "put", () => enforce(limits, now))),
      remove: (key) => attempt(store, "remove", () => remove(key)),
      list: attempt(store, "list", () => {
        const out: Array<Meta> = []
        for (const row of statements.list.all() as Array<{ meta: string; accessed: number }>) {
          const meta = parseMeta(row)
          if (meta !== undefined) out.push(meta)
        }
        return out
      }),
      clear: attempt(store, "clear", () => {
        statements.clear.run()
        accesses.forgetAll()
        blobs.clear()
      }),
      lock
    } satisfies Primitives
  })
