// Sharding and per-microtask sample selection. Everything here is a pure function
// of (plan, shard, draw, batch), so any worker can reproduce any draw exactly.

import { hashSeed, Rng, SeedDomain } from "../rng.js";
import type { Dataset } from "./types.js";

export interface ShardPlan {
  /** Dataset sample count N. */
  count: number;
  /** Number of shards K. */
  shards: number;
  seed: number;
}

function checkInt(what: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new RangeError(`${what} must be an integer ${range}, got ${value}`);
  }
}

function checkPlan(plan: ShardPlan, shard: number): void {
  checkInt("ShardPlan.count (dataset size)", plan.count, 1);
  checkInt("ShardPlan.shards", plan.shards, 1, plan.count);
  checkInt("ShardPlan.seed", plan.seed, 0);
  checkInt("shard", shard, 0, plan.shards - 1);
}

/** Contiguous shard k: [floor(k*N/K), floor((k+1)*N/K)); sizes differ by at most one. */
export function shardRange(plan: ShardPlan, shard: number): { start: number; end: number } {
  checkPlan(plan, shard);
  const { count: n, shards: k } = plan;
  // Exact in doubles: n*k stays far below 2^53 for any dataset that fits in memory.
  return { start: Math.floor((shard * n) / k), end: Math.floor(((shard + 1) * n) / k) };
}

/** Fisher–Yates from the top: for i = n-1..1 swap perm[i] with perm[nextInt(i+1)]. */
function permutation(seed: number, shard: number, epoch: number, n: number): Int32Array {
  const rng = new Rng(hashSeed(seed, SeedDomain.permutation, shard, epoch));
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

// LRU of recent permutations. A worker's draws walk one epoch then the next, so a
// couple per shard suffices; the element cap keeps huge datasets from pinning memory,
// but the two newest entries always stay so epoch-spanning batches never thrash.
const CACHE_MAX_ENTRIES = 8;
const CACHE_MAX_ELEMENTS = 1 << 22;
const permCache = new Map<string, Int32Array>();
let cachedElements = 0;

function cachedPermutation(plan: ShardPlan, shard: number, epoch: number, n: number): Int32Array {
  const key = `${plan.count}/${plan.shards}/${plan.seed}/${shard}/${epoch}`;
  const hit = permCache.get(key);
  if (hit) {
    permCache.delete(key);
    permCache.set(key, hit);
    return hit;
  }
  const perm = permutation(plan.seed, shard, epoch, n);
  permCache.set(key, perm);
  cachedElements += n;
  while (
    permCache.size > 2 &&
    (permCache.size > CACHE_MAX_ENTRIES || cachedElements > CACHE_MAX_ELEMENTS)
  ) {
    const oldest = permCache.keys().next().value as string;
    cachedElements -= permCache.get(oldest)!.length;
    permCache.delete(oldest);
  }
  return perm;
}

/**
 * Dataset indices for microtask `draw` of `shard`. The shard is consumed as a stream:
 * position p = draw*batch + i lies in epoch floor(p / shardSize) and maps to
 * shardStart + perm[shard, epoch][p mod shardSize]. A batch may span epochs.
 */
export function drawIndices(
  plan: ShardPlan,
  shard: number,
  draw: number,
  batch: number,
): Int32Array {
  const { start, end } = shardRange(plan, shard);
  checkInt("batch", batch, 1);
  checkInt("draw", draw, 0);
  const first = draw * batch;
  checkInt("draw*batch + batch (stream position)", first + batch, 1);
  const n = end - start;
  const out = new Int32Array(batch);
  let epoch = -1;
  let perm: Int32Array = new Int32Array(0);
  for (let i = 0; i < batch; i++) {
    const p = first + i;
    const e = Math.floor(p / n);
    if (e !== epoch) {
      epoch = e;
      perm = cachedPermutation(plan, shard, e, n);
    }
    out[i] = start + perm[p - e * n];
  }
  return out;
}

/** Copies the given samples, in order, into `out` (allocated when omitted). */
export function gatherSamples(ds: Dataset, indices: Int32Array, out?: Float32Array): Float32Array {
  const size = ds.sampleSize;
  const need = indices.length * size;
  if (out && out.length !== need) {
    throw new RangeError(
      `gatherSamples: out has length ${out.length}, need ${indices.length} samples x ${size} = ${need}`,
    );
  }
  const dst = out ?? new Float32Array(need);
  const src = ds.data;
  for (let k = 0; k < indices.length; k++) {
    const idx = indices[k];
    if (idx < 0 || idx >= ds.count) {
      throw new RangeError(`gatherSamples: index ${idx} outside dataset ${ds.name} of ${ds.count}`);
    }
    const from = idx * size;
    if (size >= 32) {
      dst.set(src.subarray(from, from + size), k * size);
    } else {
      // Tiny samples (the 2-D ring): a plain loop beats creating a subarray per sample.
      for (let j = 0; j < size; j++) dst[k * size + j] = src[from + j];
    }
  }
  return dst;
}
