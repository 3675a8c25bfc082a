/** Finding the module that called into this library, from the stack. */
import * as Url from "node:url"

const ownFile = Url.fileURLToPath(import.meta.url)

/** The URL of the first stack frame outside this file whose file is not one of `skip` (file paths). */
export const callerUrl = (skip: ReadonlyArray<string>): string | undefined => {
  const stack = new Error().stack ?? ""
  for (const line of stack.split("\n").slice(1)) {
    const match = /(?:\(|at )((?:file:\/\/)?\/[^\s()]+?):\d+:\d+\)?\s*$/.exec(line.trim())
    if (match === null) continue
    const location = match[1]!
    const path = location.startsWith("file://") ? Url.fileURLToPath(location) : location
    if (path !== ownFile && !skip.includes(path)) return Url.pathToFileURL(path).href
  }
  return undefined
}
