// Weight hashes: the sha256 of a flat array's little-endian bytes is how tests
// and logs prove two runs ended with identical weights.
import { createHash } from "node:crypto";

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function weightsHash(flat: Float32Array): string {
  return sha256(new Uint8Array(flat.buffer, flat.byteOffset, flat.byteLength));
}
