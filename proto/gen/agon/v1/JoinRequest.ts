// Original file: proto/agon.proto

import type { Capabilities as _agon_v1_Capabilities, Capabilities__Output as _agon_v1_Capabilities__Output } from '../../agon/v1/Capabilities.js';

export interface JoinRequest {
  /**
   * Stable across restarts so a reconnecting worker re-joins as itself.
   */
  'workerName'?: (string);
  'backend'?: (string);
  'capabilities'?: (_agon_v1_Capabilities | null);
}

export interface JoinRequest__Output {
  /**
   * Stable across restarts so a reconnecting worker re-joins as itself.
   */
  'workerName': (string);
  'backend': (string);
  'capabilities': (_agon_v1_Capabilities__Output | null);
}
