// Original file: proto/agon.proto

import type { Capabilities as _agon_v1_Capabilities, Capabilities__Output as _agon_v1_Capabilities__Output } from '../../agon/v1/Capabilities.js';

export interface JoinRequest {
  /**
   * Stable across restarts so a reconnecting worker re-joins as itself.
   */
  'workerName'?: (string);
  'backend'?: (string);
  'capabilities'?: (_agon_v1_Capabilities | null);
  /**
   * sha256 (hex) of the worker's copy of the run's dataset (RunInfo says which).
   */
  'datasetFingerprint'?: (string);
  /**
   * Why the worker could not open its dataset (then dataset_fingerprint is empty).
   */
  'datasetError'?: (string);
}

export interface JoinRequest__Output {
  /**
   * Stable across restarts so a reconnecting worker re-joins as itself.
   */
  'workerName': (string);
  'backend': (string);
  'capabilities': (_agon_v1_Capabilities__Output | null);
  /**
   * sha256 (hex) of the worker's copy of the run's dataset (RunInfo says which).
   */
  'datasetFingerprint': (string);
  /**
   * Why the worker could not open its dataset (then dataset_fingerprint is empty).
   */
  'datasetError': (string);
}
