// Original file: proto/agon.proto


export interface RunInfoReply {
  'runId'?: (string);
  /**
   * The validated run config as JSON.
   */
  'configJson'?: (string);
  /**
   * sha256 (hex) of the run's dataset (samples, labels, shape) as the coordinator has it.
   */
  'datasetFingerprint'?: (string);
}

export interface RunInfoReply__Output {
  'runId': (string);
  /**
   * The validated run config as JSON.
   */
  'configJson': (string);
  /**
   * sha256 (hex) of the run's dataset (samples, labels, shape) as the coordinator has it.
   */
  'datasetFingerprint': (string);
}
