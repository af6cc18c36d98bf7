// Original file: proto/agon.proto


export interface Hello {
}

export interface Hello__Output {
}
