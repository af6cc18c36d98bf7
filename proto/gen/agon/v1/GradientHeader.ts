// Original file: proto/agon.proto


export interface GradientHeader {
  'workerId'?: (string);
  'taskId'?: (string);
  /**
   * Number of float32 values and the sha256 (hex) of their bytes.
   */
  'length'?: (number);
  'sha256'?: (string);
  'chunks'?: (number);
  'count'?: (number);
  'dLoss'?: (number | string);
  'gLoss'?: (number | string);
  'dReal'?: (number | string);
  'dFake'?: (number | string);
  'hasD'?: (boolean);
  /**
   * Seconds the worker spent computing, for metrics.
   */
  'computeSeconds'?: (number | string);
}

export interface GradientHeader__Output {
  'workerId': (string);
  'taskId': (string);
  /**
   * Number of float32 values and the sha256 (hex) of their bytes.
   */
  'length': (number);
  'sha256': (string);
  'chunks': (number);
  'count': (number);
  'dLoss': (number);
  'gLoss': (number);
  'dReal': (number);
  'dFake': (number);
  'hasD': (boolean);
  /**
   * Seconds the worker spent computing, for metrics.
   */
  'computeSeconds': (number);
}
