// `npx tsx bench/fd-file.ts FILE...`: `agon eval`'s Fréchet distance (our MNIST
// classifier's features against the test split) of samples in raw float32 files
// (little-endian, n × 784 values in [-1, 1], e.g. written by bench/torch_dcgan.py),
// so a PyTorch run is scored on the same metric as an Agon checkpoint. One line per file.
import { readFileSync } from "node:fs";
import { initBackend } from "../shared/backend.js";
import { computeFd } from "../shared/fid.js";

await initBackend("wasm", () => {});
for (const file of process.argv.slice(2)) {
  const buf = readFileSync(file);
  const images = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const n = images.length / 784;
  process.stdout.write(`${file}\tn ${n}\tFD ${(await computeFd("mnist", images, n)).toFixed(3)}\n`);
}
