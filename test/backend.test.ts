// initBackend on this machine: wasm and cpu work, blas when OpenBLAS is installed (CI installs
// it), tfjs-node is absent, webgpu without a Vulkan driver fails in one line (with lavapipe:
// test/webgpu-run.test.ts).
import { existsSync } from "node:fs";
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { BACKEND_NAMES, type BackendName, initBackend } from "../shared/backend.js";
import { blasAvailable } from "./helpers/blas.js";
import { runAgon, tempDir, tinyRing } from "./helpers/cli.js";

/** What auto picks on a machine without a GPU: blas where OpenBLAS loads, else wasm. */
const AUTO = blasAvailable() ? "blas" : "wasm";

describe("initBackend", () => {
  it("activates cpu", async () => {
    expect(await initBackend("cpu")).toBe("cpu");
    expect(tf.getBackend()).toBe("cpu");
    // The backend computes, and its one-time tfjs-node nag stays silent.
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args);
    try {
      expect(Array.from(await tf.add(tf.tensor([1, 2]), tf.tensor([3, 4])).data())).toEqual([4, 6]);
    } finally {
      console.warn = warn;
    }
    expect(warnings).toEqual([]);
  });

  it("activates wasm with our kernels, and a second call is cheap", async () => {
    expect(await initBackend("wasm")).toBe("wasm");
    expect(tf.getKernel("Conv2DBackpropFilter", "wasm")).toBeDefined();
    const t0 = performance.now();
    expect(await initBackend("wasm")).toBe("wasm");
    expect(performance.now() - t0).toBeLessThan(50);
    expect(Array.from(await tf.matMul(tf.ones([2, 3]), tf.ones([3, 1])).data())).toEqual([3, 3]);
  });

  it("switches back and forth", async () => {
    expect(await initBackend("cpu")).toBe("cpu");
    expect(await initBackend("wasm")).toBe("wasm");
  });

  it(`auto picks ${AUTO} here (no tfjs-node, no GPU) and says so`, async () => {
    const lines: string[] = [];
    expect(await initBackend("auto", (line) => lines.push(line))).toBe(AUTO);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`auto chose ${AUTO}\\b`));
    expect(lines[0]).toMatch(/tfjs-node not installed/);
    if (AUTO === "blas") expect(lines[0]).toMatch(/OpenBLAS [\d.]+ \w+ for matrix products/);
  });

  it("an explicit wasm or cpu backend says which it is in one line", async () => {
    for (const [name, pattern] of [
      ["wasm", /^backend: wasm \(tfjs-backend-wasm, XNNPACK/],
      ["cpu", /^backend: cpu \(tfjs's plain JavaScript kernels/],
    ] as const) {
      const lines: string[] = [];
      expect(await initBackend(name, (line) => lines.push(line))).toBe(name);
      expect(lines).toEqual([expect.stringMatching(pattern)]);
    }
    await initBackend("wasm");
  });

  it.skipIf(!blasAvailable())(
    "blas is wasm with OpenBLAS kernels, and switching back to wasm takes them off",
    async () => {
      const lines: string[] = [];
      expect(await initBackend("blas", (line) => lines.push(line))).toBe("blas");
      expect(tf.getBackend()).toBe("wasm");
      expect(lines).toEqual([expect.stringMatching(/^backend: blas \(wasm with OpenBLAS /)]);
      const names = ["BatchMatMul", "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"];
      const kernels = () => names.map((k) => tf.getKernel(k, "wasm")?.kernelFunc);
      const onBlas = kernels();
      // 32 channels: a conv blas takes (with fewer it leaves them to XNNPACK).
      const y = tf.randomNormal([4, 7, 7, 32], 0, 1, "float32", 1) as tf.Tensor4D;
      const w = tf.randomNormal([5, 5, 16, 32], 0, 1, "float32", 2) as tf.Tensor4D;
      const convT = () => tf.conv2dTranspose(y, w, [4, 14, 14, 16], 2, "same").dataSync().slice();
      const first = convT();
      // Initialising blas again (as every command may) changes neither kernels nor bits.
      expect(await initBackend("blas")).toBe("blas");
      expect(kernels()).toEqual(onBlas);
      expect(convT()).toEqual(first);
      expect(await initBackend("wasm")).toBe("wasm");
      expect(kernels().every((k, i) => k !== onBlas[i])).toBe(true);
      expect(convT()).not.toEqual(first);
      expect(await initBackend("blas")).toBe("blas");
      expect(convT()).toEqual(first);
      tf.dispose([y, w]);
    },
  );

  it.skipIf(!blasAvailable())(
    "blas says when OPENBLAS_CORETYPE names kernels OpenBLAS does not run (the bits then follow the machine)",
    async () => {
      const r = await runAgon(
        ["train", ...tinyRing({ steps: 1 }), "--run-dir", tempDir(), "--backend", "blas"],
        { env: { OPENBLAS_CORETYPE: "Bogus" } },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(
        /^backend: blas: OPENBLAS_CORETYPE=Bogus but OpenBLAS runs its \w+ kernels .*bits match only machines that run \w+$/m,
      );
    },
  );

  it("blas without OpenBLAS fails in one line that says what is missing", async () => {
    const r = await runAgon(
      ["train", ...tinyRing({ steps: 1 }), "--run-dir", tempDir(), "--backend", "blas"],
      { env: { AGON_OPENBLAS: "/nonexistent/libopenblas.so.0" } },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(
      /^agon: error: backend 'blas': AGON_OPENBLAS=\/nonexistent\/libopenblas\.so\.0 could not be loaded as a shared library \(Failed to load shared library: cannot open shared object file: No such file or directory\)$/m,
    );
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
  });

  // Desktop packages (Chromium here) install Mesa's Vulkan drivers; with no GPU to drive
  // they print warnings when Dawn asks them. The default backend must not ask them then.
  it.skipIf(existsSync("/dev/nvidia0") || existsSync("/dev/dri"))(
    "agon train with the default backend prints only its own backend line (no driver noise)",
    async () => {
      // The default backend is auto (the suite's AGON_BACKEND=wasm put back to it).
      const r = await runAgon(["train", ...tinyRing({ steps: 1 }), "--run-dir", tempDir()], {
        env: { AGON_BACKEND: "auto" },
      });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(
        new RegExp(`^backend: auto chose ${AUTO}\\b.*tfjs-node not installed, no GPU device`, "m"),
      );
      expect(r.stderr).not.toMatch(/Vulkan|XDG_RUNTIME_DIR|InitializeImpl|Warning/);
    },
  );

  it("tensorflow fails with an install hint when tfjs-node is absent", async () => {
    await expect(initBackend("tensorflow")).rejects.toThrow(/npm install @tensorflow\/tfjs-node/);
  });

  // Vulkan pointed at no driver, so Dawn finds no adapter even where lavapipe (CI) or a GPU is.
  it("webgpu without an adapter fails in one line that says what is missing, without the driver stack's noise", async () => {
    const r = await runAgon(
      ["train", ...tinyRing({ steps: 1 }), "--run-dir", tempDir(), "--backend", "webgpu"],
      {
        env: {
          VK_DRIVER_FILES: "/nonexistent/agon-no-driver.json",
          VK_ICD_FILENAMES: "/nonexistent/agon-no-driver.json",
        },
      },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n"), r.stderr).toEqual([
      expect.stringMatching(
        /^agon: error: webgpu: no GPU adapter found \(needs a GPU, its Vulkan driver and libvulkan1; Vulkan said: .*agon-no-driver\.json.*\)$/,
      ),
    ]);
  });

  it("rejects unknown names", async () => {
    await expect(initBackend("metal" as BackendName)).rejects.toThrow(/unknown backend 'metal'/);
    expect(BACKEND_NAMES).toEqual(["auto", "tensorflow", "webgpu", "blas", "wasm", "cpu"]);
  });
});
