// Remote and the Redis store without their optional packages installed: typed errors saying what to install.
import { Effect, Layer } from "effect"
import { Parallel, Remote, Store } from "effect-joblib"

const remote = await Effect.runPromise(
  Effect.flip(Parallel.map([1], (x) => x).pipe(Effect.provide(Remote.layer({ redis: "redis://127.0.0.1:1" }))))
)
const redis = await Effect.runPromise(Effect.flip(Effect.scoped(Layer.build(Store.layerRedis("redis://127.0.0.1:1")))))
console.log(JSON.stringify({ remote: [remote._tag, remote.reason, remote.message], redis: [redis._tag, redis.message] }))
