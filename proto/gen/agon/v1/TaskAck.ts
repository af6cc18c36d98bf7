// Original file: proto/agon.proto


export interface TaskAck {
  'taskId'?: (string);
}

export interface TaskAck__Output {
  'taskId': (string);
}
