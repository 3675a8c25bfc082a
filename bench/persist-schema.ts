/**
 * `npm run bench -- schema` (and the end of `persist`): the Schema path of the codec against Effect's own
 * `SchemaBinary`, msgpackr with records, and this codec without a Schema, in memory, on two workloads:
 * 1M flat records and 100k nested ones (an optional key, a literal union, a nested struct, an array of
 * strings and a Date), and 200k with a UUID each. Encode and decode are timed interleaved, round by round; sizes are the bytes each
 * writes. Ratios are ours with a Schema ÷ each peer.
 */
import { Effect, Schema } from "effect"
import * as SchemaBinary from "effect/encoding/SchemaBinary"
import { Packr } from "msgpackr"
import { Codec } from "../src/index.ts"
import { interleaved } from "./harness.ts"

const Flat = Schema.Array(Schema.Struct({ id: Schema.Number, name: Schema.String, score: Schema.Number }))

const Nested = Schema.Array(Schema.Struct({
  id: Schema.Number,
  kind: Schema.Literals(["user", "admin", "guest"]),
  note: Schema.optionalKey(Schema.String),
  address: Schema.Struct({ city: Schema.String, zip: Schema.String }),
  tags: Schema.Array(Schema.String),
  created: Schema.Date
}))

const flatValues = () => {
  const names = Array.from({ length: 1000 }, (_, i) => `name-${i}`)
  return Array.from(
    { length: 1_000_000 },
    (_, i) => ({ id: i, name: names[i % 1000]!, score: (i * 7919 % 10007) / 10007 })
  )
}

const nestedValues = () =>
  Array.from({ length: 100_000 }, (_, i) => ({
    id: i,
    kind: (["user", "admin", "guest"] as const)[i % 3]!,
    ...(i % 4 === 0 ? { note: `note ${i}` } : {}),
    address: { city: `city-${i % 50}`, zip: String(10000 + (i % 900)) },
    tags: [`t${i % 7}`, `t${i % 11}`],
    created: new Date(1_700_000_000_000 + i * 1000)
  }))

const WithIds = Schema.Array(Schema.Struct({ id: Schema.String, n: Schema.Number, city: Schema.String }))

/** UUID-shaped ids, the same in every run (a linear congruential sequence), each one different. */
const idValues = () => {
  let state = 0x2545f491
  const hex = (digits: number) => {
    let out = ""
    for (let d = 0; d < digits; d++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0
      out += (state >>> 28).toString(16)
    }
    return out
  }
  return Array.from({ length: 200_000 }, (_, i) => ({
    id: `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`,
    n: i,
    city: `city-${i % 50}`
  }))
}

interface Peer {
  readonly name: string
  readonly encode: () => Uint8Array | Promise<Uint8Array>
  readonly decode: (bytes: Uint8Array) => unknown
}

const table = async (workload: string, peers: ReadonlyArray<Peer>, rounds: number) => {
  const bytes = await Promise.all(peers.map((peer) => peer.encode()))
  // Each run starts from a collected heap: these build a million objects, whose garbage would bill the next.
  const encodes = await interleaved(rounds, peers.map((peer) => () => peer.encode()), { collect: true })
  const decodes = await interleaved(rounds, peers.map((peer, i) => () => peer.decode(bytes[i]!)), { collect: true })
  console.log(`\n${workload}\n`)
  console.log("| implementation | encode ms | decode ms | size MB | ours ÷ this: encode | decode | size |")
  console.log("|---|---:|---:|---:|---:|---:|---:|")
  peers.forEach((peer, i) => {
    const ratio = (ours: number, theirs: number) => (i === 0 ? "" : (ours / theirs).toFixed(2))
    console.log(
      `| ${peer.name} | ${encodes[i]!.toFixed(0)} | ${decodes[i]!.toFixed(0)} | ${
        (bytes[i]!.length / 1e6).toFixed(1)
      } | ${ratio(encodes[0]!, encodes[i]!)} | ${ratio(decodes[0]!, decodes[i]!)} | ${
        ratio(bytes[0]!.length, bytes[i]!.length)
      } |`
    )
  })
}

const peersOf = <S extends Schema.Codec<any, any, never, never>>(schema: S, value: S["Type"]): Array<Peer> => {
  const typed = Codec.make(schema)
  const plain = Codec.make()
  const binary = SchemaBinary.toCodec(schema as never) as unknown as Schema.Codec<unknown, Uint8Array, never, never>
  const toBinary = Schema.encodeSync(binary)
  const fromBinary = Schema.decodeSync(binary)
  const packr = new Packr({ useRecords: true })
  return [
    {
      name: "effect-joblib, with the Schema",
      encode: () => Effect.runPromise(typed.encode(value)),
      decode: (bytes) => Effect.runPromise(typed.decode(bytes))
    },
    {
      name: "Effect SchemaBinary",
      // Its results are views of an arena: copied, as a caller keeping them would.
      encode: () => toBinary(value).slice(),
      decode: (bytes) => fromBinary(bytes)
    },
    {
      name: "msgpackr, records (no validation)",
      encode: () => packr.pack(value),
      decode: (bytes) => packr.unpack(bytes)
    },
    {
      name: "effect-joblib, no Schema",
      encode: () => Effect.runPromise(plain.encode(value)),
      decode: (bytes) => Effect.runPromise(plain.decode(bytes))
    }
  ]
}

export const run = async () => {
  console.log("### The Schema path, in memory")
  await table("S1 1M {id, name, score}, Schema.Array(Schema.Struct)", peersOf(Flat, flatValues()), 9)
  await table(
    "S2 100k nested records (optional key, literal union, struct, string array, Date)",
    peersOf(Nested, nestedValues()),
    15
  )
  await table(
    "S3 200k records with a UUID string (each one new), a number and a repeated string",
    peersOf(WithIds, idValues()),
    15
  )
}
