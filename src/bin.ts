#!/usr/bin/env node
/**
 * The `effect-joblib` command line:
 *
 *   effect-joblib cache <dir|file.sqlite> ls|stats|prune|clear [--max-size 1GB] [--max-items N] [--max-age 30d]
 *   effect-joblib worker [--redis redis://host:port] --tasks ./tasks.ts [--concurrency 4] [--queue name]
 *                        [--allow-inline] [--lock-duration 3000] [--stalled-interval 1500] [--max-stalled-count 2]
 *   effect-joblib status [--redis redis://host:port] [--queue name] [--json]
 *
 * `cache` works on filesystem caches (a directory) and SQLite caches (a `.sqlite` or `.db` file); `worker`
 * runs a Remote worker until interrupted, with glibc's huge pages on (`GLIBC_TUNABLES`) unless the
 * environment already sets glibc's tunables; `status` shows a queue's workers, batches and throughput, redrawn
 * every second on a terminal (once, as JSON, with `--json`). Without `--redis`, `worker` and `status` read the
 * server's URL from `REDIS_URL`, which `ps` does not show to others on the machine.
 *
 * This file only checks the Node version, in syntax every Node reads, before it loads the commands: on an
 * older Node they would fail to load, or do nothing.
 *
 * @since 0.3.0
 */
const [major = 0, minor = 0] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`effect-joblib needs Node 22.19 or later (or Node 24); this is Node ${process.version}\n`)
  process.exitCode = 1
} else if (import.meta.main) {
  const { main } = await import("./internal/cli/main.ts")
  main()
}
