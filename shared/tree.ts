// The reduction tree: a fixed binary tree over a phase's K shard gradients,
// defined by K alone. Every sum of gradients in Agon — a worker's over the
// shards it owns, the coordinator's over what workers sent, `agon train`'s over
// all K — is taken node by node along this tree, so the bits never depend on
// how many workers there were or who computed what. A worker that owns every
// shard under a node sends that node's sum instead of its leaves; inbound
// bytes then grow with the number of workers, not with K.
import type { MicrotaskResult } from "./microtask.js";
import { type Dtype, roundValues } from "./precision.js";

/** A node of the tree: the shards [lo, hi), 0 ≤ lo < hi ≤ K. A leaf has hi = lo + 1. */
export interface TreeNode {
  lo: number;
  hi: number;
}

/**
 * A node's value: what a worker sends for it and what the coordinator stores
 * (a microtask result; for an evaluation phase, feature statistics).
 */
export interface TreePart<R = MicrotaskResult> extends TreeNode {
  result: R;
}

/**
 * The split point of an inner node [lo, hi) (hi − lo ≥ 2): its left child is
 * [lo, mid), its right [mid, hi), with the left taking the larger half. The
 * split depends on the node alone, so K fixes the whole tree.
 */
export function splitPoint(lo: number, hi: number): number {
  return lo + Math.ceil((hi - lo) / 2);
}

/** Whether [lo, hi) is a node of the tree over K shards. */
export function isTreeNode(lo: number, hi: number, shards: number): boolean {
  if (!(Number.isInteger(lo) && Number.isInteger(hi) && 0 <= lo && lo < hi && hi <= shards))
    return false;
  let a = 0;
  let b = shards;
  while (a !== lo || b !== hi) {
    if (b - a < 2) return false;
    const mid = splitPoint(a, b);
    if (hi <= mid) b = mid;
    else if (lo >= mid) a = mid;
    else return false;
  }
  return true;
}

/**
 * The fewest tree nodes that exactly cover the shards [lo, hi), in shard
 * order: the nodes a worker owning that contiguous range sends. Empty for an
 * empty range.
 */
export function treeCover(lo: number, hi: number, shards: number): TreeNode[] {
  const out: TreeNode[] = [];
  const visit = (a: number, b: number) => {
    if (b <= lo || a >= hi) return;
    if (lo <= a && b <= hi) {
      out.push({ lo: a, hi: b });
      return;
    }
    const mid = splitPoint(a, b);
    visit(a, mid);
    visit(mid, b);
  };
  if (lo < hi) visit(0, shards);
  return out;
}

/**
 * Shard ownership: live worker i of W (in join order) owns the contiguous
 * shards [⌊iK/W⌋, ⌊(i+1)K/W⌋), so it holds whole subtrees. With W > K some
 * ranges are empty.
 */
export function ownedRange(index: number, workers: number, shards: number): TreeNode {
  return {
    lo: Math.floor((index * shards) / workers),
    hi: Math.floor(((index + 1) * shards) / workers),
  };
}

/**
 * Combines two sibling nodes' values into their parent's, in place: `left`
 * becomes the parent and is returned, `right` is consumed. The gradient is the
 * float32 sum rounded to `dtype` (transport.gradients, so a node's value is
 * exactly what the wire carries); counts and statistics are summed in double.
 */
export function combine(
  left: MicrotaskResult,
  right: MicrotaskResult,
  dtype: Dtype,
): MicrotaskResult {
  const a = left.grad;
  const b = right.grad;
  if (a.length !== b.length) throw new RangeError("combine: gradient sizes differ");
  const n = a.length;
  for (let i = 0; i < n; i++) a[i] += b[i];
  const grad = dtype === "fp32" ? a : roundValues(dtype, a);
  return {
    grad,
    count: left.count + right.count,
    dLoss: left.dLoss === null || right.dLoss === null ? null : left.dLoss + right.dLoss,
    gLoss: left.gLoss + right.gLoss,
    dReal: left.dReal === null || right.dReal === null ? null : left.dReal + right.dReal,
    dFake: left.dFake + right.dFake,
  };
}

/**
 * The value of node [lo, hi): its leaves computed one at a time in shard
 * order and combined as soon as both children are ready (so at most one value
 * per tree level is held). `leaf(k)` gives shard k's microtask result and must
 * return a fresh gradient array (it is summed into in place). Throws whatever
 * `leaf` throws (a cancelled worker task stops there).
 */
export function reduceNode(
  node: TreeNode,
  dtype: Dtype,
  leaf: (shard: number) => MicrotaskResult | Promise<MicrotaskResult>,
): Promise<MicrotaskResult> {
  return reduceTree(node, leaf, (l, r) => combine(l, r, dtype));
}

/**
 * reduceNode for any value: node [lo, hi)'s leaves `leaf(k)` in order, combined
 * pairwise along the tree by `join(left, right)` (which may reuse `left`).
 */
export async function reduceTree<R>(
  node: TreeNode,
  leaf: (shard: number) => R | Promise<R>,
  join: (left: R, right: R) => R,
): Promise<R> {
  if (node.hi - node.lo === 1) return leaf(node.lo);
  const mid = splitPoint(node.lo, node.hi);
  const left = await reduceTree({ lo: node.lo, hi: mid }, leaf, join);
  const right = await reduceTree({ lo: mid, hi: node.hi }, leaf, join);
  return join(left, right);
}

/**
 * The root's value from parts that tile [0, K) with tree nodes (any order):
 * the coordinator completes the tree above what workers sent. Throws
 * RangeError when the parts are not disjoint tree nodes covering every shard.
 * Consumes the parts' gradients.
 */
export function completeTree(
  parts: ReadonlyArray<TreePart>,
  shards: number,
  dtype: Dtype,
): MicrotaskResult {
  return completeTreeWith(parts, shards, (l, r) => combine(l, r, dtype));
}

/** completeTree for any value, combined pairwise by `join(left, right)` (which may reuse `left`). */
export function completeTreeWith<R>(
  parts: ReadonlyArray<TreePart<R>>,
  shards: number,
  join: (left: R, right: R) => R,
): R {
  const byNode = new Map<string, R>();
  for (const p of parts) {
    if (!isTreeNode(p.lo, p.hi, shards))
      throw new RangeError(
        `completeTree: [${p.lo}, ${p.hi}) is not a node of the tree over ${shards} shards`,
      );
    byNode.set(`${p.lo}:${p.hi}`, p.result);
  }
  let used = 0;
  const value = (lo: number, hi: number): R => {
    const known = byNode.get(`${lo}:${hi}`);
    if (known) {
      used++;
      return known;
    }
    if (hi - lo === 1) throw new RangeError(`completeTree: shard ${lo} is missing`);
    const mid = splitPoint(lo, hi);
    return join(value(lo, mid), value(mid, hi));
  };
  const root = value(0, shards);
  if (used !== parts.length) throw new RangeError("completeTree: parts overlap");
  return root;
}

/**
 * The phase's gradient and statistics from the root: every microtask has the
 * same sample count, so the sample-weighted mean is the tree sum divided by K
 * (each value rounded once to float32). Divides the root's gradient in place
 * (no copy: the coordinator's update is passes over flat arrays); with K = 1 the
 * values are left as they are (x / 1 = x). The gradient's norm is taken in
 * Adam's pass over the same values (FlatAdam.step).
 */
export function treeMean(
  root: MicrotaskResult,
  shards: number,
): {
  grad: Float32Array;
  dLoss: number | null;
  gLoss: number;
  dReal: number | null;
  dFake: number;
} {
  const grad = root.grad;
  if (shards !== 1) for (let i = 0; i < grad.length; i++) grad[i] = grad[i] / shards;
  return {
    grad,
    dLoss: root.dLoss === null ? null : root.dLoss / shards,
    gLoss: root.gLoss / shards,
    dReal: root.dReal === null ? null : root.dReal / shards,
    dFake: root.dFake / shards,
  };
}
