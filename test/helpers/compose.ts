// Turns the services of a Compose file into `podman run` arguments, so the
// container test starts what deploy/compose.yaml says (image, command,
// environment, volumes, secrets, user, read-only root, init, restart policy)
// and cannot drift from it. Keys that only Docker's engine or a GPU host acts
// on are named in IGNORED with the reason; any other key fails loudly, so a
// new one in the Compose file has to be taught here first.
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse } from "yaml";

export interface ComposeService {
  image: string;
  command?: string[];
  environment?: Record<string, string> | string[];
  volumes?: string[];
  secrets?: string[];
  read_only?: boolean;
  init?: boolean;
  restart?: string;
  stop_grace_period?: string;
  user?: string;
  tmpfs?: string | string[];
  healthcheck?: { test: string[] | string };
  [key: string]: unknown;
}

export interface Compose {
  name?: string;
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  secrets?: Record<string, { file: string }>;
  /** The directory relative paths in the file are relative to. */
  dir: string;
}

/**
 * Keys of a service that the test does not turn into podman flags, and why.
 * `ports`: the test's containers share a private loopback (a pod with no
 * network), so nothing is published on the host; deploy.test.ts checks the
 * published ports against the listening ones.
 */
export const IGNORED: Record<string, string> = {
  build: "the test builds the images itself, from the same Dockerfiles",
  ports: "no host ports: the containers share one private loopback",
  healthcheck: "run by the test with `podman exec` (healthCommand), as depends_on waits for it",
  depends_on: "the test starts the services in this order",
  deploy: "GPU reservations: no GPU here; the workers run the wasm backend (WORKER_BACKEND)",
};

/**
 * Compose's variable interpolation: `${X:-default}` (default when X is unset
 * or empty), `${X-default}` (when unset), `${X}`, `$$`. Throws on `${X}` with X
 * unset, as Compose warns and substitutes "".
 */
export function interpolate(value: unknown, vars: Record<string, string | undefined>): unknown {
  if (typeof value === "string") {
    return value.replace(/\$\$|\$\{([A-Za-z_]\w*)(?:(:?-)([^}]*))?\}/g, (all, name, op, dflt) => {
      if (all === "$$") return "$";
      const v = vars[name];
      if (op === ":-") return v ? v : dflt;
      if (op === "-") return v ?? dflt;
      if (v === undefined) throw new Error(`compose: \${${name}} is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v) => interpolate(v, vars));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, vars)]));
  }
  return value;
}

/** Reads and interpolates a Compose file; `vars` are its variables (TAG, RUN_CONFIG, ...). */
export function loadCompose(file: string, vars: Record<string, string | undefined>): Compose {
  const raw = parse(readFileSync(file, "utf8")) as Omit<Compose, "dir">;
  return { ...(interpolate(raw, vars) as Omit<Compose, "dir">), dir: dirname(file) };
}

/** A Go-style duration ("60s", "1m30s") in whole seconds. */
function seconds(duration: string): number {
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit as "ms" | "s" | "m" | "h"];
  }
  return Math.ceil(total);
}

export interface PodmanOptions {
  /** Prefix of container and volume names: Compose's project name. */
  project: string;
  /** The pod whose network the containers share (stands for the compose network). */
  pod: string;
  /** A hosts file naming every service at 127.0.0.1 (Compose's service DNS). */
  hostsFile: string;
  /** Replacement files for top-level secrets (by secret name). */
  secretFiles?: Record<string, string>;
  /** Replacement images (by the Compose file's image), for images no registry can give here. */
  images?: Record<string, string>;
  /** The container's name; default <project>-<service>-1. */
  name?: string;
}

/**
 * `podman run -d` arguments (without `podman run`) for one service, then its
 * image and command. Named volumes become <project>_<name>; bind mounts are
 * relative to the Compose file; secrets are files mounted read-only at
 * /run/secrets/<name>, as Compose mounts file secrets.
 */
export function podmanRunArgs(compose: Compose, service: string, opts: PodmanOptions): string[] {
  const svc = compose.services[service];
  if (!svc) throw new Error(`compose: no service ${service}`);
  const args = [
    "-d",
    "--name",
    opts.name ?? `${opts.project}-${service}-1`,
    "--pod",
    opts.pod,
    "-v",
    `${opts.hostsFile}:/etc/hosts:ro`,
  ];
  for (const [key, value] of Object.entries(svc)) {
    switch (key) {
      case "image":
      case "command":
        break;
      case "environment": {
        const env = Array.isArray(value)
          ? (value as string[])
          : Object.entries(value as Record<string, string>).map(([k, v]) => `${k}=${v}`);
        for (const e of env) args.push("-e", e);
        break;
      }
      case "volumes":
        for (const v of value as string[]) {
          const [source, target, mode] = v.split(":");
          const named = !source.startsWith(".") && !isAbsolute(source);
          if (named && !(compose.volumes && source in compose.volumes)) {
            throw new Error(`compose: ${service} mounts volume ${source}, which is not declared`);
          }
          const from = named ? `${opts.project}_${source}` : resolve(compose.dir, source);
          args.push("-v", [from, target, ...(mode ? [mode] : [])].join(":"));
        }
        break;
      case "secrets":
        for (const name of value as string[]) {
          const declared = compose.secrets?.[name];
          if (!declared)
            throw new Error(`compose: ${service} uses secret ${name}, which is not declared`);
          const file = opts.secretFiles?.[name] ?? resolve(compose.dir, declared.file);
          args.push("-v", `${file}:/run/secrets/${name}:ro`);
        }
        break;
      case "read_only":
        // Docker's read-only root has no writable /tmp; podman adds tmpfs mounts unless told not to.
        if (value) args.push("--read-only", "--read-only-tmpfs=false");
        break;
      case "tmpfs":
        for (const t of ([] as string[]).concat(value as string | string[]))
          args.push("--tmpfs", t);
        break;
      case "init":
        if (value) args.push("--init");
        break;
      case "restart":
        args.push("--restart", value as string);
        break;
      case "stop_grace_period":
        args.push("--stop-timeout", String(seconds(value as string)));
        break;
      case "user":
        args.push("--user", value as string);
        break;
      default:
        if (!(key in IGNORED)) {
          throw new Error(`compose: ${service}.${key} is not handled by test/helpers/compose.ts`);
        }
    }
  }
  args.push(opts.images?.[svc.image] ?? svc.image, ...(svc.command ?? []));
  return args;
}

/** The service's health check as an argv for `podman exec` (CMD and CMD-SHELL forms), or null. */
export function healthCommand(compose: Compose, service: string): string[] | null {
  const test = compose.services[service]?.healthcheck?.test;
  if (test === undefined) return null;
  if (typeof test === "string") return ["sh", "-c", test];
  if (test[0] === "CMD") return test.slice(1);
  if (test[0] === "CMD-SHELL") return ["sh", "-c", test[1]];
  throw new Error(`compose: ${service}: health check ${test[0]} is not supported`);
}
