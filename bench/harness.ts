/** Small helpers shared by the benchmarks: timing, medians and ratio tables. */

export const now = () => performance.now()

export const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Runs `f` `runs` times after `warmup` untimed runs; returns the median in ms. */
export const measure = async (runs: number, f: () => Promise<unknown> | unknown, warmup = 1): Promise<number> => {
  for (let i = 0; i < warmup; i++) await f()
  const times: Array<number> = []
  for (let i = 0; i < runs; i++) {
    const start = now()
    await f()
    times.push(now() - start)
  }
  return median(times)
}

/** Runs each of `fs` once per round, in turn, after one untimed round; returns each one's median in ms. */
export const interleaved = async (
  rounds: number,
  fs: ReadonlyArray<() => Promise<unknown> | unknown>
): Promise<Array<number>> => {
  for (const f of fs) await f()
  const times = fs.map((): Array<number> => [])
  for (let round = 0; round < rounds; round++) {
    for (const [i, f] of fs.entries()) {
      const start = now()
      await f()
      times[i]!.push(now() - start)
    }
  }
  return times.map(median)
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
