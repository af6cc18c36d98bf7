// Whether the webgpu backend can run here, for tests that skip without it. CI installs Mesa's
// lavapipe (a Vulkan driver on the CPU; .ci/run), so Dawn finds a software adapter there, which
// `--backend webgpu` accepts (auto does not: it is slower than wasm).
import { webgpuAdapterMissing } from "../../shared/backend.js";

/** True when Dawn finds any adapter (asked in a child process, as initBackend does). */
export function webgpuAvailable(): boolean {
  return webgpuAdapterMissing() === null;
}
