// Original file: proto/agon.proto


export interface RunInfoRequest {
}

export interface RunInfoRequest__Output {
}
