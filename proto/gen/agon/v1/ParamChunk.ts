// Original file: proto/agon.proto

import type { Long } from '@grpc/proto-loader';

export interface ParamChunk {
  'net'?: (string);
  'version'?: (number | string | Long);
  'index'?: (number);
  'chunks'?: (number);
  'length'?: (number);
  'sha256'?: (string);
  'data'?: (Buffer | Uint8Array | string);
}

export interface ParamChunk__Output {
  'net': (string);
  'version': (number);
  'index': (number);
  'chunks': (number);
  'length': (number);
  'sha256': (string);
  'data': (Buffer);
}
