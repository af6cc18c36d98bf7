// Original file: proto/agon.proto

import type { GradientHeader as _agon_v1_GradientHeader, GradientHeader__Output as _agon_v1_GradientHeader__Output } from '../../agon/v1/GradientHeader.js';

export interface GradientChunk {
  /**
   * Present on the first chunk only.
   */
  'header'?: (_agon_v1_GradientHeader | null);
  'index'?: (number);
  'data'?: (Buffer | Uint8Array | string);
}

export interface GradientChunk__Output {
  /**
   * Present on the first chunk only.
   */
  'header': (_agon_v1_GradientHeader__Output | null);
  'index': (number);
  'data': (Buffer);
}
