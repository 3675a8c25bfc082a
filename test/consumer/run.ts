/**
 * The consumer check: packs this library, installs the tarball into a fresh project beside `effect` and
 * `@effect/platform-node` (without the optional `bullmq` and `ioredis`), and asserts what a user sees:
 * plain JS on threads (Node 24 and Node 22), TypeScript run by Node, the same app compiled by tsc and
 * bundled into one file by esbuild, the consumer's vitest swapping backends, the optional packages'
 * typed errors, and `npx effect-joblib`. Usage: `npm run test:consumer`. Ends with "N passed, N failed".
 */
import * as assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { startRedis } from "../redisServer.ts"
import { consumerEnv, installProject, npm, pack, repo, run as runIn } from "./install.ts"

const project = Path.join(import.meta.dirname, "project")
const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-consumer-"))
const app = Path.join(root, "app")
const run = (command: string, args: ReadonlyArray<string>, cwd = app) => runIn(command, args, cwd)
const node = process.execPath

let passed = 0
let failed = 0
const check = async (name: string, body: () => void | Promise<void>) => {
  const started = performance.now()
  try {
    await body()
    passed++
    console.log(`ok   ${name} (${Math.round(performance.now() - started)} ms)`)
  } catch (error) {
    failed++
    const output = error as { stdout?: string; stderr?: string; message?: string }
    console.log(`FAIL ${name}\n${output.message}\n${output.stdout ?? ""}${output.stderr ?? ""}`)
  }
}

/** Installs Node `major` from the npm registry into a folder of its own; returns its `node`. */
const installNode = (major: number) => {
  const prefix = Path.join(root, `node${major}`)
  Fs.mkdirSync(prefix)
  Fs.writeFileSync(
    Path.join(prefix, "package.json"),
    JSON.stringify({ name: `node${major}`, private: true, allowScripts: { node: true } })
  )
  npm(["install", "--prefer-offline", `node@${major}`], prefix)
  return Path.join(prefix, "node_modules/.bin/node")
}

console.log(`consumer project: ${app}`)
await check("npm pack builds and packs dist/, README, LICENSE and CHANGELOG", () => {
  const files = new Set(pack(root))
  for (const file of ["dist/index.js", "dist/index.d.ts", "dist/index.d.ts.map", "dist/index.js.map", "dist/bin.js"]) {
    assert.ok(files.has(file), `the tarball lacks ${file}`)
  }
  for (const file of ["README.md", "LICENSE", "CHANGELOG.md", "package.json"]) assert.ok(files.has(file), file)
  // Every file the README links to is in the tarball, so that its links resolve where a user reads it.
  const readme = Fs.readFileSync(Path.join(repo, "README.md"), "utf8")
  for (const [, target] of readme.matchAll(/\]\(((?!https?:|#)[^)#]+)(?:#[^)]*)?\)/g)) {
    const file = target!.replace(/^\.\//, "")
    assert.ok(files.has(file) || [...files].some((packed) => packed.startsWith(`${file}/`)), `README links ${file}`)
  }
  assert.ok(Fs.readFileSync(Path.join(repo, "dist/bin.js"), "utf8").startsWith("#!/usr/bin/env node"))
})

await check("the tarball installs into a fresh project without bullmq or ioredis", () => {
  Fs.cpSync(project, app, { recursive: true })
  installProject(root, app, ["typescript", "esbuild", "vitest", "@types/node", "tstyche"])
  // (`redis` may be there: it is a peer of @effect/platform-node's, not of this package's.)
  for (const absent of ["bullmq", "ioredis"]) {
    assert.ok(!Fs.existsSync(Path.join(app, "node_modules", absent)), `${absent} was installed`)
  }
})

const expected = { threads: [1, 4, 9, 16], processes: [1, 8, 27], inline: [1, 2, 3] }

await check("plain JavaScript (ESM) on threads, Node 24", () => {
  const out = JSON.parse(run(node, ["plain.mjs"]))
  assert.deepStrictEqual(out.task, [1, 2, 3])
  assert.deepStrictEqual(out.inline, [2, 3, 4])
  assert.match(out.node, /^24\./)
})

await check("TypeScript run by Node 24, with Tasks on threads and processes", () => {
  assert.deepStrictEqual(JSON.parse(run(node, ["app.ts"])), expected)
})

await check("the app compiled by tsc (strict, skipLibCheck false) with no error from the package", () => {
  run(node, [Path.join(app, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"])
  assert.deepStrictEqual(JSON.parse(run(node, ["out/app.js"])), expected)
})

await check("an esbuild single-file bundle, run where no node_modules can be found", () => {
  const bundleDir = Path.join(root, "bundle-only")
  Fs.mkdirSync(bundleDir)
  const outfile = Path.join(bundleDir, "app.mjs")
  run(Path.join(app, "node_modules/.bin/esbuild"), [
    "app.ts",
    "--bundle",
    "--platform=node",
    "--format=esm",
    `--outfile=${outfile}`,
    "--log-level=warning"
  ])
  assert.deepStrictEqual(Fs.readdirSync(bundleDir), ["app.mjs"])
  assert.deepStrictEqual(JSON.parse(run(node, [outfile], bundleDir)), expected)
})

await check("the consumer's vitest swaps sequential, threads and processes with the consumer's Task", () => {
  const out = run(node, [Path.join(app, "node_modules/vitest/vitest.mjs"), "run"])
  assert.match(out, /Tests\s+(?:\S+\s+)?4 passed/)
})

await check("the consumer's tstyche: Cache.memoize's Schemas are typed against the function's result", () => {
  const out = run(node, [Path.join(app, "node_modules/tstyche/dist/bin.js")])
  assert.match(out, /Tests:\s+2 passed/)
})

await check(
  "Remote, Store.layerRedis (also from Config), lz4 and xz without their packages: typed errors naming what to install",
  () => {
    const out = JSON.parse(run(node, ["optional.mjs"]))
    assert.deepStrictEqual(out.remote.slice(0, 2), ["RemoteFailure", "MissingDependency"])
    assert.match(out.remote[2], /npm install bullmq ioredis/)
    assert.equal(out.redis[0], "StoreError")
    assert.match(out.redis[1], /npm install ioredis/)
    assert.equal(out.redisConfig[0], "StoreError", "Store.layerRedisConfig read REDIS_URL from Config")
    assert.match(out.redisConfig[1], /npm install ioredis/)
    assert.doesNotMatch(out.redisConfig[1], /s3cret/)
    assert.equal(out.redisNoConfig[0], "ConfigError")
    assert.match(out.redisNoConfig[1], /REDIS_URL/)
    assert.equal(out.lz4[0], "CompressionError")
    assert.match(out.lz4[1], /npm install lz4-napi/)
    assert.equal(out.xz[0], "CompressionError")
    assert.match(out.xz[1], /npm install @napi-rs\/lzma/)
  }
)

await check("npx effect-joblib --help, and cache <dir> stats", () => {
  assert.match(run("npx", ["--no-install", "effect-joblib", "--help"]), /cache/)
  const dir = Path.join(app, "cache-dir")
  assert.deepStrictEqual(JSON.parse(run(node, ["cache.mjs", dir])), { value: 42 })
  assert.match(run("npx", ["--no-install", "effect-joblib", "cache", dir, "stats"]), /\b1 entr/)
})

await check("npx effect-joblib --version is package.json's; status reads REDIS_URL when --redis is absent", () => {
  const { version } = JSON.parse(Fs.readFileSync(Path.join(repo, "package.json"), "utf8"))
  assert.equal(run("npx", ["--no-install", "effect-joblib", "--version"]).trim(), `effect-joblib v${version}`)
  // Past the flags (REDIS_URL stands for --redis), it stops at the missing optional package, with one line.
  const status = spawnSync("npx", ["--no-install", "effect-joblib", "status", "--json"], {
    cwd: app,
    env: { ...consumerEnv(), REDIS_URL: "redis://user:s3cret@127.0.0.1:1/0" },
    encoding: "utf8"
  })
  assert.equal(status.status, 1)
  assert.match(status.stderr, /^effect-joblib: .*npm install bullmq ioredis/m)
  assert.doesNotMatch(status.stderr, /s3cret|Missing required flag/)
})

await check("the CLI on Node 20 says which Node it needs, and exits 1", () => {
  const node20 = installNode(20)
  const out = spawnSync(node20, [Path.join(app, "node_modules/effect-joblib/dist/bin.js"), "--help"], {
    cwd: app,
    env: consumerEnv(),
    encoding: "utf8"
  })
  assert.equal(out.status, 1)
  assert.equal(out.stdout, "")
  assert.match(out.stderr.trim(), /^effect-joblib needs Node 22\.19 or later \(or Node 24\); this is Node v20\./)
})

await check(
  "the consumer's @effect/vitest: the same bodies under TestClock on sequential, threads, processes and Remote; two reporters joined with Layer.mergeAll",
  async () => {
    const clockApp = Path.join(root, "clock")
    Fs.cpSync(Path.join(import.meta.dirname, "clock-project"), clockApp, { recursive: true })
    installProject(root, clockApp, ["vitest", "@effect/vitest", "bullmq", "ioredis"])
    const server = await startRedis()
    try {
      const out = spawnSync(node, [Path.join(clockApp, "node_modules/vitest/vitest.mjs"), "run"], {
        cwd: clockApp,
        env: { ...consumerEnv(), REDIS_URL: server.url },
        encoding: "utf8",
        timeout: 300_000
      })
      assert.equal(out.status, 0, `${out.stdout}${out.stderr}`)
      assert.match(out.stdout, /Tests\s+(?:\S+\s+)?13 passed/)
    } finally {
      await server.stop()
    }
  }
)

await check("plain JavaScript on Node 22, installed into the project", () => {
  const node22 = installNode(22)
  const version = run(node22, ["--version"]).trim()
  assert.match(version, /^v22\./)
  const out = JSON.parse(run(node22, ["plain.mjs"]))
  assert.deepStrictEqual(out.task, [1, 2, 3])
  assert.deepStrictEqual(out.inline, [2, 3, 4])
  assert.equal(`v${out.node}`, version)
})

if (failed === 0) Fs.rmSync(root, { recursive: true, force: true })
console.log(`consumer: ${passed} passed, ${failed} failed`)
process.exitCode = failed === 0 ? 0 : 1
