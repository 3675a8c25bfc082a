/**
 * Tasks for the demo: a module with no top-level side effects, so that
 * workers can import it.
 */
import { Schema } from "effect"
import { Task } from "effect-joblib"

export const Customer = Schema.Struct({
  id: Schema.Int,
  region: Schema.String,
  spend: Schema.Array(Schema.Number)
})
export type Customer = typeof Customer.Type

export const Scored = Schema.Struct({ id: Schema.Int, region: Schema.String, score: Schema.Number })

/** A deliberately CPU-heavy risk score: a small simulation per customer. */
export const score = (customer: Customer): number => {
  const spend = Float64Array.from(customer.spend)
  let risk = 0.5
  for (let round = 0; round < 250; round++) {
    for (let i = 0; i < spend.length; i++) {
      risk = 3.7 * risk * (1 - risk) * 0.5 + 0.25 * Math.tanh(spend[i]! / 500)
    }
  }
  return Math.round(risk * 1e6) / 1e6
}

export const Score = Task.make("Score", {
  payload: Customer,
  success: Scored,
  run: (customer) => ({ id: customer.id, region: customer.region, score: score(customer) })
})
