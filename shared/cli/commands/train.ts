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
    .option("--fresh", "ignore checkpoints in the run dir and start from step 0")
    .option("--force", "resume even if the newest checkpoint was written with a different config")
    .option("--json", "print the final summary (step, weight hashes) as JSON on stdout")
    .action(async (opts: Record<string, unknown>) => {
      const cfg = configFromOptions(opts);
      const { train } = await import("../../../coordinator/train.js");
      const result = await train(cfg, {
        backend: opts.backend as BackendName,
        fresh: Boolean(opts.fresh),
        force: Boolean(opts.force),
      });
      if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    });
}
