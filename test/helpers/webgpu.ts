// Whether the webgpu backend can run here, for tests that skip without it. CI installs Mesa's
// lavapipe (a Vulkan driver on the CPU; .ci/run), so Dawn finds a software adapter there, which
// `--backend webgpu` accepts (auto does not: it is slower than wasm).
import { spawnSync } from "node:child_process";

/**
 * True when Dawn (npm `webgpu`) finds any adapter. Asked in a child process, so this one
 * never loads Dawn's native addon.
 */
export function webgpuAvailable(): boolean {
  const probe =
    "const { create, globals } = await import('webgpu'); Object.assign(globalThis, globals);" +
    "const a = await create([]).requestAdapter(); process.exit(a ? 0 : 1);";
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", probe], {
    timeout: 60_000,
    stdio: "ignore",
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" },
  });
  return r.status === 0;
}
