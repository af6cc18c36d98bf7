// Original file: proto/agon.proto

import type { Evaluation as _agon_v1_Evaluation, Evaluation__Output as _agon_v1_Evaluation__Output } from '../../agon/v1/Evaluation.js';
import type { Long } from '@grpc/proto-loader';

/**
 * The microtasks (step, phase, k) for the shards k of the reduction-tree node
 * [shard, shard_end): the worker computes each and sends one gradient, their
 * sum along the tree (docs/ARCHITECTURE.md). Everything else a worker needs
 * (sample indices, noise seed, batch) is a pure function of these and the run config.
 */
export interface Microtask {
  'taskId'?: (string);
  'step'?: (number | string | Long);
  'phase'?: (number);
  'shard'?: (number);
  /**
   * The parameter versions the gradient must be computed at.
   */
  'gVersion'?: (number | string | Long);
  'dVersion'?: (number | string | Long);
  'deadlineMs'?: (number);
  /**
   * sha256 (hex) of those parameter versions: parameters that arrive over NATS
   * are used only when they hash to these, so forged broadcasts are never used.
   */
  'gSha256'?: (string);
  'dSha256'?: (string);
  /**
   * One past the node's last shard; shard + 1 for a single microtask.
   */
  'shardEnd'?: (number);
  /**
   * Set on an evaluation microtask (between phases, eval.every): shard..shard_end
   * then name evaluation chunks, not data shards, and the worker sends their
   * feature statistics instead of a gradient (see Evaluation).
   */
  'evaluation'?: (_agon_v1_Evaluation | null);
  /**
   * The leader's fencing epoch; the gradient for this task must carry it back.
   */
  'epoch'?: (number | string | Long);
}

/**
 * The microtasks (step, phase, k) for the shards k of the reduction-tree node
 * [shard, shard_end): the worker computes each and sends one gradient, their
 * sum along the tree (docs/ARCHITECTURE.md). Everything else a worker needs
 * (sample indices, noise seed, batch) is a pure function of these and the run config.
 */
export interface Microtask__Output {
  'taskId': (string);
  'step': (number);
  'phase': (number);
  'shard': (number);
  /**
   * The parameter versions the gradient must be computed at.
   */
  'gVersion': (number);
  'dVersion': (number);
  'deadlineMs': (number);
  /**
   * sha256 (hex) of those parameter versions: parameters that arrive over NATS
   * are used only when they hash to these, so forged broadcasts are never used.
   */
  'gSha256': (string);
  'dSha256': (string);
  /**
   * One past the node's last shard; shard + 1 for a single microtask.
   */
  'shardEnd': (number);
  /**
   * Set on an evaluation microtask (between phases, eval.every): shard..shard_end
   * then name evaluation chunks, not data shards, and the worker sends their
   * feature statistics instead of a gradient (see Evaluation).
   */
  'evaluation': (_agon_v1_Evaluation__Output | null);
  /**
   * The leader's fencing epoch; the gradient for this task must carry it back.
   */
  'epoch': (number);
}
