import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type * as IORedis from "ioredis"
import { importOptional } from "../src/internal/optional.ts"

describe("optional peer dependencies", () => {
  it.effect("a missing package fails with what to install", () =>
    Effect.gen(function*() {
      const message = yield* Effect.flip(
        importOptional("effect-joblib-not-a-package", "Remote", "bullmq ioredis")
      )
      assert.strictEqual(
        message,
        "Remote needs the optional package effect-joblib-not-a-package, which is not installed: npm install bullmq ioredis"
      )
    }))

  it.effect("an installed package loads", () =>
    Effect.gen(function*() {
      const module = yield* importOptional<typeof IORedis>("ioredis", "Store.layerRedis", "ioredis")
      assert.isFunction(module.Redis)
    }))
})
