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
  /**
   * Drawn once per worker process at start-up: a Join under a name whose holder has the
   * same instance is that process re-joining (it replaces its old session); another
   * instance while the holder's lease runs is refused (ALREADY_EXISTS). Empty from
   * workers that predate it: such a Join replaces the holder, as before.
   */
  'instanceId'?: (string);
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
  /**
   * Drawn once per worker process at start-up: a Join under a name whose holder has the
   * same instance is that process re-joining (it replaces its old session); another
   * instance while the holder's lease runs is refused (ALREADY_EXISTS). Empty from
   * workers that predate it: such a Join replaces the holder, as before.
   */
  'instanceId': (string);
}
