/**
 * A driver's batches in flight and the reply list they are answered through: workers push each batch's reply
 * to the driver's own list, and one fiber reads it and wakes the batch's waiter. Cheaper than following the
 * queue's event stream, which carries every event of every job.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as IORedis from "ioredis"
import { RemoteFailure } from "../../ParallelError.ts"
import { Named, readWire, Reply } from "./wire.ts"

/** A batch in flight: the Deferred its reply (or a watcher) completes, when it was last looked for, how often it was missing. */
export interface InFlightBatch {
  readonly replied: Deferred.Deferred<Reply, RemoteFailure>
  checkedAt: number
  missing: number
}

export type InFlight = Map<string, InFlightBatch>

/** Replies a driver takes in one command once the first has come. */
const REPLIES_PER_READ = 256

/** Completes the waiter of the batch a reply names; a reply that names no batch is dropped (the watcher gives up on it). */
const deliver = (inFlight: InFlight, bytes: Buffer) => {
  const reply = readWire(Reply, bytes)
  const named = Result.isSuccess(reply) ? reply : readWire(Named, bytes)
  if (Result.isFailure(named)) return
  const { id } = named.success
  const batch = inFlight.get(id)
  if (batch === undefined) return
  Deferred.doneUnsafe(
    batch.replied,
    Result.isSuccess(reply)
      ? Effect.succeed(reply.success)
      : Effect.fail(
        new RemoteFailure({ reason: "Rejected", message: `a malformed reply to batch ${id}: ${reply.failure}` })
      )
  )
}

/**
 * One read of the reply list, to run forever: a blocking pop of every reply waiting (BLMPOP, Redis 7); before
 * Redis 7, a blocking pop for the first reply, then the replies that arrived with it. A lost connection
 * pauses a moment; the connection watcher fails the batches if it stays lost.
 */
export const makeReplyReader = (connection: IORedis.Redis, replyTo: string, inFlight: InFlight) => {
  let blmpop = true
  const readReplies = async () => {
    if (blmpop) {
      try {
        const popped = await connection.blmpopBuffer(1, 1, replyTo, "LEFT", "COUNT", REPLIES_PER_READ)
        for (const bytes of popped?.[1] ?? []) deliver(inFlight, bytes)
        return
      } catch (error) {
        // The server answered with an error (an unknown command, in whatever words): not a lost connection.
        if (!(error instanceof Error && error.name === "ReplyError")) throw error
        blmpop = false
      }
    }
    const popped = await connection.blpopBuffer(replyTo, 1)
    if (popped === null) return
    const more = await connection.lpopBuffer(replyTo, REPLIES_PER_READ)
    deliver(inFlight, popped[1])
    for (const bytes of more ?? []) deliver(inFlight, bytes)
  }
  return Effect.flatMap(
    Effect.promise(() => readReplies().then(() => "up" as const, () => "down" as const)),
    (state) => (state === "down" ? Effect.sleep(100) : Effect.void)
  )
}
