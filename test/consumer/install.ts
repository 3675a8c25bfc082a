/** Packing this library and installing the tarball into a fresh project, as a user would. */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

export const repo = Path.resolve(import.meta.dirname, "../..")

/** This repository's installed version of a package, so that a fresh project installs from the npm cache. */
export const versionOf = (name: string) =>
  JSON.parse(Fs.readFileSync(Path.join(repo, "node_modules", name, "package.json"), "utf8")).version as string

/** The environment a user's project runs in: none of this repository's settings (its source condition). */
export const consumerEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, CI: "true", NO_COLOR: "1" }
  delete env.NODE_OPTIONS
  delete env.npm_config_prefix
  return env
}

export const run = (command: string, args: ReadonlyArray<string>, cwd: string, timeout = 300_000) =>
  execFileSync(command, args, { cwd, env: consumerEnv(), encoding: "utf8", timeout, stdio: ["ignore", "pipe", "pipe"] })

export const npm = (args: ReadonlyArray<string>, cwd: string) =>
  run("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], cwd)

/** Packs the library into `dir` as `effect-joblib.tgz` (prepack builds dist/); returns the packed file list. */
export const pack = (dir: string): ReadonlyArray<string> => {
  const out = npm(["pack", "--json", "--pack-destination", dir], repo)
  const [packed] = JSON.parse(out.slice(out.indexOf("["))) as Array<
    { filename: string; files: Array<{ path: string }> }
  >
  Fs.renameSync(Path.join(dir, packed!.filename), Path.join(dir, "effect-joblib.tgz"))
  return packed!.files.map((file) => file.path)
}

/**
 * Writes a project into `dir` that depends on the tarball packed into `root` beside `effect` and
 * `@effect/platform-node` (plus `devDependencies`, at this repository's versions), and installs it.
 */
export const installProject = (root: string, dir: string, devDependencies: ReadonlyArray<string> = []) => {
  Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(
    Path.join(dir, "package.json"),
    JSON.stringify(
      {
        name: "consumer",
        private: true,
        type: "module",
        dependencies: {
          "effect-joblib": `file:${Path.join(root, "effect-joblib.tgz")}`,
          effect: versionOf("effect"),
          "@effect/platform-node": versionOf("@effect/platform-node")
        },
        devDependencies: Object.fromEntries(devDependencies.map((name) => [name, versionOf(name)]))
      },
      null,
      2
    )
  )
  npm(["install", "--prefer-offline"], dir)
}
