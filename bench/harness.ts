/** Small helpers shared by the benchmarks: timing, medians and ratio tables. */

export const now = () => performance.now()

export const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * Runs `f` `runs` times after `warmup` untimed runs; returns the median in ms. With `collect`, the heap is
 * collected before each timed run (see {@link interleaved}).
 */
export const measure = async (
  runs: number,
  f: () => Promise<unknown> | unknown,
  warmup = 1,
  options?: { readonly collect?: boolean }
): Promise<number> => {
  for (let i = 0; i < warmup; i++) await f()
  const times: Array<number> = []
  const collect = options?.collect === true ? (globalThis as { gc?: () => void }).gc : undefined
  for (let i = 0; i < runs; i++) {
    collect?.()
    const start = now()
    await f()
    times.push(now() - start)
  }
  return median(times)
}

/**
 * Runs each of `fs` once per round, in turn, after one untimed round; returns each one's median in ms.
 * With `collect` (and node's `--expose-gc`, which `npm run bench` passes), the heap is collected before
 * each run, so that a run building many objects does not leave its garbage to the next one's clock.
 */
export const interleaved = async (
  rounds: number,
  fs: ReadonlyArray<() => Promise<unknown> | unknown>,
  options?: { readonly collect?: boolean }
): Promise<Array<number>> => {
  for (const f of fs) await f()
  const times = fs.map((): Array<number> => [])
  const collect = options?.collect === true ? (globalThis as { gc?: () => void }).gc : undefined
  for (let round = 0; round < rounds; round++) {
    for (const [i, f] of fs.entries()) {
      collect?.()
      const start = now()
      await f()
      times[i]!.push(now() - start)
    }
  }
  return times.map(median)
}

/** What a raw pool talks to: a worker thread or a child process, replying `{ id, out }` to each batch. */
interface Endpoint {
  on(event: "message", listener: (message: any) => void): unknown
  off(event: "message", listener: (message: any) => void): unknown
}

/**
 * The dispatch of a raw pool with hand-made batches: splits `items` into batches of `batch`, sends them round
 * robin with `send`, and resolves with every batch's `out`, in input order. The floor a pool library pays.
 */
export const roundRobin = <E extends Endpoint>(endpoints: ReadonlyArray<E>) => {
  let nextId = 0
  return <A>(
    items: ReadonlyArray<unknown>,
    batch: number,
    send: (endpoint: E, id: number, items: Array<unknown>) => void
  ) =>
    new Promise<Array<A>>((resolve) => {
      const parts: Array<Array<A>> = []
      let pending = 0
      for (let start = 0, k = 0; start < items.length; start += batch, k++) {
        const endpoint = endpoints[k % endpoints.length]!
        const id = nextId++
        const index = k
        pending++
        const onMessage = (message: { id: number; out: Array<A> }) => {
          if (message.id !== id) return
          endpoint.off("message", onMessage)
          parts[index] = message.out
          if (--pending === 0) resolve(parts.flat())
        }
        endpoint.on("message", onMessage)
        send(endpoint, id, items.slice(start, start + batch))
      }
    })
}

export interface Row {
  readonly workload: string
  readonly peer: string
  readonly ms: number | undefined
  readonly note?: string
}

export const ms = (x: number | undefined) => (x === undefined ? "n/a" : x < 10 ? x.toFixed(2) : x.toFixed(0))

/** Prints a markdown table where each row's ratio is against the row named `ours` of its workload. */
export const table = (rows: ReadonlyArray<Row>, ours: string) => {
  const lines = ["| workload | implementation | median ms | ours ÷ this |", "|---|---|---:|---:|"]
  for (const row of rows) {
    const mine = rows.find((r) => r.workload === row.workload && r.peer === ours)?.ms
    const ratio = mine !== undefined && row.ms !== undefined && row.peer !== ours ? (mine / row.ms).toFixed(2) : ""
    lines.push(`| ${row.workload} | ${row.peer}${row.note ? ` (${row.note})` : ""} | ${ms(row.ms)} | ${ratio} |`)
  }
  return lines.join("\n")
}
