// `agon data inspect`: what a prepared dataset holds (counts per class, shape,
// fingerprint, skipped source files), its checksums, and a grid of samples.

import { writeFileSync } from "node:fs";
import { imageGridPng } from "./png.js";
import { PreparedDataset } from "./prepared.js";

export interface InspectReport {
  dir: string;
  count: number;
  resolution: number;
  channels: number;
  chunks: number;
  fingerprint: string;
  classes: Array<{ name: string; count: number }>;
  skipped: number;
  /** Damaged chunks' messages (only with verify). */
  damaged?: string[];
  /** Where the grid PNG went (only with a grid path). */
  grid?: string;
}

/**
 * Reads the manifest (and with `verify` every chunk's checksum); with `grid`,
 * writes a PNG with one row of `perRow` samples per class (the first rows of
 * each class in row order; 8 rows of the first samples when unlabelled).
 * Throws DatasetError when the manifest or labels are unreadable or damaged.
 */
export function inspectDataset(
  dir: string,
  opts: {
    verify?: boolean;
    grid?: string;
    perRow?: number;
    onVerify?: (done: number, total: number) => void;
  } = {},
): InspectReport {
  const ds = PreparedDataset.open(dir, { cacheMB: 64 });
  const m = ds.manifest;
  const report: InspectReport = {
    dir,
    count: m.count,
    resolution: m.resolution,
    channels: m.channels,
    chunks: m.chunks.length,
    fingerprint: m.fingerprint,
    classes: m.classes.map((name, i) => ({ name, count: m.classCounts[i] ?? 0 })),
    skipped: m.skipped.length,
  };
  if (opts.verify) report.damaged = ds.verifyAll(opts.onVerify);
  if (opts.grid) {
    const perRow = opts.perRow ?? 8;
    const rows: number[][] = [];
    if (m.classes.length === 0) {
      for (let r = 0; r < 8 && r * perRow < m.count; r++) {
        rows.push(
          Array.from({ length: Math.min(perRow, m.count - r * perRow) }, (_, k) => r * perRow + k),
        );
      }
    } else {
      for (let c = 0; c < m.classes.length; c++) rows.push([]);
      for (let i = 0; i < m.count; i++) {
        const row = rows[ds.label(i)];
        if (row.length < perRow) row.push(i);
      }
    }
    // One tile per slot; a class with fewer samples leaves its tail mid-gray.
    const tiles = rows.length * perRow;
    const images = new Float32Array(tiles * ds.sampleSize);
    rows.forEach((row, r) => {
      const out = images.subarray(
        r * perRow * ds.sampleSize,
        (r * perRow + row.length) * ds.sampleSize,
      );
      ds.gather(Int32Array.from(row), out);
    });
    writeFileSync(opts.grid, imageGridPng(images, tiles, ds.sampleShape, perRow));
    report.grid = opts.grid;
  }
  ds.close();
  return report;
}

/** The report as lines for a terminal. */
export function formatInspect(r: InspectReport): string[] {
  const lines = [
    `${r.dir}: ${r.count} images of ${r.resolution}x${r.resolution}x${r.channels} in ${r.chunks} chunks, fingerprint ${r.fingerprint}`,
    r.classes.length === 0
      ? "classes: none (unlabelled)"
      : `classes (${r.classes.length}): ${r.classes.map((c) => `${c.name} ${c.count}`).join(", ")}`,
  ];
  if (r.skipped > 0)
    lines.push(`skipped when prepared: ${r.skipped} files (listed in manifest.json)`);
  if (r.damaged) {
    lines.push(
      r.damaged.length === 0
        ? `verify: all ${r.chunks} chunks match their sha256`
        : `verify: ${r.damaged.length} of ${r.chunks} chunks damaged`,
    );
    for (const d of r.damaged) lines.push(`  ${d}`);
  }
  if (r.grid) lines.push(`grid: wrote ${r.grid} (one row per class)`);
  return lines;
}
