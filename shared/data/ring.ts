// The 2-D "ring of Gaussians" toy dataset, the standard mode-collapse test:
// point i sits near mode i mod modes, so every prefix covers the modes evenly.

import { hashSeed, Rng, SeedDomain } from "../rng.js";
import type { Dataset } from "./types.js";

/** Mode centres on a circle; mode i is at angle 2πi/modes. */
export function ringModes(modes: number, radius: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < modes; i++) {
    const angle = (2 * Math.PI * i) / modes;
    out.push([radius * Math.cos(angle), radius * Math.sin(angle)]);
  }
  return out;
}

export function loadRingDataset(
  size: number,
  modes: number,
  radius: number,
  std: number,
  seed: number,
): Dataset {
  const centres = ringModes(modes, radius);
  const rng = new Rng(hashSeed(seed, SeedDomain.ring));
  const data = new Float32Array(size * 2);
  for (let i = 0; i < size; i++) {
    const [cx, cy] = centres[i % modes];
    data[2 * i] = cx + std * rng.nextNormal();
    data[2 * i + 1] = cy + std * rng.nextNormal();
  }
  return { name: "ring", sampleShape: [2], sampleSize: 2, count: size, data };
}
