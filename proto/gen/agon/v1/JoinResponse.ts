// Original file: proto/agon.proto


export interface JoinResponse {
  'workerId'?: (string);
  /**
   * Without a heartbeat or result for this long, the worker's tasks are reassigned.
   */
  'leaseMs'?: (number);
  'runId'?: (string);
  /**
   * The validated run config as JSON; the worker derives every microtask from it.
   */
  'configJson'?: (string);
  /**
   * Secret of this session: every later call of this worker carries it in the
   * `agon-session` metadata, so no other client can speak for this worker id.
   */
  'session'?: (string);
  /**
   * The run's dataset fingerprint (the worker's matched it).
   */
  'datasetFingerprint'?: (string);
}

export interface JoinResponse__Output {
  'workerId': (string);
  /**
   * Without a heartbeat or result for this long, the worker's tasks are reassigned.
   */
  'leaseMs': (number);
  'runId': (string);
  /**
   * The validated run config as JSON; the worker derives every microtask from it.
   */
  'configJson': (string);
  /**
   * Secret of this session: every later call of this worker carries it in the
   * `agon-session` metadata, so no other client can speak for this worker id.
   */
  'session': (string);
  /**
   * The run's dataset fingerprint (the worker's matched it).
   */
  'datasetFingerprint': (string);
}
