// Original file: proto/agon.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The run reached its last step; the worker may exit.
 */
export interface Finished {
  'step'?: (number | string | Long);
}

/**
 * The run reached its last step; the worker may exit.
 */
export interface Finished__Output {
  'step': (number);
}
