// Messages for people: every error the CLI shows is one line that says what
// failed, for which file or address, and what to do, in our words, never a
// library's internal wording (zod's "Invalid input", libvips' "Input buffer has
// corrupt header", gRPC's "Name resolution failed", a bare ENOENT) or a field
// left empty after its colon.
import { mkdirSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { runAgon, tempDir } from "./helpers/cli.js";

const dir = tempDir("agon-messages-");
const ring = ["--dataset", "ring", "--model", "mlp", "--steps", "1", "--backend", "wasm"];
/** Library wording that must never reach a person (each seen in an error line before). */
const RAW =
  /ZodError|Invalid input|received (string|undefined|number)|Input buffer|Vips\w*:|Name resolution failed|No connection established|Resolution note|\[object Object\]|\bundefined\b|: E[A-Z]{3,}$/;

/** A loopback port this test holds, for the "address in use" case. */
let busyPort = 0;

/** [what, argv, the error line's expected content, exit code]. */
const CASES: Array<[string, () => string[], RegExp, number]> = [
  [
    "a config file that is not YAML",
    () => ["train", "-c", join(dir, "syntax.yaml"), "--run-dir", join(dir, "r")],
    /syntax\.yaml is not valid YAML\/JSON: .* at line 2, column \d+; fix the file$/,
    2,
  ],
  [
    "config fields of the wrong type, or missing",
    () => ["train", "-c", join(dir, "types.yaml"), "--run-dir", join(dir, "r")],
    /types\.yaml: model: missing \(required\); .*steps: expected a number, got "ten"/,
    2,
  ],
  [
    "a --set value out of range",
    () => ["train", ...ring, "--set", "optimizer.g.lr=-1", "--run-dir", join(dir, "r")],
    /optimizer\.g\.lr \(from --set\): must be [>≥] 0, got -1/,
    2,
  ],
  [
    "a --set without a value",
    () => ["train", ...ring, "--set", "steps", "--run-dir", join(dir, "r")],
    /^agon: error: --set steps: expected key\.path=value \(e\.g\. steps=2000\)$/,
    2,
  ],
  [
    "a shorthand flag and --set that disagree (neither silently wins)",
    () => ["train", ...ring, "--set", "steps=3", "--run-dir", join(dir, "r")],
    /--steps 1 and --set steps=3 both set steps, to different values; give it once$/,
    2,
  ],
  [
    "an image folder where a prepared dataset belongs",
    () => ["eval", "fit-features", "--dataset", join(dir, "images")],
    /images is an image folder, not a prepared dataset \(no manifest\.json\); run `agon data prepare .*images --out .*images-prepared`/,
    2,
  ],
  [
    "a --listen address already in use",
    () => [
      "coordinator",
      ...ring,
      "--no-nats",
      "--listen",
      `127.0.0.1:${busyPort}`,
      "--run-dir",
      join(dir, "busy"),
    ],
    /^agon: error: --listen 127\.0\.0\.1:\d+: cannot listen: the address is already in use; choose another port/,
    2,
  ],
  [
    "agon export --out an existing file",
    () => ["export", "--checkpoint", join(dir, "r"), "--out", join(dir, "syntax.yaml")],
    /--out .*syntax\.yaml: is a file; give a directory \(export writes model\.json and weights\.bin into it\)$/,
    2,
  ],
  [
    "agon sample --out in a format it cannot write",
    () => ["sample", "--checkpoint", join(dir, "r"), "--out", join(dir, "grid.gif")],
    /--out .*grid\.gif: name the file \.png, \.jpg or \.webp/,
    2,
  ],
  [
    "agon sample on a prepared dataset",
    () => ["sample", "--checkpoint", join(dir, "prep"), "--out", join(dir, "grid.png")],
    /prep: is a prepared dataset \(agon data prepare\), not a checkpoint; give a run dir/,
    2,
  ],
  [
    "a flag value commander rejects (worker count 0)",
    () => ["local", ...ring, "--workers", "0", "--run-dir", join(dir, "r")],
    /^agon: error: --workers "0": must be a positive integer; see --help$/,
    2,
  ],
  [
    "a config path that is a directory",
    () => ["train", "-c", dir, "--run-dir", join(dir, "r")],
    /cannot read config file .*: it is a directory, not a file$/,
    2,
  ],
  [
    "a missing config file",
    () => ["train", "-c", join(dir, "none.yaml"), "--run-dir", join(dir, "r")],
    /cannot read config file .*none\.yaml: no such file or directory$/,
    2,
  ],
  [
    "an image the decoder rejects",
    () => [
      "train",
      "--dataset",
      "folder",
      "--data-path",
      join(dir, "images"),
      "--model",
      "mlp",
      "--steps",
      "1",
      "--run-dir",
      join(dir, "r"),
    ],
    /images\/bad\.jpg could not be decoded as JPEG: the data is corrupt or truncated \([^)]+\); fix or remove the file$/,
    2,
  ],
  [
    "a source folder whose every image is broken",
    () => ["data", "prepare", join(dir, "broken"), "--out", join(dir, "prepared")],
    /broken: no usable images, all 2 files were skipped \(first: \S+: .+\); fix or remove them/,
    2,
  ],
  [
    "a prepared dataset without its manifest",
    () => [
      "train",
      "--dataset",
      "prepared",
      "--data-path",
      join(dir, "empty"),
      "--model",
      "mlp",
      "--steps",
      "1",
      "--run-dir",
      join(dir, "r"),
    ],
    /cannot read .*empty\/manifest\.json \(no such file or directory\); run `agon data prepare/,
    2,
  ],
  [
    "a checkpoint dir that is not an agon checkpoint",
    () => ["sample", "--checkpoint", join(dir, "ckpt"), "--out", join(dir, "s.png")],
    /ckpt: not an agon checkpoint \(its manifest\.json has no format\); give a ckpt-NNNNNNNN dir/,
    2,
  ],
  [
    "a missing join token file",
    () => [
      "worker",
      "--coordinator",
      "127.0.0.1:1",
      "--nats",
      "nats://127.0.0.1:1",
      "--join-token-file",
      join(dir, "no-token"),
    ],
    /cannot read join token file .*no-token: no such file or directory$/,
    2,
  ],
  [
    "a coordinator address nobody listens on",
    () => [
      "worker",
      "--coordinator",
      "127.0.0.1:1",
      "--nats",
      "nats://127.0.0.1:1",
      "--coordinator-timeout",
      "1s",
      "--backend",
      "wasm",
    ],
    /no coordinator at 127\.0\.0\.1:1 for \d+ s \(--coordinator-timeout\); last error: connection refused; check --coordinator/,
    1,
  ],
  [
    "a coordinator host name that does not resolve",
    () => [
      "worker",
      "--coordinator",
      "no-such-host.invalid:7070",
      "--nats",
      "nats://127.0.0.1:1",
      "--coordinator-timeout",
      "1s",
      "--backend",
      "wasm",
    ],
    /no coordinator at no-such-host\.invalid:7070 .*last error: host name not found; check --coordinator/,
    1,
  ],
  [
    "a NATS address nobody listens on",
    () => ["watch", "--nats", "nats://127.0.0.1:1", "--run", "x"],
    /cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: connection refused .*followed on its coordinator's dashboard/,
    2,
  ],
  [
    "agon local whose coordinator fails at start (its error said once, not also forwarded)",
    () => [
      "local",
      "--workers",
      "1",
      "--no-nats",
      "--dataset",
      "prepared",
      "--set",
      `dataset.path=${join(dir, "nope")}`,
      "--model",
      "dcgan",
      "--steps",
      "1",
      "--backend",
      "wasm",
      "--run-dir",
      join(dir, "r-local"),
    ],
    /coordinator exited with code 2 before the run finished: prepared dataset: cannot read .*nope\/manifest\.json \(no such file or directory\); run `agon data prepare SOURCE --out /,
    2,
  ],
];

beforeAll(async () => {
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
  busyPort = (busy.address() as AddressInfo).port;
  busy.unref();
  writeFileSync(join(dir, "syntax.yaml"), "steps: [1\nbatch: 3\n");
  writeFileSync(join(dir, "types.yaml"), "dataset: { name: ring }\nsteps: ten\n");
  mkdirSync(join(dir, "images"));
  mkdirSync(join(dir, "broken"));
  mkdirSync(join(dir, "ckpt"));
  mkdirSync(join(dir, "empty"));
  mkdirSync(join(dir, "prep"));
  writeFileSync(join(dir, "prep", "manifest.json"), '{"format":"agon-prepared-dataset"}');
  writeFileSync(join(dir, "ckpt", "manifest.json"), "{}");
  const png = await sharp({
    create: { width: 8, height: 8, channels: 3, background: { r: 9, g: 9, b: 9 } },
  })
    .png()
    .toBuffer();
  writeFileSync(join(dir, "images", "good.png"), png);
  // A JPEG header and nothing a decoder can use; a PNG cut after its header.
  const badJpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(50, 7)]);
  writeFileSync(join(dir, "images", "bad.jpg"), badJpeg);
  writeFileSync(join(dir, "broken", "a.jpg"), badJpeg);
  writeFileSync(join(dir, "broken", "b.png"), png.subarray(0, 40));
});

describe("error messages are for people", () => {
  it("each error path prints one agon: error line naming the file or address and what to do, in our words", async () => {
    // Four at a time: quick, and gentle on a loaded 2-core machine.
    const results: Awaited<ReturnType<typeof runAgon>>[] = [];
    for (let i = 0; i < CASES.length; i += 4) {
      results.push(...(await Promise.all(CASES.slice(i, i + 4).map(([, a]) => runAgon(a())))));
    }
    CASES.forEach(([what, , expected, code], i) => {
      const r = results[i];
      const lines = r.stderr.trim().split("\n");
      const last = lines.at(-1) ?? "";
      expect(r.code, `${what}: ${r.stderr}`).toBe(code);
      // One error line, the last (a child's forwarded `[name] agon: error:` counts too);
      // before it at most an informational backend line.
      expect(
        lines.filter((l) => l.includes("agon: error: ")),
        what,
      ).toEqual([last]);
      expect(r.stderr, `${what}: a stack trace`).not.toMatch(/\n\s+at |^\s*at /m);
      expect(last, what).toMatch(expected);
      expect(last, `${what}: library wording`).not.toMatch(RAW);
      // No field left empty: nothing ends in a colon, no colon before a separator.
      expect(last, `${what}: an empty field`).not.toMatch(/:\s*$|:\s*[;,)]|\(\s*\)/);
    });
  });
});

describe("a value from the environment is blamed on its variable", () => {
  it("AGON_SET and AGON_<FLAG> name themselves, not the flag nobody typed", async () => {
    const [set, batch] = await Promise.all([
      runAgon(["train", ...ring, "--run-dir", join(dir, "env-set")], {
        env: { ...process.env, AGON_SET: "steps=3" },
      }),
      runAgon(["train", "--dataset", "ring", "--model", "mlp", "--steps", "1", "--shards", "2"], {
        env: { ...process.env, AGON_BATCH: "7", AGON_RUN_DIR: join(dir, "env-batch") },
      }),
    ]);
    expect(set.code, set.stderr).toBe(2);
    expect(set.stderr.trim().split("\n").at(-1)).toMatch(
      /--steps 1 and AGON_SET=steps=3 both set steps, to different values; give it once$/,
    );
    expect(batch.code, batch.stderr).toBe(2);
    expect(batch.stderr.trim().split("\n").at(-1)).toMatch(
      /batch \(from AGON_BATCH\): must be a multiple of shards/,
    );
  });
});
