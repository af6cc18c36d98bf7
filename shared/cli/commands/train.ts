// `agon train`: the whole run in one process. The training code is imported
// when the command runs, so `agon --help` does not load TensorFlow.js.
import type { Command } from "commander";
import type { BackendName } from "../../backend-names.js";
import { addConfigOptions, backendOption, configFromOptions } from "../options.js";

export function registerTrainCommand(program: Command): Command {
  return addConfigOptions(
    program
      .command("train")
      .description("train in one process (the reference the distributed run matches bit for bit)"),
  )
    .addOption(backendOption())
    .option(
      "--fresh",
      "start from step 0; the run dir's previous files move to its archive/<date>/",
    )
    .option("--force", "resume even if the newest checkpoint was written with a different config")
    .option("--json", "print the final summary (step, weight hashes) as JSON on stdout")
    .action(async (opts: Record<string, unknown>) => {
      const cfg = configFromOptions(opts);
      const { train } = await import("../../../coordinator/train.js");
      // SIGINT/SIGTERM: checkpoint the last completed phase and exit (130 for Ctrl-C, as a shell expects).
      const stop = new AbortController();
      let signal: NodeJS.Signals | null = null;
      const onSignal = (s: NodeJS.Signals) => {
        if (signal) {
          // A second one: out now, without the checkpoint the first one asked for.
          process.stderr.write(`train: second ${s}: stopping now, without a checkpoint\n`);
          process.exit(s === "SIGINT" ? 130 : 143);
        }
        signal = s;
        process.stderr.write(
          `train: ${s}: stopping after the current phase and writing a checkpoint (a second ${s} stops at once, without it)\n`,
        );
        stop.abort();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      const result = await train(cfg, {
        backend: opts.backend as BackendName,
        fresh: Boolean(opts.fresh),
        force: Boolean(opts.force),
        stop: stop.signal,
      });
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      if (signal === "SIGINT") process.exitCode = 130;
    });
}
