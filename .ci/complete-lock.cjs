#!/usr/bin/env node
// Run after `npm install` changes the lock: `node .ci/complete-lock.cjs`.
// Adds lock entries for optional platform packages that this registry does not serve, with their os/cpu/libc,
// so that `npm ci` sees a complete lock and skips them as foreign platforms (as it would with a full registry).
const fs = require("fs")
const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"))
const OSES = ["android", "darwin", "freebsd", "linux", "openbsd", "openharmony", "sunos", "win32", "aix", "netbsd"]
const CPUS = ["arm64", "arm", "x64", "ia32", "loong64", "ppc64", "riscv64", "s390x", "mips64el", "wasm32"]
/** Reads os, cpu and libc from a platform package's name, e.g. `@scope/tool-linux-arm64-gnu`. */
const parse = (name) => {
  const parts = name.split("/").pop().split("-")
  const at = parts.findIndex((part) => OSES.includes(part))
  if (at < 0 || !CPUS.includes(parts[at + 1])) return undefined
  const entry = { os: [parts[at]], cpu: [parts[at + 1]] }
  const extra = parts[at + 2]
  if (extra === "glibc" || extra === "gnu" || extra === "gnueabihf") entry.libc = ["glibc"]
  if (extra === "musl" || extra === "musleabihf") entry.libc = ["musl"]
  return entry
}
let added = 0
for (const [path, pkg] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const key = `node_modules/${dep}`
    if (lock.packages[key]) continue
    const platform = parse(dep)
    if (!platform) { console.error("cannot place", dep); continue }
    lock.packages[key] = { version, dev: pkg.dev, optional: true, ...platform }
    added++
  }
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))))
fs.writeFileSync("package-lock.json", JSON.stringify(lock, null, 2) + "\n")
console.log("added", added)
