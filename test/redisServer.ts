/** A real redis-server for tests, on a free loopback port, started and stopped by the test file. */
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import * as Path from "node:path"

export const hasRedis = ChildProcess.spawnSync("redis-server", ["--version"]).status === 0

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect(port, "127.0.0.1")
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.once("data", (data) => {
      socket.destroy()
      resolve(data.toString().startsWith("+PONG"))
    })
    socket.once("error", () => resolve(false))
  })

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** Freezes the server (SIGSTOP), as a server that pauses: it keeps its connections and answers nothing. */
  readonly pause: () => void
  /** Thaws a paused server (SIGCONT): it then runs what its clients sent meanwhile, in order. */
  readonly resume: () => void
  readonly stop: () => Promise<void>
}

/** A redis-server on a free loopback port (or `port`); `flags` are more of its command line. */
export const startRedis = async (port?: number, flags: ReadonlyArray<string> = []): Promise<RedisServer> => {
  const chosen = port ?? await freePort()
  const child = ChildProcess.spawn("redis-server", [
    "--port",
    String(chosen),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    ...flags
  ], { stdio: "ignore" })
  const deadline = Date.now() + 10_000
  while (!(await answers(chosen))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`redis-server did not start on ${chosen}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  return {
    url: `redis://127.0.0.1:${chosen}/0`,
    port: chosen,
    pause: () => void child.kill("SIGSTOP"),
    resume: () => void child.kill("SIGCONT"),
    stop: () => {
      if (child.exitCode === null) child.kill("SIGKILL")
      return exited
    }
  }
}

/**
 * Starts a Remote worker process through the command line (`effect-joblib worker`), one thread, running the
 * Tasks of test/fixtures/tasks.ts; stderr is kept for diagnostics.
 */
export const startWorkerProcess = (
  url: string,
  queue: string,
  options?: {
    readonly allowInline?: boolean
    readonly env?: Readonly<Record<string, string>>
    /** More command-line flags. */
    readonly flags?: ReadonlyArray<string>
    /** Threads. Default 1. */
    readonly concurrency?: number
    /** Pipe the worker's stdout and stderr, to read its lines; by default stdout is ignored. */
    readonly output?: "pipe" | undefined
  }
) =>
  ChildProcess.spawn(process.execPath, [
    Path.join(import.meta.dirname, "..", "src", "bin.ts"),
    "worker",
    "--redis",
    url,
    "--tasks",
    Path.join(import.meta.dirname, "fixtures", "tasks.ts"),
    "--concurrency",
    String(options?.concurrency ?? 1),
    "--queue",
    queue,
    ...(options?.allowInline === true ? ["--allow-inline"] : []),
    ...(options?.flags ?? [])
  ], {
    stdio: options?.output === "pipe" ? ["ignore", "pipe", "pipe"] : ["ignore", "ignore", "inherit"],
    env: { ...process.env, ...options?.env }
  })
