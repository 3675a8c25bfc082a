// The raw peer of P4t: a worker_threads Worker that imports the task module (when given one), then answers with
// its result.
import { parentPort, workerData } from "node:worker_threads"

const Root = workerData?.module === undefined ? undefined : (await import(workerData.module)).Root
parentPort.on("message", (x) => parentPort.postMessage(Root.run(x)))
parentPort.postMessage("ready")
