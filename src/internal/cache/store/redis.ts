/**
 * The Redis store's primitives: each entry a hash of its metadata and data, a sorted set of accesses for
 * LRU eviction, locks as `SET NX PX` keys released by token.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import { StoreError } from "../../../CacheError.ts"
import type { Entry, Meta, Primitives } from "../../../Store.ts"
import { connectRedis } from "../../redis.ts"
import { attemptRead, checkedEntry, Damaged, joined, parseMetaText, storeError } from "./shared.ts"

const toBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)

const unlockScript = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

/**
 * Takes the lock KEYS[1] as ARGV[1] ("<token> <expires>", expires in epoch millis on the caller's Clock) for
 * ARGV[2] millis, unless a holder's own expiry is at or past ARGV[3], the caller's now; a holder that is ARGV[4]
 * (a lock this process released but could not delete) counts as free. The key also expires on
 * the server after the ttl, so that a lock nobody looks at again goes away by itself.
 */
const lockScript = `
local held = redis.call('get', KEYS[1])
if held and held ~= ARGV[4] then
  local expires = tonumber(string.match(held, ' (%d+)$'))
  if expires == nil or expires >= tonumber(ARGV[3]) then return 0 end
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`

/**
 * Locks this process released but could not delete (a server away), by key: free for its own next call for the
 * key, in any store it opens, which takes the lock over.
 */
const released = new Map<string, string>()

const store = "redis"

/** A command whose failure is a `StoreError` of `operation`, keeping the client's error as its cause. */
const request = <A>(operation: string, run: () => Promise<A>) =>
  Effect.tryPromise({ try: run, catch: storeError(store, operation) })

/** Runs a pipeline or transaction; its commands report errors in their replies, not by rejecting. */
const exec = (operation: string, run: () => Promise<Array<[Error | null, unknown]> | null>) =>
  Effect.flatMap(request(operation, run), (replies) => {
    const failed = replies === null ? new Error("the transaction was aborted") : replies.find(([error]) => error)?.[0]
    return failed
      ? Effect.fail(new StoreError({ store, operation, message: failed.message, cause: failed }))
      : Effect.succeed((replies ?? []).map(([, reply]) => reply))
  })

/** A client for the life of the scope, whose commands time out rather than wait for a server that is away. */
const connect = (url: string, timeout: number) =>
  connectRedis({
    url,
    feature: "Store.layerRedis",
    install: "ioredis",
    timeout,
    mode: "failFast",
    commandTimeout: true
  })
    .pipe(
      Effect.mapError((failure) =>
        new StoreError({
          store,
          operation: failure.reason === "Unreachable" ? "connect" : "open",
          message: failure.message,
          cause: failure.cause
        })
      )
    )

type Client = Effect.Success<ReturnType<typeof connect>>

/** An entry from its hash's fields: undefined for none, `Damaged` for a hash that lacks a field or fails its check. */
const parseEntry = (key: string, fields: Record<string, Buffer> | null): Entry | undefined => {
  if (fields === null) return undefined
  if (fields.meta === undefined || fields.data === undefined) {
    throw new Damaged(`the entry lacks its ${fields.meta === undefined ? "metadata" : "data"}`)
  }
  const meta = parseMetaText(fields.meta.toString("utf8"))
  return checkedEntry(meta, new Uint8Array(fields.data.buffer, fields.data.byteOffset, fields.data.length), key)
}

/** Locks as keys holding a token and an expiry on the caller's Clock, taken and released by script. */
const makeLocking = (client: Client, prefix: string) => {
  /** Deletes the locks this process could not delete before, where they are still its own. */
  const retryReleases = Effect.suspend(() =>
    Effect.forEach(
      [...released].filter(([lockKey]) => lockKey.startsWith(prefix)),
      ([lockKey, value]) =>
        request("unlock", () => client.eval(unlockScript, 1, lockKey, value)).pipe(
          Effect.andThen(Effect.sync(() => released.delete(lockKey))),
          Effect.ignore
        ),
      { discard: true }
    )
  )
  const lock: Primitives["lock"] = (key, lifetime) =>
    Effect.gen(function*() {
      const ttl = Math.max(1, Math.ceil(Duration.toMillis(lifetime)))
      const now = yield* Clock.currentTimeMillis
      const lockKey = `${prefix}lock:${key}`
      const value = `${Crypto.randomUUID()} ${now + ttl}`
      // A release that fails is remembered: this process's next call for the key takes the lock as free.
      const release = request("unlock", () => client.eval(unlockScript, 1, lockKey, value)).pipe(
        Effect.catch(() => Effect.sync(() => void released.set(lockKey, value)))
      )
      const mine = released.get(lockKey) ?? ""
      const taken = yield* request("lock", () => client.eval(lockScript, 1, lockKey, value, ttl, now, mine)).pipe(
        // A server that paused may still run the lock once it resumes: the release, sent after it on the
        // same connection, runs after it, so that no lock is left behind by a call that gave up.
        Effect.tapError(() => release)
      )
      if (taken === 1 && mine !== "") released.delete(lockKey)
      return taken === 1 ? { release } : undefined
    })
  return { lock, retryReleases }
}

/** Connects to the server at `url`, for the life of the scope. */
export const open = (
  url: string,
  options: { readonly prefix?: string | undefined; readonly timeout?: number | undefined }
): Effect.Effect<Primitives, StoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "effect-joblib:"
    const client = yield* connect(url, options.timeout ?? 2000)
    const { lock, retryReleases } = makeLocking(client, prefix)
    const entryKey = (key: string) => `${prefix}entry:${key}`
    const accessKey = `${prefix}access`
    const metaOf = Effect.fnUntraced(function*(keys: ReadonlyArray<string>) {
      if (keys.length === 0) return [] as Array<Meta>
      const pipeline = client.pipeline()
      for (const key of keys) pipeline.hget(entryKey(key), "meta")
      pipeline.zmscore(accessKey, ...keys)
      const replies = yield* exec("list", () => pipeline.exec())
      const scores = (replies.at(-1) ?? []) as Array<string | null>
      const out: Array<Meta> = []
      keys.forEach((_key, i) => {
        const raw = replies[i] as string | null | undefined
        if (raw === null || raw === undefined) return
        try {
          const meta = JSON.parse(raw) as Meta
          out.push({ ...meta, accessed: Number(scores[i] ?? meta.accessed) })
        } catch {}
      })
      return out
    })
    return {
      name: store,
      get: (key) =>
        Effect.gen(function*() {
          if (released.size > 0) yield* retryReleases
          const now = yield* Clock.currentTimeMillis
          const replies = yield* exec(
            "get",
            () => client.pipeline().hgetallBuffer(entryKey(key)).zadd(accessKey, "XX", String(now), key).exec()
          )
          const fields = replies[0] as Record<string, Buffer> | null
          const entry = yield* attemptRead(
            store,
            key,
            () => parseEntry(key, fields && Object.keys(fields).length > 0 ? fields : null)
          )
          return entry === undefined ? undefined : { meta: { ...entry.meta, accessed: now }, data: entry.data }
        }),
      meta: (key) => Effect.map(metaOf([key]), (metas) => metas[0]),
      put: (entry) =>
        exec("put", () =>
          client.multi()
            .hset(entryKey(entry.meta.key), "meta", JSON.stringify(entry.meta), "data", toBuffer(joined(entry.data)))
            .zadd(accessKey, String(entry.meta.accessed), entry.meta.key)
            .exec()),
      remove: (key) =>
        Effect.map(
          exec("remove", () => client.multi().del(entryKey(key)).zrem(accessKey, key).exec()),
          (replies) => Number(replies[0] ?? 0) > 0
        ),
      list: Effect.flatMap(request("list", () => client.zrange(accessKey, "0", "-1")), metaOf),
      clear: Effect.gen(function*() {
        const keys = yield* request("clear", () => client.zrange(accessKey, "0", "-1"))
        for (let i = 0; i < keys.length; i += 500) {
          const chunk = keys.slice(i, i + 500)
          yield* request("clear", () => client.del(...chunk.map(entryKey)))
        }
        yield* request("clear", () => client.del(accessKey))
      }),
      lock
    } satisfies Primitives
  })
