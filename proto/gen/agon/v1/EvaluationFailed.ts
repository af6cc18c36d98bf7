// Original file: proto/agon.proto


/**
 * The worker cannot compute an evaluation microtask (its features do not load, or
 * extraction failed): the coordinator skips that evaluation, training goes on.
 */
export interface EvaluationFailed {
  'taskId'?: (string);
  /**
   * One line: why.
   */
  'reason'?: (string);
}

/**
 * The worker cannot compute an evaluation microtask (its features do not load, or
 * extraction failed): the coordinator skips that evaluation, training goes on.
 */
export interface EvaluationFailed__Output {
  'taskId': (string);
  /**
   * One line: why.
   */
  'reason': (string);
}
