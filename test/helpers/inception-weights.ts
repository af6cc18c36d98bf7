// Random Inception-v3 weights in the converted file's layout (bench/convert_inception.py's
// safetensors names and shapes), written in TypeScript so tests run where torch is absent.
import { writeFileSync } from "node:fs";
import { INCEPTION_CONVS } from "../../shared/features/inception.js";
import { Rng } from "../../shared/rng.js";

/** A safetensors file of random Inception weights (He-uniform kernels, identity batch norm) from `seed`. */
export function writeRandomInceptionWeights(path: string, seed = 5): void {
  const rng = new Rng(seed);
  const header: Record<string, unknown> = {};
  const blobs: Buffer[] = [];
  let offset = 0;
  const add = (name: string, shape: number[], value: () => number) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, value);
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
    blobs.push(Buffer.from(data.buffer));
    offset += data.byteLength;
  };
  for (const c of INCEPTION_CONVS) {
    const limit = Math.sqrt(6 / (c.inC * c.kh * c.kw));
    add(
      `${c.name}.conv.weight`,
      [c.outC, c.inC, c.kh, c.kw],
      () => (2 * rng.nextFloat() - 1) * limit,
    );
    add(`${c.name}.bn.weight`, [c.outC], () => 1);
    add(`${c.name}.bn.bias`, [c.outC], () => 0);
    add(`${c.name}.bn.running_mean`, [c.outC], () => 0);
    add(`${c.name}.bn.running_var`, [c.outC], () => 1);
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([length, json, ...blobs]));
}
