// Original file: proto/agon.proto


export interface SubmitReply {
  'accepted'?: (boolean);
  'reason'?: (string);
}

export interface SubmitReply__Output {
  'accepted': (boolean);
  'reason': (string);
}
