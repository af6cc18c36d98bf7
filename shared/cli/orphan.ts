// When the other end goes away, stop as on SIGTERM. Parent-death detection for
// the processes `agon local` starts: their stdin is a pipe from `agon local` that
// nobody writes to; it reaches end-of-file when `agon local` is gone, even after
// SIGKILL, and then the child stops itself. And for any command whose output is
// piped into a reader that exits (`agon train 2>&1 | head`): the next write fails
// with EPIPE, and the process stops cleanly instead of dying on the error.

/** Set to "1" by `agon local` in its children's environment (their stdin is its pipe). */
export const PARENT_PIPE_ENV = "AGON_PARENT_PIPE";

/** Set by a launcher (`agon local`) for its children: who started them ("agon local pid 123"). */
export const LAUNCHER_ENV = "AGON_LAUNCHED_BY";

/**
 * When PARENT_PIPE_ENV is "1": watches stdin and, once it ends (the parent
 * died), logs one line and sends this process SIGTERM, so it stops as it would
 * on a user's SIGTERM (a coordinator checkpoints first); exits with code 1
 * after `graceMs` (ms) if that has not ended it. The variable is removed so
 * processes this one starts do not inherit it. Does nothing otherwise.
 */
export function stopWhenParentDies(graceMs = 3000): void {
  if (process.env[PARENT_PIPE_ENV] !== "1") return;
  delete process.env[PARENT_PIPE_ENV];
  let orphaned = false;
  const onEnd = () => {
    if (orphaned) return;
    orphaned = true;
    process.stderr.write("agon: the parent process (agon local) is gone; stopping\n");
    setTimeout(() => process.exit(1), graceMs).unref();
    process.kill(process.pid, "SIGTERM");
  };
  const stdin = process.stdin;
  stdin.once("end", onEnd);
  stdin.once("close", onEnd);
  stdin.once("error", onEnd);
  stdin.resume();
  // Reading stdin must not keep a finished process alive.
  (stdin as unknown as { unref?: () => void }).unref?.();
}

/**
 * Once stdout or stderr fails with EPIPE (its reader has exited: `agon train 2>&1 | head`),
 * sends this process SIGTERM, so a training run stops as on a user's SIGTERM, after the current
 * phase and with a checkpoint, and a command without a SIGTERM handler just ends; nothing more
 * is printed, the reader being gone. Further write errors on either stream are ignored (without
 * a listener Node treats them as uncaught and exits with code 7, without the checkpoint and with
 * the run dir's lock left behind). Other stream errors are ignored too: there is nobody to tell.
 */
export function stopWhenOutputCloses(): void {
  let closed = false;
  const onError = (err: NodeJS.ErrnoException) => {
    if (closed || err.code !== "EPIPE") return;
    closed = true;
    process.kill(process.pid, "SIGTERM");
  };
  process.stdout.on("error", onError);
  process.stderr.on("error", onError);
}
