// Original file: proto/agon.proto

import type { WorkerStatus as _agon_v1_WorkerStatus, WorkerStatus__Output as _agon_v1_WorkerStatus__Output } from '../../agon/v1/WorkerStatus.js';
import type { Long } from '@grpc/proto-loader';

export interface StatusReply {
  'runId'?: (string);
  'step'?: (number | string | Long);
  'phase'?: (number);
  'steps'?: (number | string | Long);
  'gVersion'?: (number | string | Long);
  'dVersion'?: (number | string | Long);
  'workers'?: (_agon_v1_WorkerStatus)[];
  'done'?: (boolean);
}

export interface StatusReply__Output {
  'runId': (string);
  'step': (number);
  'phase': (number);
  'steps': (number);
  'gVersion': (number);
  'dVersion': (number);
  'workers': (_agon_v1_WorkerStatus__Output)[];
  'done': (boolean);
}
