// `agon watch`: follows a run's metrics and events on NATS (coordinator/watch.ts,
// imported when the command runs).
import { type Command, InvalidArgumentError } from "commander";
import { RUN_ID_PATTERN } from "../../config.js";
import { natsAuthFromOptions } from "../nats-options.js";

/** Where `agon watch` writes (process.stdout, or a test's collector). */
export interface WatchCommandOutput {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

function runIdArg(value: string): string {
  if (!RUN_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError("expected a run id (1-64 letters, digits, '-' or '_')");
  }
  return value;
}

export function registerWatchCommand(
  program: Command,
  out: WatchCommandOutput = process.stdout,
): Command {
  return program
    .command("watch")
    .description(
      "follow a run's metrics and events on NATS: a live view, or JSON lines with --json",
    )
    .option("--run <id>", "run id (config run.id)", runIdArg, "agon")
    .option(
      "--nats <urls>",
      "NATS server URL(s), comma-separated (default: $NATS_URL or nats://127.0.0.1:4222)",
    )
    .option("--json", "print every message as one JSON line {subject, data} (for piping)")
    .option("--follow", "keep watching after the run's last step (default: exit 0 when it is done)")
    .action(async (opts: Record<string, unknown>) => {
      const { defaultNatsUrl, runWatch } = await import("../../../coordinator/watch.js");
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        await runWatch(
          {
            run: opts.run as string,
            nats: (opts.nats as string | undefined) ?? defaultNatsUrl(),
            json: Boolean(opts.json),
            follow: Boolean(opts.follow),
            natsAuth: natsAuthFromOptions(opts),
            signal: abort.signal,
          },
          out,
        );
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }
    });
}
