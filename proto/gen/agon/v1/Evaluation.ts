// Original file: proto/agon.proto


/**
 * What an evaluation microtask evaluates: the generator the coordinator keeps for
 * evaluation at this step (its EMA generator when the run has one), fetched with
 * FetchParams net "EVAL", version = the task's step, always fp32, used only when
 * its bytes hash to weights_sha256. It is never used for training. The chunks'
 * samples, latents and features follow from the run config's eval section.
 */
export interface Evaluation {
  'weightsSha256'?: (string);
}

/**
 * What an evaluation microtask evaluates: the generator the coordinator keeps for
 * evaluation at this step (its EMA generator when the run has one), fetched with
 * FetchParams net "EVAL", version = the task's step, always fp32, used only when
 * its bytes hash to weights_sha256. It is never used for training. The chunks'
 * samples, latents and features follow from the run config's eval section.
 */
export interface Evaluation__Output {
  'weightsSha256': (string);
}
