// Facts about the machine a benchmark ran on, for its header and its JSON.
import { readFileSync } from "node:fs";
import os from "node:os";
import { version_core } from "@tensorflow/tfjs-core";

export interface MachineInfo {
  cpuModel: string;
  /** Logical cores Node sees. */
  cores: number;
  memoryGiB: number;
  platform: string;
  node: string;
  tfjs: string;
  /** 1/5/15-minute load averages when the benchmark started (other work disturbs timings). */
  loadAvg: number[];
}

export function machineInfo(): MachineInfo {
  return {
    cpuModel: cpuModel(),
    cores: os.availableParallelism?.() ?? os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    tfjs: version_core,
    loadAvg: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
}

function cpuModel(): string {
  try {
    const text = readFileSync("/proc/cpuinfo", "utf8");
    const match = /^model name\s*:\s*(.+)$/m.exec(text);
    if (match) return match[1].trim();
  } catch {
    // not Linux; fall through
  }
  return os.cpus()[0]?.model ?? "unknown";
}

export function machineHeader(m: MachineInfo): string {
  return [
    `cpu:  ${m.cpuModel}, ${m.cores} logical cores, ${m.memoryGiB} GiB`,
    `os:   ${m.platform}`,
    `node: ${m.node}, tfjs ${m.tfjs}`,
    `load: ${m.loadAvg.join(" ")} (1/5/15 min, at start)`,
  ].join("\n");
}
