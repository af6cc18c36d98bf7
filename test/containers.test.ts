// The images and the Compose stack, built and run for real with podman and no
// registry: a Node 20 base image made here (debootstrap + the node binary these
// tests run on, cached by content hash), Dockerfile.cpu and Dockerfile.gpu
// built from this checkout with npm packages from the local npm cache, and the
// services of deploy/compose.yaml started as that file says, in a pod whose
// only network is its own loopback. Skipped, with one line saying why, where
// podman, runc, catatonit, debootstrap or namespaces are missing.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAgon, tempDir } from "./helpers/cli.js";
import { type Compose, healthCommand, loadCompose, podmanRunArgs } from "./helpers/compose.js";
import {
  type BaseImage,
  baseImage,
  buildSmall,
  imageConfig,
  imageSize,
  podman,
  podmanOk,
  removeLeftovers,
  setUpPodman,
  untag,
  whyNoContainers,
} from "./helpers/podman.js";

const ROOT = resolve(import.meta.dirname, "..");
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  bin: { agon: string };
};
/** Per run, so runs from several checkouts on one machine never share a tag, pod or volume. */
const TAG = `agon-test-${process.pid}`;
const CPU = `localhost/agon-cpu:${TAG}`;
const GPU = `localhost/agon-gpu:${TAG}`;
/** The host's npm cache (npm exports npm_config_cache to `npm test`). */
const NPM_CACHE = process.env.npm_config_cache ?? join(homedir(), ".npm");

/** A tiny ring GAN that checkpoints often: the coordinator is killed after its first checkpoint. */
const STEPS = 80;
const EVERY = 20;
const RUN_YAML = `run: { id: compose, dir: runs/compose }
seed: 3
model: { name: mlp, latentDim: 4, gHidden: [16, 16], dHidden: [16, 16] }
dataset: { name: ring, size: 600 }
shards: 6
batch: 36
steps: ${STEPS}
checkpoint: { every: ${EVERY}, keep: 2 }
samples: { every: 60, count: 16 }
`;

const log = (line: string) => console.log(line);
const mb = (bytes: number) => `${Math.round(bytes / 1e6)} MB`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The last line of a command's stdout, parsed: agon's --json result. */
function lastJson<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as T;
}

const skip = whyNoContainers();
if (skip) console.log(`containers: skipped: ${skip}`);

describe.skipIf(skip !== null)("containers (podman, no registry)", () => {
  const tmp = tempDir("agon-containers-");
  const runYaml = join(tmp, "run.yaml");
  const hostsFile = join(tmp, "hosts");
  const token = join(tmp, "join-token");
  const pod = TAG;
  let probeFailed: string | null = null;
  let base: BaseImage;
  let compose: Compose;
  let reference: Promise<{ G: string; D: string }>;
  const timings: string[] = [];

  /** Builds a Dockerfile of deploy/docker from this checkout, offline, from the npm cache. */
  async function buildAgon(dockerfile: string, tag: string, args: string[]): Promise<void> {
    const started = Date.now();
    await podmanOk(
      [
        "build",
        "--pull=never",
        "-v",
        `${NPM_CACHE}:/npm-cache:O`,
        "--build-arg",
        `NODE_IMAGE=${base.ref}`,
        "--build-arg",
        "NPM_OFFLINE=1",
        // No network here, so no apt-get: the cpu image computes on wasm.
        "--build-arg",
        "OPENBLAS=",
        ...args,
        "-f",
        join(ROOT, "deploy/docker", dockerfile),
        "-t",
        tag,
        ROOT,
      ],
      { timeoutMs: 900_000 },
    );
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    timings.push(`${dockerfile} ${seconds} s, ${mb(await imageSize(tag))}`);
  }

  beforeAll(async () => {
    setUpPodman();
    await removeLeftovers();
    base = await baseImage(log);
    timings.push(`base ${base.built ? "built" : "cached"} ${base.seconds.toFixed(1)} s`);
    const probe = await podman(["run", "--rm", "--network=none", base.ref, "true"]);
    if (probe.code !== 0) {
      probeFailed = `podman cannot run a container: ${probe.stderr.trim().split("\n").at(-1)}`;
      console.log(`containers: skipped: ${probeFailed}`);
      return;
    }
    writeFileSync(runYaml, RUN_YAML);
    writeFileSync(token, `${"ab".repeat(32)}\n`, { mode: 0o644 });
    reference = (async () => {
      const r = await runAgon([
        "train",
        "-c",
        runYaml,
        "--backend",
        "wasm",
        "--run-dir",
        join(tmp, "ref"),
        "--json",
      ]);
      if (r.code !== 0) throw new Error(`agon train on the host failed: ${r.stderr}`);
      return lastJson<{ hashes: { G: string; D: string } }>(r.stdout).hashes;
    })();
    reference.catch(() => {});
    // What compose.yaml says, with this run's images, run config and worker backend.
    compose = loadCompose(join(ROOT, "deploy/compose.yaml"), {
      TAG,
      RUN_CONFIG: runYaml,
      WORKER_BACKEND: "wasm",
    });
    const names = Object.keys(compose.services);
    writeFileSync(hostsFile, `127.0.0.1 localhost ${names.join(" ")}\n`);

    // Stand-ins for registry images: NATS (Debian's nats-server) and an empty CUDA image.
    await buildSmall(
      `localhost/agon-test-nats:${TAG}`,
      `FROM ${base.ref}\nCOPY nats-server /usr/local/bin/nats-server\n`,
      { "nats-server": natsServerPath() },
    );
    await buildSmall(
      `localhost/agon-test-cuda:${TAG}`,
      `FROM ${base.ref}
RUN mkdir -p /usr/local/cuda-11.2/targets/x86_64-linux/lib \\
 && echo "stand-in: no CUDA" > /usr/local/cuda-11.2/targets/x86_64-linux/lib/STAND-IN \\
 && echo "stand-in: no cuDNN" > /usr/lib/x86_64-linux-gnu/libcudnn.STAND-IN
`,
    );
    await buildAgon("Dockerfile.cpu", CPU, ["--network=none"]);
    // apt-get (libvulkan1) needs Debian's mirror; tfjs-node-gpu downloads libtensorflow, so it is left out.
    await buildAgon("Dockerfile.gpu", GPU, [
      "--network=host",
      "--build-arg",
      `NODE_BUILD_IMAGE=${base.ref}`,
      "--build-arg",
      `CUDA_IMAGE=localhost/agon-test-cuda:${TAG}`,
      "--build-arg",
      "TFJS_NODE_GPU=",
    ]);
    log(`containers: ${timings.join("; ")}`);
  }, 1_800_000);

  afterAll(async () => {
    if (skip || !base) return;
    await podman(["pod", "rm", "-f", pod]);
    const volumes = Object.keys(compose?.volumes ?? {}).map((v) => `${TAG}_${v}`);
    if (volumes.length > 0) await podman(["volume", "rm", "-f", ...volumes]);
    // Untagged, the layers stay as the next build's cache.
    await untag([CPU, GPU, `localhost/agon-test-nats:${TAG}`, `localhost/agon-test-cuda:${TAG}`]);
  }, 120_000);

  /** Runs replica `n` of one service of the Compose file in the pod; its container's name. */
  async function up(service: string, n = 1): Promise<string> {
    const name = `${TAG}-${service}-${n}`;
    await podmanOk([
      "run",
      ...podmanRunArgs(compose, service, {
        project: TAG,
        pod,
        hostsFile,
        name,
        secretFiles: { join_token: token },
        images: { "nats:2.10-alpine": `localhost/agon-test-nats:${TAG}` },
      }),
    ]);
    return name;
  }

  /** The pod (the compose network: one loopback) with NATS running in it. */
  let natsUp: Promise<void> | undefined;
  function podWithNats(): Promise<void> {
    natsUp ??= (async () => {
      await podmanOk(["pod", "create", "--name", pod, "--network", "none", "--share", "net"]);
      for (const v of Object.keys(compose.volumes ?? {}))
        await podmanOk(["volume", "create", `${TAG}_${v}`]);
      const nats = await up("nats");
      // Its health check (wget) needs a tool the stand-in lacks; its log says when it is up.
      const until = Date.now() + 30_000;
      for (;;) {
        const out = await podman(["logs", nats]);
        if (`${out.stdout}${out.stderr}`.includes("Server is ready")) break;
        if (Date.now() > until) throw new Error(`nats did not start: ${out.stderr}`);
        await sleep(200);
      }
    })();
    return natsUp;
  }

  it("the CPU image runs agon as uid 10001 through the `agon` entrypoint, on the ports the Compose file uses", async (ctx) => {
    if (probeFailed) return ctx.skip();
    const config = await imageConfig(CPU);
    expect(config.User).toBe("10001:10001");
    expect(config.Entrypoint).toEqual(["agon"]);
    expect(config.Cmd).toEqual(["--help"]);
    expect(Object.keys(config.ExposedPorts).sort()).toEqual(["7070/tcp", "8080/tcp"]);
    const env = compose.services.coordinator.environment as Record<string, string>;
    for (const address of [env.AGON_LISTEN, env.AGON_HTTP]) {
      expect(config.ExposedPorts).toHaveProperty(`${address.split(":").at(-1)}/tcp`);
    }
    const help = await podman(["run", "--rm", "--network=none", CPU]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: agon /);
    const inside = await podmanOk([
      "run",
      "--rm",
      "--network=none",
      "--entrypoint",
      "sh",
      CPU,
      "-c",
      'id -u; id -g; readlink -f "$(command -v agon)"; node -p process.version; ls node_modules/webgpu 2>&1 | head -1',
    ]);
    const [uid, gid, bin, node, webgpu] = inside.trim().split("\n");
    expect([uid, gid]).toEqual(["10001", "10001"]);
    expect(bin, "agon on PATH is the package's bin").toBe(`/app/${PKG.bin.agon}`);
    expect(node).toBe(process.version);
    expect(webgpu, "the CPU image leaves out webgpu").toMatch(/No such file/);
  });

  it("the GPU image (CUDA stand-in, no tfjs-node-gpu) has webgpu and libvulkan1, and says in one line why a GPU backend cannot load", async (ctx) => {
    if (probeFailed) return ctx.skip();
    const config = await imageConfig(GPU);
    expect(config.User).toBe("10001:10001");
    expect(config.Entrypoint).toEqual(["agon"]);
    expect(Object.keys(config.ExposedPorts).sort()).toEqual(["7070/tcp", "8080/tcp"]);
    expect(config.Env).toContain("NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics");
    const inside = await podmanOk([
      "run",
      "--rm",
      "--network=none",
      "--entrypoint",
      "sh",
      GPU,
      "-c",
      [
        "id -u",
        'readlink -f "$(command -v agon)"',
        "ls node_modules/webgpu/dist/linux-x64/",
        "ls /usr/lib/x86_64-linux-gnu/ | grep '^libvulkan.so.1$'",
        "cat /usr/local/cuda/lib64/STAND-IN /usr/local/cudnn/lib64/libcudnn.STAND-IN",
        "ls -d node_modules/@tensorflow/tfjs-node-gpu 2>&1 | head -1",
      ].join("; "),
    ]);
    const lines = inside.trim().split("\n");
    expect(lines[0]).toBe("10001");
    expect(lines[1]).toBe(`/app/${PKG.bin.agon}`);
    expect(lines).toContain("dawn.node");
    expect(lines).toContain("libvulkan.so.1");
    expect(lines).toContain("stand-in: no CUDA");
    expect(lines).toContain("stand-in: no cuDNN");
    expect(lines.at(-1)).toMatch(/No such file/);
    // No GPU in this container: each GPU backend fails with one line that says why.
    const train = [
      "train",
      "-c",
      "docs/examples/ring.yaml",
      "--steps",
      "2",
      "--run-dir",
      "/var/lib/agon/run",
    ];
    const webgpu = await podman([
      "run",
      "--rm",
      "--network=none",
      GPU,
      ...train,
      "--backend",
      "webgpu",
    ]);
    expect(webgpu.code).toBe(1);
    expect(webgpu.stderr.trim().split("\n").at(-1)).toMatch(
      /^agon: error: webgpu: no GPU adapter found/,
    );
    expect(webgpu.stderr, "libvulkan1 is in the image").not.toMatch(
      /libvulkan\.so\.1: cannot open/,
    );
    const tf = await podman([
      "run",
      "--rm",
      "--network=none",
      GPU,
      ...train,
      "--backend",
      "tensorflow",
    ]);
    expect(tf.code).toBe(1);
    expect(tf.stderr.trim()).toMatch(/^agon: error: backend 'tensorflow' needs native TensorFlow/);
    expect(tf.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("agon train and agon local inside the CPU image give the hashes of agon train on the host", async (ctx) => {
    if (probeFailed) return ctx.skip();
    const mount = ["-v", `${runYaml}:/etc/agon/run.yaml:ro`];
    const train = await podman([
      "run",
      "--rm",
      "--network=none",
      ...mount,
      CPU,
      "train",
      "-c",
      "/etc/agon/run.yaml",
      "--backend",
      "wasm",
      "--run-dir",
      "/var/lib/agon/run",
      "--json",
    ]);
    expect(train.code, train.stderr).toBe(0);
    const ref = await reference;
    expect(lastJson<{ hashes: unknown }>(train.stdout).hashes).toEqual(ref);
    // agon local: a coordinator and 2 workers as processes of one container, on the pod's NATS.
    await podWithNats();
    const local = await podman([
      "run",
      "--rm",
      "--pod",
      pod,
      "-v",
      `${hostsFile}:/etc/hosts:ro`,
      ...mount,
      CPU,
      "local",
      "-c",
      "/etc/agon/run.yaml",
      "--workers",
      "2",
      "--nats",
      "nats://nats:4222",
      "--backend",
      "wasm",
      "--run-dir",
      "/var/lib/agon/run",
      "--json",
    ]);
    expect(local.code, local.stderr).toBe(0);
    expect(lastJson<{ hashes: unknown }>(local.stdout).hashes).toEqual(ref);
  }, 300_000);

  it("the Compose stack trains to agon train's hashes; its coordinator, killed mid-run, is restarted by its restart policy and resumes from its volume", async (ctx) => {
    if (probeFailed) return ctx.skip();
    await podWithNats();
    const coordinator = await up("coordinator");
    // depends_on: service_healthy: the workers start once the coordinator's health check passes.
    const health = healthCommand(compose, "coordinator")!;
    let until = Date.now() + 120_000;
    while ((await podman(["exec", coordinator, ...health])).code !== 0) {
      if (Date.now() > until)
        throw new Error(`coordinator not healthy: ${(await podman(["logs", coordinator])).stderr}`);
      await sleep(500);
    }
    // `docker compose up --scale worker=2`.
    const workers = [await up("worker", 1), await up("worker", 2)];
    // Every process of the agon containers runs as uid 10001.
    for (const c of [coordinator, ...workers]) {
      const users = (await podmanOk(["top", c, "huser"])).trim().split("\n").slice(1);
      expect(users.length, c).toBeGreaterThan(0);
      expect(new Set(users), c).toEqual(new Set(["10001"]));
    }

    // Kill it as a crash would (SIGKILL to the container's init, from the host)
    // right after its first checkpoint, so most of the run is left.
    const pid = Number(
      (await podmanOk(["inspect", "--format", "{{.State.Pid}}", coordinator])).trim(),
    );
    const runVolume = (
      await podmanOk(["volume", "inspect", "--format", "{{.Mountpoint}}", `${TAG}_run`])
    ).trim();
    const runDir = join(runVolume, "run");
    const killAt = EVERY;
    until = Date.now() + 180_000;
    while (!checkpoints(runDir).some((s) => s >= killAt)) {
      if (Date.now() > until) throw new Error(`no checkpoint at step ${killAt}`);
      await sleep(50);
    }
    process.kill(pid, "SIGKILL");
    until = Date.now() + 60_000;
    while (
      Number((await podmanOk(["inspect", "--format", "{{.RestartCount}}", coordinator])).trim()) < 1
    ) {
      if (Date.now() > until) throw new Error("the restart policy did not restart the coordinator");
      await sleep(200);
    }
    const exit = await podmanOk(["wait", coordinator], { timeoutMs: 300_000 });
    const logs = await podman(["logs", coordinator]);
    expect(exit.trim(), logs.stderr).toBe("0");
    expect(
      Number((await podmanOk(["inspect", "--format", "{{.RestartCount}}", coordinator])).trim()),
    ).toBe(1);
    const resumed = /resumed from \S+ckpt-(\d+) \(step (\d+)/.exec(logs.stderr);
    expect(resumed, logs.stderr).not.toBeNull();
    expect(Number(resumed![2])).toBeGreaterThanOrEqual(killAt);
    expect(Number(resumed![2]), "killed mid-run").toBeLessThan(STEPS);
    for (const w of workers)
      expect((await podmanOk(["wait", w], { timeoutMs: 120_000 })).trim(), w).toBe("0");

    const ref = await reference;
    const done = lastJson<{ event: string; step: number; hashes: unknown }>(logs.stdout);
    expect(done).toMatchObject({ event: "done", step: STEPS, hashes: ref });
    const summary = JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")) as {
      hashes: unknown;
    };
    expect(summary.hashes).toEqual(ref);

    // Read-only roots, as the Compose file says: they wrote only to their volumes (the workers: nowhere).
    for (const c of [coordinator, ...workers]) {
      expect(
        (await podmanOk(["inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", c])).trim(),
        c,
      ).toBe("true");
      // The runtime makes the mount points of its bind mounts (and their directories); nothing else may change.
      const mounts = (
        JSON.parse(await podmanOk(["inspect", "--format", "{{json .Mounts}}", c])) as {
          Destination: string;
        }[]
      ).map((m) => m.Destination);
      const changed = (await podmanOk(["diff", c]))
        .trim()
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => line.slice(2))
        .filter((path) => !mounts.some((m) => m === path || m.startsWith(`${path}/`)));
      expect(changed, `${c} wrote outside its volumes`).toEqual([]);
    }
    for (const file of walk(runVolume)) {
      const st = statSync(file);
      expect([st.uid, st.gid], file).toEqual([10001, 10001]);
    }
  }, 600_000);
});

/** The steps of the checkpoints in a run dir (ckpt-00000040 → 40). */
function checkpoints(runDir: string): number[] {
  try {
    return readdirSync(runDir)
      .map((n) => /^ckpt-(\d+)$/.exec(n))
      .filter((m) => m !== null)
      .map((m) => Number(m[1]));
  } catch {
    return [];
  }
}

/** Every path under a directory, itself included. */
function walk(dir: string): string[] {
  const out = [dir];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

/** Debian's nats-server (the one the other tests use), for the NATS stand-in image. */
function natsServerPath(): string {
  for (const p of ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]) {
    try {
      if (statSync(p).isFile()) return p;
    } catch {}
  }
  throw new Error("nats-server not found (Debian: apt-get install nats-server)");
}
