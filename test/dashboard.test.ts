// The dashboard in a real browser against a real training run: a coordinator
// and two workers (child processes) train a tiny GAN on the ring, the
// coordinator serves the dashboard (--http) from the run's NATS subjects, and headless Chromium
// (playwright-core) must see the step advance and the sample grid load.
// AGON_SCREENSHOT=1 also writes docs/dashboard.png.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
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

  afterAll(async () => {
    await browser?.close();
  });

  it.skipIf(!haveChromium)(
    `shows a live training run in headless Chromium${haveChromium ? "" : ` (skipped: ${CHROMIUM} not found; apt-get install chromium)`}`,
    async () => {
      // The coordinator serves the dashboard itself (--http), before any worker joins.
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
        { http: "127.0.0.1:0" },
      );
      const base = await coord.http;
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
        if (!r.url().startsWith(`${base}/`)) foreign.push(r.url());
      });
      await page.goto(`${base}/`);

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
