// The exported EMA generator in a real browser: headless Chromium
// (playwright-core) fetches model.json and weights.bin over HTTP with the
// published tfjs bundle, runs it on the CPU backend, and must reproduce what
// `agon sample` computes within 1e-5 (a conditional one: `agon sample --class N`).
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { runExport, runSample, sampleNoise } from "../coordinator/export.js";
import { train } from "../coordinator/train.js";
import { parseConfig } from "../shared/config.js";
import { tempDir } from "./helpers/cli.js";
import { imageFolder } from "./helpers/images.js";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
const TFJS = resolve(import.meta.dirname, "../node_modules/@tensorflow/tfjs/dist/tf.min.js");
const nullOut = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;

/** A tiny dcgan with batch norm on MNIST, or a resnet (R3GAN-style) on a labelled 32×32 RGB folder. */
type Arch = "dcgan" | "resnet";

/** Config of a tiny run with an EMA generator, optionally class-conditional. */
function tinyConfig(dir: string, arch: Arch, conditional: boolean) {
  return parseConfig({
    run: { id: "browser", dir },
    seed: 4,
    ...(arch === "dcgan"
      ? {
          model: { name: "dcgan", latentDim: 8, gFilters: 4, dFilters: 4, conditional },
          dataset: { name: "mnist", limit: 64 },
        }
      : {
          model: { name: "resnet", latentDim: 8, channels: [4, 4, 3, 2], conditional },
          dataset: { name: "folder", path: imageFolder(32, 8, 3), size: 32, channels: 3 },
        }),
    ema: { halfLifeImages: 16, rampup: null },
    shards: 2,
    batch: 8,
    steps: 2,
    samples: { every: 1, count: 9 },
  });
}

describe("agon export in a browser", () => {
  let browser: Browser | undefined;
  const servers: Server[] = [];

  afterAll(async () => {
    await browser?.close();
    for (const server of servers) server.close();
  });

  /**
   * Trains the tiny run, exports its EMA generator, and runs it in headless Chromium on
   * the run's sample noise (and, conditional, class `classIndex` for every sample).
   * Returns the browser's output shape and the largest difference to `agon sample`.
   */
  async function browserVsSample(arch: Arch, conditional: boolean, classIndex?: number) {
    const dir = tempDir("agon-export-browser-");
    const cfg = tinyConfig(dir, arch, conditional);
    const result = await train(cfg, {
      backend: "cpu",
      fresh: true,
      log: () => {},
      progressOut: nullOut,
    });
    const ckpt = join(dir, `ckpt-${String(result.step).padStart(8, "0")}`);
    const out = join(dir, "web");
    await runExport({ checkpoint: ckpt, out, backend: "cpu" });
    const n = 9;
    const want = await runSample({
      checkpoint: ckpt,
      out: join(dir, "s.png"),
      n,
      classIndex,
      backend: "cpu",
    });
    const z = Array.from(sampleNoise(cfg.seed, n, 8));

    const files: Record<string, [string, string]> = {
      "/": ["text/html", ""],
      "/tf.min.js": ["text/javascript", TFJS],
      "/model/model.json": ["application/json", join(out, "model.json")],
      "/model/weights.bin": ["application/octet-stream", join(out, "weights.bin")],
    };
    const server = createServer((req, res) => {
      const f = files[req.url ?? ""];
      if (!f) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": f[0] });
      res.end(f[1] === "" ? "<!doctype html><title>agon</title>" : readFileSync(f[1]));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    browser ??= await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
    });
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    await page.addScriptTag({ url: `${base}/tf.min.js` });
    const got = await page.evaluate(
      async ({ url, z, n, cls }) => {
        // biome-ignore lint/suspicious/noExplicitAny: the tfjs bundle's global
        const tf = (globalThis as any).tf;
        await tf.setBackend("cpu");
        const model = await tf.loadLayersModel(url);
        const zT = tf.tensor2d(z, [n, z.length / n]);
        // A conditional generator's second input: the class of each sample, [n, 1] int32.
        const input =
          cls === null ? zT : [zT, tf.tensor2d(new Array(n).fill(cls), [n, 1], "int32")];
        const y = model.predict(input);
        return { shape: y.shape as number[], data: Array.from(await y.data()) as number[] };
      },
      { url: `${base}/model/model.json`, z, n, cls: classIndex ?? null },
    );
    await page.close();
    let maxDiff = 0;
    for (let i = 0; i < want.samples.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(got.data[i] - want.samples[i]));
    }
    return { shape: got.shape, maxDiff };
  }

  const skipped = haveChromium ? "" : ` (skipped: ${CHROMIUM} not found; apt-get install chromium)`;

  it.skipIf(!haveChromium)(
    `the EMA generator (dcgan with batch norm) loads with tf.loadLayersModel in headless Chromium and matches agon sample within 1e-5${skipped}`,
    async () => {
      const { shape, maxDiff } = await browserVsSample("dcgan", false);
      expect(shape).toEqual([9, 28, 28, 1]);
      expect(maxDiff).toBeLessThanOrEqual(1e-5);
    },
    180_000,
  );

  it.skipIf(!haveChromium)(
    `a conditional EMA generator takes the class as a second input and matches agon sample --class 7 within 1e-5${skipped}`,
    async () => {
      const { shape, maxDiff } = await browserVsSample("dcgan", true, 7);
      expect(shape).toEqual([9, 28, 28, 1]);
      expect(maxDiff).toBeLessThanOrEqual(1e-5);
    },
    180_000,
  );

  it.skipIf(!haveChromium)(
    `a conditional resnet EMA generator (residual adds, fixed blur filters, standard layers only) matches agon sample --class 2 within 1e-5${skipped}`,
    async () => {
      const { shape, maxDiff } = await browserVsSample("resnet", true, 2);
      expect(shape).toEqual([9, 32, 32, 3]);
      expect(maxDiff).toBeLessThanOrEqual(1e-5);
    },
    180_000,
  );
});
