// Original file: proto/agon.proto


export interface Capabilities {
  'cores'?: (number);
}

export interface Capabilities__Output {
  'cores': (number);
}
