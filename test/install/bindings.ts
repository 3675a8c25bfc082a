/**
 * Run by `npm ci` (the `prepare` script) under the pinned Node that npm scripts put first on the PATH.
 *
 * npm judges an optional package's `engines` by the Node that runs npm, the system one. A prebuilt binding whose
 * engines exclude that Node (`@napi-rs/lzma-linux-x64-gnu` 1.5 asks for Node 22.20+) is then left out, although
 * every script of this repository runs on the pinned Node 24. This fetches each native binding the lockfile
 * names for this machine that npm left out, checks it against the lockfile's integrity, and unpacks it in place.
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

interface Locked {
  readonly version?: string
  readonly optional?: boolean
  readonly integrity?: string
  readonly os?: ReadonlyArray<string>
  readonly cpu?: ReadonlyArray<string>
  readonly libc?: ReadonlyArray<string>
  readonly optionalDependencies?: Record<string, string>
}

const repo = Path.resolve(import.meta.dirname, "../..")

const libc = (): string | undefined => {
  if (process.platform !== "linux") return undefined
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header
  return header?.glibcVersionRuntime === undefined ? "musl" : "glibc"
}

/** npm's reading of `os`/`cpu`/`libc`: a list of allowed values, or of `!excluded` ones. */
const allows = (list: ReadonlyArray<string> | undefined, value: string | undefined) =>
  list === undefined || value === undefined ||
  (list.some((entry) => !entry.startsWith("!")) ? list.includes(value) : !list.includes(`!${value}`))

/** A native binding (the lockfile names the platforms it is for) built for this machine. */
const forThisMachine = (entry: Locked) =>
  (entry.os !== undefined || entry.cpu !== undefined) &&
  allows(entry.os, process.platform) && allows(entry.cpu, process.arch) && allows(entry.libc, libc())

const fetchInto = (where: string, entry: Locked) => {
  const name = where.slice(where.lastIndexOf("node_modules/") + "node_modules/".length)
  const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-joblib-binding-"))
  try {
    const out = execFileSync("npm", ["pack", `${name}@${entry.version}`, "--json", "--pack-destination", tmp], {
      cwd: tmp,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"]
    })
    const [packed] = JSON.parse(out.slice(out.indexOf("["))) as Array<{ filename: string }>
    const tarball = Path.join(tmp, packed!.filename)
    const [algorithm, expected] = (entry.integrity ?? "").split("-", 2)
    const actual = createHash(algorithm ?? "sha512").update(Fs.readFileSync(tarball)).digest("base64")
    if (actual !== expected) throw new Error(`${name}@${entry.version}: integrity ${actual} is not the lockfile's`)
    const target = Path.join(repo, where)
    Fs.mkdirSync(target, { recursive: true })
    execFileSync("tar", ["-xzf", tarball, "-C", target, "--strip-components=1"])
    console.log(`bindings: ${name}@${entry.version} installed for Node ${process.version}`)
  } finally {
    Fs.rmSync(tmp, { recursive: true, force: true })
  }
}

const lock = JSON.parse(Fs.readFileSync(Path.join(repo, "package-lock.json"), "utf8")) as {
  packages: Record<string, Locked>
}
const installed = (where: string) => where !== "" && Fs.existsSync(Path.join(repo, where))
// Only the bindings that an installed package asks for: a binding of a left-out package is not wanted.
const wanted = new Set(
  Object.entries(lock.packages).flatMap(([where, entry]) =>
    installed(where) ? Object.keys(entry.optionalDependencies ?? {}) : []
  )
)
for (const [where, entry] of Object.entries(lock.packages)) {
  const name = where.slice(where.lastIndexOf("node_modules/") + "node_modules/".length)
  if (entry.optional !== true || !wanted.has(name) || !forThisMachine(entry) || installed(where)) continue
  fetchInto(where, entry)
}
