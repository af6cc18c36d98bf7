// Original file: proto/agon.proto

import type { Long } from '@grpc/proto-loader';

export interface FetchParamsRequest {
  /**
   * "G" or "D".
   */
  'net'?: (string);
  /**
   * 0 means the current version.
   */
  'version'?: (number | string | Long);
}

export interface FetchParamsRequest__Output {
  /**
   * "G" or "D".
   */
  'net': (string);
  /**
   * 0 means the current version.
   */
  'version': (number);
}
