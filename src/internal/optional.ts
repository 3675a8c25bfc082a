/** Optional peer dependencies, loaded only by the features that use them. */
import * as Effect from "effect/Effect"

/** Tells a package that is not installed apart from one that failed while loading. */
const isMissing = (error: unknown, name: string) =>
  error instanceof Error && (error as { code?: unknown }).code === "ERR_MODULE_NOT_FOUND" &&
  error.message.includes(`'${name}'`)

/**
 * Imports the optional package `name` for `feature`. Fails with a message saying what to install when it
 * is missing, or why it did not load. The specifier is not a literal, so that a bundler leaves the
 * package to be found at run time rather than failing the build when it is not installed (BullMQ reads
 * its scripts from its own files, so it could not be bundled anyway).
 */
export const importOptional = <M>(name: string, feature: string, install: string): Effect.Effect<M, string> =>
  Effect.tryPromise({
    try: () => import(name) as Promise<M>,
    catch: (error) =>
      isMissing(error, name)
        ? `${feature} needs the optional package ${name}, which is not installed: npm install ${install}`
        : `${feature} cannot load ${name}: ${error instanceof Error ? error.message : String(error)}`
  })
