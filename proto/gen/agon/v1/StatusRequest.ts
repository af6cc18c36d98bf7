// Original file: proto/agon.proto


export interface StatusRequest {
}

export interface StatusRequest__Output {
}
