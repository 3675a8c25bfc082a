// About 10 ms of CPU on this machine; the same loop as bench/parallel.ts's `spin`.
export default (n) => {
  let x = 0
  for (let i = 0; i < n; i++) x = (x + Math.sqrt(i)) % 1000
  return x
}
