// The dashboard in a real browser against a real training run: a coordinator
// and two workers (child processes) train a tiny GAN on the ring, this process
// serves the dashboard from the run's NATS subjects, and headless Chromium
// (playwright-core) must see the step advance and the sample grid load.
// AGON_SCREENSHOT=1 also writes docs/dashboard.png.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { type Browser, chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { type HttpServerHandle, type RunStatus, startHttpServer } from "../coordinator/http.js";
import type { CoordinatorClient } from "../proto/gen/agon/v1/Coordinator.js";
import type { StatusReply__Output } from "../proto/gen/agon/v1/StatusReply.js";
import { connectNats, type NatsConnection } from "../shared/nats.js";
import { CHANNEL_OPTIONS, loadAgonProto } from "../shared/wire.js";
import { tempDir, tinyRing } from "./helpers/cli.js";
import { startCoordinator, startWorker } from "./helpers/cluster.js";
import { natsForSuite } from "./helpers/nats.js";

const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = process.env.AGON_SCREENSHOT === "1";
const SHOT_PATH = resolve(import.meta.dirname, "../docs/dashboard.png");
const haveChromium = existsSync(CHROMIUM);

const nats = natsForSuite();

describe("dashboard", () => {
  let browser: Browser | undefined;
  let http: HttpServerHandle | undefined;
  let nc: NatsConnection | undefined;
  let client: CoordinatorClient | undefined;
  let poller: NodeJS.Timeout | undefined;

  afterAll(async () => {
    if (poller) clearInterval(poller);
    await browser?.close();
    await http?.close();
    await nc?.close();
    (client as unknown as grpc.Client | undefined)?.close();
  });

  it.skipIf(!haveChromium)(
    `shows a live training run in headless Chromium${haveChromium ? "" : ` (skipped: ${CHROMIUM} not found; apt-get install chromium)`}`,
    async () => {
      // The dashboard listens first, so it sees the run from its first phase.
      let status: RunStatus = {
        step: 0,
        steps: 3000,
        phase: 0,
        workers: [],
        done: false,
        healthy: true,
      };
      nc = await connectNats(nats.url, "dashboard-test");
      http = await startHttpServer({
        host: "127.0.0.1",
        port: 0,
        runId: "agon",
        nats: nc,
        status: () => status,
        log: () => {},
      });

      const coord = await startCoordinator(
        [
          ...tinyRing({ steps: 3000 }),
          "--set",
          "samples.every=50",
          "samples.count=64",
          "--run-dir",
          tempDir(),
        ],
        nats.url,
      );
      // status() from the coordinator's own Status RPC, as the embedded server will have it.
      client = new (loadAgonProto().agon.v1.Coordinator)(
        coord.address,
        grpc.credentials.createInsecure(),
        CHANNEL_OPTIONS,
      ) as unknown as CoordinatorClient;
      const poll = () =>
        client?.Status({}, (err: grpc.ServiceError | null, r?: StatusReply__Output) => {
          if (err || !r) return;
          status = {
            step: r.step,
            steps: r.steps,
            phase: r.phase,
            workers: r.workers.map((w) => ({
              workerId: w.workerId,
              workerName: w.workerName,
              shards: w.shards,
            })),
            done: r.done,
            healthy: true,
          };
        });
      poller = setInterval(poll, 250);
      startWorker(coord.address, nats.url, "ring-a");
      startWorker(coord.address, nats.url, "ring-b");

      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
      const page = await browser.newPage({
        viewport: { width: 1440, height: 900 },
        deviceScaleFactor: 1,
      });
      const errors: string[] = [];
      const foreign: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("request", (r) => {
        if (!r.url().startsWith(`${http!.address}/`)) foreign.push(r.url());
      });
      await page.goto(`${http.address}/`);

      const shownStep = async () => Number(await page.locator("#step").textContent());
      await page.waitForFunction(() => /^\d+$/.test(document.getElementById("step")!.textContent!));
      const first = await shownStep();
      await page.waitForFunction(
        (n) => Number(document.getElementById("step")!.textContent) > n,
        first,
        { timeout: 30_000 },
      );
      const second = await shownStep();
      expect(second).toBeGreaterThan(first);

      await page.waitForFunction(
        () => (document.getElementById("sample") as HTMLImageElement).naturalWidth > 0,
        undefined,
        { timeout: 30_000 },
      );
      await expect
        .poll(async () => page.locator("#workers tr").count(), { timeout: 10_000 })
        .toBe(2);
      expect(await page.locator("#workers").textContent()).toContain("ring-a");
      expect(await page.locator("#events").textContent()).toContain("joined");
      expect(Number(await page.locator("#rate").textContent())).toBeGreaterThan(0);

      if (SCREENSHOT) {
        // Enough of the run for the curves to say something.
        await page.waitForFunction(
          () => Number(document.getElementById("step")!.textContent) >= 1200,
          undefined,
          { timeout: 90_000 },
        );
        await page.waitForTimeout(600); // the next chart frame and sample
        await page.screenshot({ path: SHOT_PATH, fullPage: true });
      }
      expect(errors).toEqual([]);
      expect(foreign).toEqual([]);
    },
  );
});
