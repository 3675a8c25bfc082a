import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { importOptional } from "../src/internal/optional.ts"

describe("optional peer dependencies", () => {
  it.effect("a missing package fails with what to install", () =>
    Effect.gen(function*() {
      const message = yield* Effect.flip(
        importOptional(
          "effect-joblib-not-a-package",
          // @ts-expect-error: the package does not exist
          () => import("effect-joblib-not-a-package"),
          "Remote",
          "bullmq ioredis"
        )
      )
      assert.strictEqual(
        message,
        "Remote needs the optional package effect-joblib-not-a-package, which is not installed: npm install bullmq ioredis"
      )
    }))

  it.effect("a package that fails while loading says why, not that it is missing", () =>
    Effect.gen(function*() {
      const message = yield* Effect.flip(
        importOptional("ioredis", () => Promise.reject(new Error("boom")), "Store.layerRedis", "ioredis")
      )
      assert.strictEqual(message, "Store.layerRedis cannot load ioredis: boom")
    }))
})
