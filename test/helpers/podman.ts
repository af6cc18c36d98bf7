// Podman for the container test, kept apart from the machine's own podman: its
// storage, settings and state live under one cache dir (TEST_CONTAINER_CACHE,
// default /var/cache/agon-test), so images built once stay for the next run
// and nothing the user keeps in podman is touched. No registry is reached: the
// base image is made here (debootstrap + the node binary the tests run on).
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  createReadStream,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";

/** Where the podman storage (and so the cached base image) lives. */
export const CACHE = process.env.TEST_CONTAINER_CACHE ?? "/var/cache/agon-test";
const CONF = join(CACHE, "containers");
/** Run-time state (per boot) of this storage: podman's lock files, conmon sockets, events. */
const RUN_ROOT = `/run/agon-test-${createHash("sha256").update(CACHE).digest("hex").slice(0, 8)}`;

/** Debian release and mirror of the base image (TEST_DEBIAN_MIRROR overrides the mirror). */
const SUITE = "bookworm";
const MIRROR = process.env.TEST_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
/** Bump when baseImage() builds the image differently: the cache key changes with it. */
const BASE_RECIPE = "minbase+node+npm v1";
const BASE_REPO = "localhost/agon-node-base";

/** The environment every podman call gets: this test's storage and settings only. */
export function podmanEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CONTAINERS_CONF: join(CONF, "containers.conf"),
    CONTAINERS_STORAGE_CONF: join(CONF, "storage.conf"),
    // The machine's registries are never asked: every image here is local.
    CONTAINERS_REGISTRIES_CONF: join(CONF, "registries.conf"),
  };
}

/**
 * Why containers cannot run here (one line), or null when they can as far as
 * can be told without an image: root, podman, runc, catatonit (compose's
 * `init: true`), debootstrap, and new namespaces. The first container run
 * (probe()) tells the rest.
 */
export function whyNoContainers(): string | null {
  if (process.getuid?.() !== 0) return "needs root (rootless podman is not set up by this test)";
  const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
  const missing = ["podman", "runc", "debootstrap"].filter((c) => !has(c));
  if (!existsSync("/usr/libexec/podman/catatonit") && !has("catatonit")) missing.push("catatonit");
  if (missing.length > 0) {
    return `${missing.join(", ")} not installed (Debian: apt-get install --no-install-recommends ${missing.join(" ")})`;
  }
  const ns = spawnSync("unshare", [
    "--fork",
    "--pid",
    "--mount",
    "--net",
    "--uts",
    "--ipc",
    "true",
  ]);
  if (ns.status !== 0) {
    return `cannot create namespaces: ${(ns.stderr?.toString() || ns.error?.message || "unshare failed").trim()}`;
  }
  return null;
}

/**
 * Writes this test's containers.conf and storage.conf. runc (not crun, which
 * rejects hybrid cgroup hierarchies), cgroupfs (no systemd needed), and no
 * default ulimits (sandboxes refuse raising RLIMIT_NPROC/NOFILE).
 */
export function setUpPodman(): void {
  mkdirSync(CONF, { recursive: true });
  writeFileSync(
    join(CONF, "containers.conf"),
    [
      "[containers]",
      "default_ulimits = []",
      "[engine]",
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `tmp_dir = "${RUN_ROOT}/libpod"`,
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(CONF, "storage.conf"),
    [
      "[storage]",
      'driver = "overlay"',
      `graphroot = "${join(CONF, "storage")}"`,
      `runroot = "${RUN_ROOT}/storage"`,
      "",
    ].join("\n"),
  );
  writeFileSync(join(CONF, "registries.conf"), "unqualified-search-registries = []\n");
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command (podman by default) with the test's podman environment. */
export function sh(
  argv: string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      env: podmanEnv(),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    child.stdin.end(opts.input ?? "");
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 600_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function podman(args: string[], opts: { timeoutMs?: number } = {}): Promise<Run> {
  return sh(["podman", ...args], opts);
}

/** podman that must succeed: its stdout, or an error with the command and its last stderr lines. */
export async function podmanOk(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await podman(args, opts);
  if (r.code !== 0) {
    const tail = r.stderr.trim().split("\n").slice(-15).join("\n");
    throw new Error(`podman ${args.join(" ")} exited ${r.code}:\n${tail}`);
  }
  return r.stdout;
}

/** sha256 of a file, hex. */
function fileHash(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (b) => h.update(b))
      .on("end", () => resolve(h.digest("hex")))
      .on("error", reject);
  });
}

/** The npm that belongs to this node (official and NodeSource layouts: <prefix>/lib/node_modules/npm). */
function npmDir(): string {
  const beside = join(dirname(realpathSync(process.execPath)), "../lib/node_modules/npm");
  if (existsSync(join(beside, "package.json"))) return beside;
  const root = spawnSync("npm", ["root", "-g"]).stdout?.toString().trim();
  const global = root ? join(root, "npm") : "";
  if (global && existsSync(join(global, "package.json"))) return global;
  throw new Error(`cannot find npm next to ${process.execPath}`);
}

export interface BaseImage {
  /** localhost/agon-node-base:<first 16 hex digits of the content hash>. */
  ref: string;
  /** False when the cache had it. */
  built: boolean;
  seconds: number;
}

/**
 * The Node 20 base image, a stand-in for node:20-bookworm-slim: Debian
 * bookworm minbase (debootstrap) with this process's node binary at
 * /usr/local/bin/node and its npm, as the official image lays them out. Cached
 * under a hash of the recipe, the node binary and npm's version, so a machine
 * builds it once (about a minute) until node changes.
 */
export async function baseImage(log: (line: string) => void): Promise<BaseImage> {
  const started = Date.now();
  const npm = npmDir();
  const npmVersion = (
    JSON.parse(readFileSync(join(npm, "package.json"), "utf8")) as { version: string }
  ).version;
  const key = createHash("sha256")
    .update(
      `${BASE_RECIPE}\n${SUITE}\n${MIRROR}\n${await fileHash(process.execPath)}\nnpm ${npmVersion}\n`,
    )
    .digest("hex")
    .slice(0, 16);
  const ref = `${BASE_REPO}:${key}`;
  if ((await podman(["image", "exists", ref])).code === 0) {
    return { ref, built: false, seconds: (Date.now() - started) / 1000 };
  }
  log(
    `containers: building the base image ${ref} (debootstrap ${SUITE} from ${MIRROR}, node ${process.version}, npm ${npmVersion})`,
  );
  const root = join(CACHE, "tmp", `rootfs-${process.pid}`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(dirname(root), { recursive: true });
  try {
    const boot = await sh(["debootstrap", "--variant=minbase", SUITE, root, MIRROR], {
      timeoutMs: 900_000,
    });
    if (boot.code !== 0) {
      const tail = (boot.stderr + boot.stdout).trim().split("\n").slice(-5).join("\n");
      throw new Error(`debootstrap ${SUITE} from ${MIRROR} failed (${boot.code}):\n${tail}`);
    }
    // What an image does not need: the downloaded packages and apt's lists.
    for (const dir of ["var/cache/apt/archives", "var/lib/apt/lists"]) {
      rmSync(join(root, dir), { recursive: true, force: true });
      mkdirSync(join(root, dir, "partial"), { recursive: true });
    }
    const bin = join(root, "usr/local/bin");
    mkdirSync(bin, { recursive: true });
    copyFileSync(process.execPath, join(bin, "node"));
    chmodSync(join(bin, "node"), 0o755);
    cpSync(npm, join(root, "usr/local/lib/node_modules/npm"), {
      recursive: true,
      verbatimSymlinks: true,
    });
    symlinkSync("../lib/node_modules/npm/bin/npm-cli.js", join(bin, "npm"));
    symlinkSync("../lib/node_modules/npm/bin/npx-cli.js", join(bin, "npx"));
    const imported = await sh(
      [
        "bash",
        "-o",
        "pipefail",
        "-c",
        `tar -C "$0" -c . | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["node"]' - "$1"`,
        root,
        ref,
      ],
      { timeoutMs: 600_000 },
    );
    if (imported.code !== 0) throw new Error(`podman import failed: ${imported.stderr.trim()}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  // Older base images (another node) go; one still used by a container stays.
  const tags = (await podmanOk(["images", "--format", "{{.Repository}}:{{.Tag}}", BASE_REPO]))
    .split("\n")
    .filter((t) => t.startsWith(`${BASE_REPO}:`) && t !== ref);
  if (tags.length > 0) await podman(["rmi", ...tags]);
  return { ref, built: true, seconds: (Date.now() - started) / 1000 };
}

/**
 * A tiny image built from a Containerfile text and files, FROM the base
 * (stand-ins for images a registry would provide). Layer caching makes a
 * rebuild with the same inputs instant.
 */
export async function buildSmall(
  tag: string,
  containerfile: string,
  files: Record<string, string> = {},
): Promise<void> {
  const dir = join(CACHE, "tmp", `ctx-${process.pid}-${tag.replace(/\W/g, "_")}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    writeFileSync(join(dir, "Containerfile"), containerfile);
    for (const [name, source] of Object.entries(files)) copyFileSync(source, join(dir, name));
    await podmanOk(["build", "--pull=never", "--network=none", "-t", tag, dir]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** An image's size in bytes, as `podman images` reports it (all layers). */
export async function imageSize(ref: string): Promise<number> {
  return Number((await podmanOk(["image", "inspect", "--format", "{{.Size}}", ref])).trim());
}

/** The parts of an image's config the checks look at. */
export interface ImageConfig {
  User: string;
  Entrypoint: string[];
  Cmd: string[];
  ExposedPorts: Record<string, unknown>;
  Env: string[];
  WorkingDir: string;
}

export async function imageConfig(ref: string): Promise<ImageConfig> {
  return JSON.parse(await podmanOk(["image", "inspect", "--format", "{{json .Config}}", ref]));
}

/**
 * Removes these names (repository:tag) from their images, and only these: an
 * image built alike by another run keeps that run's name.
 */
export async function untag(refs: string[]): Promise<void> {
  for (const ref of refs) await podman(["untag", ref, ref]);
}

/**
 * Removes what earlier runs of this test left behind when they died before
 * cleaning up (pods, volumes and image tags named agon-test-<pid> of a pid
 * no longer alive), and layer-cache images unused for three days.
 */
export async function removeLeftovers(): Promise<void> {
  const dead = (name: string) => {
    const pid = Number(/^agon-test-(\d+)/.exec(name)?.[1]);
    if (!pid || pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  const pods = (await podmanOk(["pod", "ps", "--format", "{{.Name}}"])).split("\n").filter(dead);
  if (pods.length > 0) await podman(["pod", "rm", "-f", ...pods]);
  const volumes = (await podmanOk(["volume", "ls", "--format", "{{.Name}}"]))
    .split("\n")
    .filter(dead);
  if (volumes.length > 0) await podman(["volume", "rm", "-f", ...volumes]);
  const tags = (await podmanOk(["images", "--format", "{{.Repository}}:{{.Tag}}"]))
    .split("\n")
    .filter((t) => dead(t.slice(t.lastIndexOf(":") + 1)));
  await untag(tags);
  await podman(["image", "prune", "-f", "--filter", "until=72h"]);
}
