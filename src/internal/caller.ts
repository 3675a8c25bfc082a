/** Finding the module that called into this library, from the stack. */
import * as Url from "node:url"

const FRAME = /(?:\(|at )((?:file:\/\/)?\/[^\s()]+?):\d+:\d+\)?\s*$/

/**
 * The URL of the module that called `fn`: the first stack frame below `fn`'s own that names a file.
 * Frames are cut at the function rather than by file name, so that this also holds when `fn` and its
 * caller share one file, as in a single-file bundle.
 */
export const callerUrl = (fn: Function): string | undefined => {
  const holder: { stack?: string } = {}
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = Math.max(limit, 10)
  try {
    Error.captureStackTrace(holder, fn)
  } finally {
    Error.stackTraceLimit = limit
  }
  for (const line of (holder.stack ?? "").split("\n").slice(1)) {
    const match = FRAME.exec(line.trim())
    if (match === null) continue
    const location = match[1]!
    return location.startsWith("file://") ? location : Url.pathToFileURL(location).href
  }
  return undefined
}
