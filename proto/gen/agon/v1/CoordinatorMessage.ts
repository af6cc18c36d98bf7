// Original file: proto/agon.proto

import type { Microtask as _agon_v1_Microtask, Microtask__Output as _agon_v1_Microtask__Output } from '../../agon/v1/Microtask.js';
import type { Cancel as _agon_v1_Cancel, Cancel__Output as _agon_v1_Cancel__Output } from '../../agon/v1/Cancel.js';
import type { Finished as _agon_v1_Finished, Finished__Output as _agon_v1_Finished__Output } from '../../agon/v1/Finished.js';

export interface CoordinatorMessage {
  'task'?: (_agon_v1_Microtask | null);
  'cancel'?: (_agon_v1_Cancel | null);
  'finished'?: (_agon_v1_Finished | null);
  'body'?: "task"|"cancel"|"finished";
}

export interface CoordinatorMessage__Output {
  'task'?: (_agon_v1_Microtask__Output | null);
  'cancel'?: (_agon_v1_Cancel__Output | null);
  'finished'?: (_agon_v1_Finished__Output | null);
  'body'?: "task"|"cancel"|"finished";
}
