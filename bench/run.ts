/**
 * `npm run bench -- <suite...>`: runs the named benchmark suites (all when none
 * is named). Not part of CI: timings belong here, not in tests.
 */
const suites: Record<string, () => Promise<{ run: () => Promise<void> }>> = {
  parallel: () => import("./parallel.ts"),
  // P5 alone (parallel runs it too).
  huge: () => import("./parallel.ts").then((module) => ({ run: module.huge })),
  // P4 and P4t alone: cold pools against raw worker_threads.
  cold: () => import("./cold.ts"),
  // Maps interrupted in quick succession, against piscina's aborted tasks.
  interrupt: () => import("./interrupt.ts"),
  processes: () => import("./processes.ts"),
  persist: () =>
    Promise.all([import("./persist.ts"), import("./persist-schema.ts")]).then(([persist, schema]) => ({
      run: async () => {
        await persist.run()
        await schema.run()
      }
    })),
  // D1's load levers, each against the load as it is.
  d1: () => import("./d1-levers.ts"),
  // The Schema table alone (persist runs it too).
  schema: () => import("./persist-schema.ts"),
  hash: () => import("./hash.ts"),
  cache: () => import("./cache.ts"),
  remote: () =>
    Promise.all([import("./remote.ts"), import("./remote-scale.ts")]).then(([remote, scale]) => ({
      run: async () => {
        await remote.run()
        console.log("\n### R4: scale\n")
        await scale.run()
      }
    })),
  // R4 alone (remote runs it too).
  scale: () => import("./remote-scale.ts"),
  package: () => import("./package.ts"),
  // P1 and P2 with Progress.layerReport on and off, and a 100k-item map's report size.
  report: () => import("./report.ts"),
  // This tree against another checkout (AB_BASE), on P1–P4, R1 and C1.
  ab: () => import("./ab.ts")
}

const names = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(suites)
for (const name of names) {
  const load = suites[name]
  if (load === undefined) {
    console.error(`unknown suite "${name}"; known: ${Object.keys(suites).join(", ")}`)
    process.exit(2)
  }
  console.log(`\n## ${name}\n`)
  await (await load()).run()
}
