// Original file: proto/agon.proto

import type { Dtype as _agon_v1_Dtype, Dtype__Output as _agon_v1_Dtype__Output } from '../../agon/v1/Dtype.js';
import type { Long } from '@grpc/proto-loader';

/**
 * For an evaluation microtask the same stream carries its feature statistics
 * instead: length = dim + dim², the values Σx then Σxxᵀ (row-major) in
 * DTYPE_FP64, count = the samples behind them; the loss fields are 0.
 */
export interface GradientHeader {
  'workerId'?: (string);
  'taskId'?: (string);
  /**
   * Number of values and the sha256 (hex) of their encoded bytes.
   */
  'length'?: (number);
  'sha256'?: (string);
  'chunks'?: (number);
  /**
   * Samples behind the gradient (batch / K per shard of the task's node); the
   * gradient and the four statistics below are sums over the node's shards.
   */
  'count'?: (number);
  'dLoss'?: (number | string);
  'gLoss'?: (number | string);
  'dReal'?: (number | string);
  'dFake'?: (number | string);
  'hasD'?: (boolean);
  /**
   * Seconds the worker spent computing, for metrics.
   */
  'computeSeconds'?: (number | string);
  'dtype'?: (_agon_v1_Dtype);
  /**
   * The epoch of the microtask this answers; a leader refuses any other.
   */
  'epoch'?: (number | string | Long);
}

/**
 * For an evaluation microtask the same stream carries its feature statistics
 * instead: length = dim + dim², the values Σx then Σxxᵀ (row-major) in
 * DTYPE_FP64, count = the samples behind them; the loss fields are 0.
 */
export interface GradientHeader__Output {
  'workerId': (string);
  'taskId': (string);
  /**
   * Number of values and the sha256 (hex) of their encoded bytes.
   */
  'length': (number);
  'sha256': (string);
  'chunks': (number);
  /**
   * Samples behind the gradient (batch / K per shard of the task's node); the
   * gradient and the four statistics below are sums over the node's shards.
   */
  'count': (number);
  'dLoss': (number);
  'gLoss': (number);
  'dReal': (number);
  'dFake': (number);
  'hasD': (boolean);
  /**
   * Seconds the worker spent computing, for metrics.
   */
  'computeSeconds': (number);
  'dtype': (_agon_v1_Dtype__Output);
  /**
   * The epoch of the microtask this answers; a leader refuses any other.
   */
  'epoch': (number);
}
