// Raw child_process ("advanced" serialization), hand-batched: one message per batch of items.
const ops = {
  sqrt: (x) => Math.sqrt(x * x),
  spin: (n) => {
    let x = 0
    for (let i = 0; i < n; i++) x = (x + Math.sqrt(i)) % 1000
    return x
  },
  sum: (array) => {
    let total = 0
    for (let i = 0; i < array.length; i++) total += array[i]
    return total
  }
}

process.on("message", ({ id, op, items }) => {
  const f = ops[op]
  const out = []
  for (let i = 0; i < items.length; i++) out.push(f(items[i]))
  process.send({ id, out })
})
process.on("disconnect", () => process.exit(0))
process.send("ready")
