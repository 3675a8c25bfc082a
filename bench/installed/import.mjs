// The time of one `import` of a package in a fresh process. Usage: node import.mjs <specifier>
const start = performance.now()
await import(process.argv[2])
console.log(performance.now() - start)
