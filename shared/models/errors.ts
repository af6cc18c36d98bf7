/** A model cannot be built for this data (an unsupported image size or channel count): the user's to fix. */
export class ModelError extends Error {
  override name = "ModelError";
}
