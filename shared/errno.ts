// File errors in words for messages people read: "no such file or directory"
// rather than "ENOENT", so no error line ends with a bare errno code.

const CAUSES: Record<string, string> = {
  ENOENT: "no such file or directory",
  EISDIR: "it is a directory, not a file",
  ENOTDIR: "a path component is not a directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "file name too long",
  EMFILE: "too many open files",
  EIO: "input/output error",
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EEXIST: "a file of that name already exists",
};

/**
 * The cause of a failed file operation as a person reads it (`ENOENT` →
 * "no such file or directory"); for an error without a known errno code, the
 * first line of its message, or "unknown error" when that is empty.
 */
export function fileErrorCause(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  if (e?.code && CAUSES[e.code]) return CAUSES[e.code];
  const first = String(e?.message ?? err ?? "")
    .split("\n")[0]
    .trim();
  return first || e?.code || "unknown error";
}
