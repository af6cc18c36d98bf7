// Original file: proto/agon.proto

import type { Dtype as _agon_v1_Dtype, Dtype__Output as _agon_v1_Dtype__Output } from '../../agon/v1/Dtype.js';
import type { Long } from '@grpc/proto-loader';

export interface ParamChunk {
  'net'?: (string);
  'version'?: (number | string | Long);
  'index'?: (number);
  'chunks'?: (number);
  'length'?: (number);
  'sha256'?: (string);
  'data'?: (Buffer | Uint8Array | string);
  'dtype'?: (_agon_v1_Dtype);
  /**
   * The fencing epoch of the coordinator that sent these parameters.
   */
  'epoch'?: (number | string | Long);
}

export interface ParamChunk__Output {
  'net': (string);
  'version': (number);
  'index': (number);
  'chunks': (number);
  'length': (number);
  'sha256': (string);
  'data': (Buffer);
  'dtype': (_agon_v1_Dtype__Output);
  /**
   * The fencing epoch of the coordinator that sent these parameters.
   */
  'epoch': (number);
}
