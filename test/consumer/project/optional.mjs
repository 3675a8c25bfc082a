// Remote and the Redis store without their optional packages installed: typed errors saying what to install.
import { Config, ConfigProvider, Effect, Layer } from "effect"
import { Parallel, Persist, Remote, Store } from "effect-joblib"
import * as Os from "node:os"
import * as Path from "node:path"

const remote = await Effect.runPromise(
  Effect.flip(Parallel.map([1], (x) => x).pipe(Effect.provide(Remote.layer({ redis: "redis://127.0.0.1:1" }))))
)
const redis = await Effect.runPromise(Effect.flip(Effect.scoped(Layer.build(Store.layerRedis("redis://127.0.0.1:1")))))
// The Redis store's URL from Config, as Effect's own layers take secrets: read first, then the missing package.
const fromConfig = (env) =>
  Effect.runPromise(Effect.flip(Effect.scoped(Layer.build(
    Store.layerRedisConfig({ url: Config.Redacted("REDIS_URL") }).pipe(
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
    )
  ))))
const redisConfig = await fromConfig({ REDIS_URL: "redis://user:s3cret@127.0.0.1:1" })
const redisNoConfig = await fromConfig({})
const dir = Os.tmpdir()
const lz4 = await Effect.runPromise(Effect.flip(Persist.dump([1, 2, 3], Path.join(dir, `effect-joblib-${process.pid}.lz4`))))
const xz = await Effect.runPromise(Effect.flip(Persist.dump([1, 2, 3], Path.join(dir, "x"), { compress: "xz" })))
console.log(JSON.stringify({
  remote: [remote._tag, remote.reason, remote.message],
  redis: [redis._tag, redis.message],
  redisConfig: [redisConfig._tag, redisConfig.message],
  redisNoConfig: [redisNoConfig._tag, String(redisNoConfig)],
  lz4: [lz4._tag, lz4.message],
  xz: [xz._tag, xz.message]
}))
