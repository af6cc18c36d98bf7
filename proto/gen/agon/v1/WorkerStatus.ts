// Original file: proto/agon.proto


export interface WorkerStatus {
  'workerId'?: (string);
  'workerName'?: (string);
  'backend'?: (string);
  'shards'?: (number)[];
}

export interface WorkerStatus__Output {
  'workerId': (string);
  'workerName': (string);
  'backend': (string);
  'shards': (number)[];
}
