// Original file: proto/agon.proto


/**
 * The worker is shutting down cleanly; its shards go back at once.
 */
export interface Leaving {
}

/**
 * The worker is shutting down cleanly; its shards go back at once.
 */
export interface Leaving__Output {
}
