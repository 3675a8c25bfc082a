/**
 * Constants of the pool protocol, in plain JavaScript so that workers load
 * without TypeScript stripping (which costs a cold worker ~50 ms).
 */

/** Item statuses in a `done` or `tick` message. */
export const Status = /** @type {const} */ ({ Success: 0, Failure: 1, Defect: 2, Timeout: 3 })

/** Slot of a worker's control array holding the id of a batch to cancel. */
export const CANCEL = 0

/** The key of a reference to a buffer sent once per process with a `buffers` message. */
export const REF = "effect-joblib/ref"
