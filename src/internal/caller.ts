/** Finding the module that called into this library, from the stack. */
import * as Url from "node:url"

const FRAME = /(?:\(|at )((?:file:\/\/)?\/[^\s()]+?):(\d+):(\d+)\)?\s*$/

/** Where `fn` was called from: its module's URL, and the line and column of the call. */
export interface CallerFrame {
  readonly url: string
  readonly line: number
  readonly column: number
}

/**
 * The frame of the module that called `fn`: the first stack frame below `fn`'s own that names a file.
 * Frames are cut at the function rather than by file name, so that this also holds when `fn` and its
 * caller share one file, as in a single-file bundle.
 */
export const callerFrame = (fn: Function): CallerFrame | undefined => {
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
    return {
      url: location.startsWith("file://") ? location : Url.pathToFileURL(location).href,
      line: Number(match[2]),
      column: Number(match[3])
    }
  }
  return undefined
}

/** The URL of the module that called `fn` (see {@link callerFrame}). */
export const callerUrl = (fn: Function): string | undefined => callerFrame(fn)?.url
