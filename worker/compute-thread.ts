// The compute thread of a worker (see compute.ts): initialises the backend,
// then answers open / prepare / node / evaluate requests one at a time, in order.
import { parentPort, workerData } from "node:worker_threads";
import { describeBackend, initBackend } from "../shared/backend.js";
import {
  type FromThread,
  type ThreadData,
  type ToThread,
  toThreadError,
  type VersionedWeights,
} from "./compute.js";
import { LocalCompute } from "./local-compute.js";

const port = parentPort;
if (!port) throw new Error("compute-thread.ts runs as a worker thread (see compute.ts)");
const post = (msg: FromThread, transfer: ArrayBuffer[] = []) => port.postMessage(msg, transfer);

/** The id of the node request being computed (cancel() stores it in workerData.cancelled). */
let running = 0;

/** The weights of each network the main thread last sent, by checksum. */
const held: Partial<Record<"G" | "D", VersionedWeights>> = {};

function weightsFor(net: "G" | "D", sent: { checksum: string; weights?: Float32Array }) {
  if (sent.weights) held[net] = { checksum: sent.checksum, weights: sent.weights };
  const w = held[net];
  if (w?.checksum !== sent.checksum) throw new Error(`compute thread: no ${net} ${sent.checksum}`);
  return w;
}

async function answer(compute: LocalCompute, msg: ToThread): Promise<void> {
  try {
    if (msg.op === "open")
      post({ id: msg.id, type: "ok", value: await compute.openDataset(msg.cfg) });
    else if (msg.op === "prepare") post({ id: msg.id, type: "ok", value: await compute.prepare() });
    else if (msg.op === "evaluate")
      post({
        id: msg.id,
        type: "ok",
        value: await compute.evaluate(msg.g, msg.node, msg.sources),
      });
    else {
      running = msg.id;
      const result = await compute.runNode(
        msg.node,
        weightsFor("G", msg.g),
        weightsFor("D", msg.d),
      );
      running = 0;
      if (result === null) {
        post({ id: msg.id, type: "ok", value: null });
        return;
      }
      // The gradient moves, not copied, when it owns its buffer (never a view of the wasm heap).
      const grad = result.grad;
      const own = grad.byteOffset === 0 && grad.byteLength === grad.buffer.byteLength;
      const value = own ? result : { ...result, grad: grad.slice() };
      post({ id: msg.id, type: "ok", value }, [value.grad.buffer as ArrayBuffer]);
    }
  } catch (err) {
    post({ id: msg.id, type: "error", error: toThreadError(err) });
  }
}

try {
  const backend = await initBackend(workerData.backend, (line) => post({ type: "log", line }));
  const { cancelled } = workerData as ThreadData;
  const compute = new LocalCompute(backend, () => Atomics.load(cancelled, 0) === running);
  // One request at a time, in arrival order.
  let queue = Promise.resolve();
  port.on("message", (msg: ToThread) => {
    queue = queue.then(() => answer(compute, msg));
  });
  post({ type: "ready", backend: describeBackend(backend) });
} catch (err) {
  post({ type: "failed", error: toThreadError(err) });
}
