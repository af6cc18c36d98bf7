// Original file: proto/agon.proto


export interface Heartbeat {
  /**
   * Microtasks the worker holds, so the coordinator can spot lost assignments.
   */
  'taskIds'?: (string)[];
}

export interface Heartbeat__Output {
  /**
   * Microtasks the worker holds, so the coordinator can spot lost assignments.
   */
  'taskIds': (string)[];
}
