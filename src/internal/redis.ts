/** The one way this library connects to Redis: ioredis, loaded when first needed, in a scope. */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as IORedis from "ioredis"
import { importOptional } from "./optional.ts"

/** A Redis URL fit for messages: without its credentials. */
export const shownUrl = (url: string) => {
  try {
    const parsed = new URL(url)
    parsed.username = ""
    parsed.password = ""
    return parsed.toString()
  } catch {
    return "<redis url>"
  }
}

/** Why no connection came about: the package is missing, or the server did not answer. */
export interface ConnectFailure {
  readonly reason: "MissingDependency" | "Unreachable"
  readonly message: string
  /** The client's error, when it could not connect. */
  readonly cause?: unknown
}

export interface ConnectOptions {
  readonly url: string
  /** Who connects, and what to install for it, for the missing-package message. */
  readonly feature: string
  readonly install: string
  /** Milliseconds to wait for the connection (and, failing fast, for each reply). */
  readonly timeout: number
  /**
   * `"failFast"`: commands fail at once while the server is away (stores, drivers). `"blocking"`: they wait
   * for it to come back (BullMQ's own connections).
   */
  readonly mode: "failFast" | "blocking"
  /** Fail a command that gets no reply within `timeout` (failFast only). */
  readonly commandTimeout?: boolean | undefined
}

/**
 * A connected client for the life of the scope. Failures after connecting surface as the errors of the
 * calls; the client keeps reconnecting in the background.
 */
export const connectRedis = (
  options: ConnectOptions
): Effect.Effect<IORedis.Redis, ConnectFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const { Redis } = yield* importOptional<typeof IORedis>("ioredis", options.feature, options.install).pipe(
      Effect.mapError((message): ConnectFailure => ({ reason: "MissingDependency", message }))
    )
    const blocking = options.mode === "blocking"
    const client = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Redis(options.url, {
          lazyConnect: true,
          connectTimeout: options.timeout,
          maxRetriesPerRequest: blocking ? null : 1,
          enableOfflineQueue: blocking,
          ...(!blocking && options.commandTimeout === true ? { commandTimeout: options.timeout } : {}),
          retryStrategy: (times: number) => Math.min(times * 200, 2000)
        })
      ),
      (client) => Effect.sync(() => client.disconnect())
    )
    // A failed connection is reported as the caller's typed error, never as an unhandled event.
    client.on("error", () => {})
    yield* Effect.tryPromise({
      try: () => client.connect(),
      catch: (error): ConnectFailure => ({
        reason: "Unreachable",
        message: `cannot reach Redis at ${shownUrl(options.url)}: ${
          error instanceof Error ? error.message : String(error)
        }`,
        cause: error
      })
    })
    return client
  })
