// The one error type loaders throw for bad input data or specs, so callers can
// tell "fix your dataset" apart from programming errors.

/** A dataset could not be loaded; the message names the file or dataset and the fix. */
export class DatasetError extends Error {
  override name = "DatasetError";
}
