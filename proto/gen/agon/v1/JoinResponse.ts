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
}
