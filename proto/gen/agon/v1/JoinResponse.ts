// Original file: proto/agon.proto

import type { Long } from '@grpc/proto-loader';

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
  /**
   * Fencing epoch of the coordinator that answered (0 without --ha); see docs/ARCHITECTURE.md.
   */
  'epoch'?: (number | string | Long);
  /**
   * As RunInfoReply.inception_sha256: the worker's copy must hash to it to evaluate.
   */
  'inceptionSha256'?: (string);
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
  /**
   * Fencing epoch of the coordinator that answered (0 without --ha); see docs/ARCHITECTURE.md.
   */
  'epoch': (number);
  /**
   * As RunInfoReply.inception_sha256: the worker's copy must hash to it to evaluate.
   */
  'inceptionSha256': (string);
}
