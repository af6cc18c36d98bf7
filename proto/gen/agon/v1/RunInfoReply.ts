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
  /**
   * sha256 (hex) of the run's Inception-v3 weights file (eval.features inception; the
   * config's eval.inception is its path on the coordinator's host); empty without.
   */
  'inceptionSha256'?: (string);
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
  /**
   * sha256 (hex) of the run's Inception-v3 weights file (eval.features inception; the
   * config's eval.inception is its path on the coordinator's host); empty without.
   */
  'inceptionSha256': (string);
}
