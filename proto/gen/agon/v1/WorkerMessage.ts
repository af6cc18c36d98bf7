// Original file: proto/agon.proto

import type { Hello as _agon_v1_Hello, Hello__Output as _agon_v1_Hello__Output } from '../../agon/v1/Hello.js';
import type { Heartbeat as _agon_v1_Heartbeat, Heartbeat__Output as _agon_v1_Heartbeat__Output } from '../../agon/v1/Heartbeat.js';
import type { TaskAck as _agon_v1_TaskAck, TaskAck__Output as _agon_v1_TaskAck__Output } from '../../agon/v1/TaskAck.js';
import type { Leaving as _agon_v1_Leaving, Leaving__Output as _agon_v1_Leaving__Output } from '../../agon/v1/Leaving.js';
import type { EvaluationFailed as _agon_v1_EvaluationFailed, EvaluationFailed__Output as _agon_v1_EvaluationFailed__Output } from '../../agon/v1/EvaluationFailed.js';

export interface WorkerMessage {
  'workerId'?: (string);
  'hello'?: (_agon_v1_Hello | null);
  'heartbeat'?: (_agon_v1_Heartbeat | null);
  'ack'?: (_agon_v1_TaskAck | null);
  'leaving'?: (_agon_v1_Leaving | null);
  'evaluationFailed'?: (_agon_v1_EvaluationFailed | null);
  'body'?: "hello"|"heartbeat"|"ack"|"leaving"|"evaluationFailed";
}

export interface WorkerMessage__Output {
  'workerId': (string);
  'hello'?: (_agon_v1_Hello__Output | null);
  'heartbeat'?: (_agon_v1_Heartbeat__Output | null);
  'ack'?: (_agon_v1_TaskAck__Output | null);
  'leaving'?: (_agon_v1_Leaving__Output | null);
  'evaluationFailed'?: (_agon_v1_EvaluationFailed__Output | null);
  'body'?: "hello"|"heartbeat"|"ack"|"leaving"|"evaluationFailed";
}
