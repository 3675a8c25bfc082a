/**
 * `npm run bench -- package`: what a user gets from `npm install`, measured on the packed tarball in a
 * fresh project: P4 (a cold pool's first result) against raw worker_threads, and the import time of
 * `effect-joblib` against `effect`, each in fresh processes, interleaved.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { consumerEnv, installProject, pack } from "../test/consumer/install.ts"
import { median, type Row, table } from "./harness.ts"

export const run = async () => {
  const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ejl-bench-package-"))
  const app = Path.join(root, "app")
  pack(root)
  installProject(root, app)
  Fs.cpSync(new URL("./installed/", import.meta.url), app, { recursive: true })
  const node = (args: ReadonlyArray<string>) =>
    execFileSync(process.execPath, args, { cwd: app, env: consumerEnv(), encoding: "utf8" })

  const p4 = JSON.parse(node(["p4.mjs", "15"])) as { ours: number; raw: number }

  const imports: Record<string, Array<number>> = { effect: [], "effect-joblib": [] }
  for (let round = 0; round < 15; round++) {
    for (const name of Object.keys(imports)) imports[name]!.push(Number(node(["import.mjs", name])))
  }
  const rows: Array<Row> = [
    { workload: "P4 cold pool, first result (installed package)", peer: "effect-joblib", ms: p4.ours },
    { workload: "P4 cold pool, first result (installed package)", peer: "raw worker_threads", ms: p4.raw },
    { workload: "import in a fresh process", peer: "effect-joblib", ms: median(imports["effect-joblib"]!) },
    { workload: "import in a fresh process", peer: "effect", ms: median(imports.effect!) }
  ]
  console.log(table(rows, "effect-joblib"))
  Fs.rmSync(root, { recursive: true, force: true })
}
