// `npx tsx bench/shapes.ts DIR [COUNT] [SIZE]`: writes COUNT (default 2048)
// SIZE×SIZE (default 64) PNGs of one coloured shape (disc, square or triangle,
// random colour, size and position) on a dark background, from a fixed seed:
// a generated RGB folder dataset for dcgan runs at other sizes than MNIST's.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import { Rng } from "../shared/rng.js";

/** The shapes the generated datasets draw; `shapeImage` draws the first three. */
export const SHAPE_NAMES = ["disc", "square", "triangle", "ring"] as const;
export type ShapeName = (typeof SHAPE_NAMES)[number];

/**
 * Whether the pixel centre at offset (dx, dy) from a shape's centre lies inside the shape of
 * radius `r` (pixels): a disc, a square of half-side 0.85 r, an upward triangle, or a ring
 * (the disc less its inner 0.6 r).
 */
export function insideShape(shape: ShapeName, dx: number, dy: number, r: number): boolean {
  const d2 = dx * dx + dy * dy;
  switch (shape) {
    case "disc":
      return d2 <= r * r;
    case "ring":
      return d2 <= r * r && d2 >= r * r * 0.36;
    case "square":
      return Math.abs(dx) <= r * 0.85 && Math.abs(dy) <= r * 0.85;
    case "triangle":
      return dy <= r * 0.8 && dy >= -r && Math.abs(dx) <= (dy + r) * 0.6;
  }
}

/** One image's RGBA pixels. */
export function shapeImage(rng: Rng, size: number): Buffer {
  const png = new PNG({ width: size, height: size });
  const bg = [20, 20, 28].map((v) => v + Math.floor(rng.nextFloat() * 20));
  const colour = [0, 1, 2].map(() => 60 + Math.floor(rng.nextFloat() * 196));
  const kind = Math.floor(rng.nextFloat() * 3);
  const r = size * (0.15 + 0.2 * rng.nextFloat());
  const cx = r + (size - 2 * r) * rng.nextFloat();
  const cy = r + (size - 2 * r) * rng.nextFloat();
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const c = insideShape(SHAPE_NAMES[kind], dx, dy, r) ? colour : bg;
      const i = (y * size + x) * 4;
      png.data[i] = c[0];
      png.data[i + 1] = c[1];
      png.data[i + 2] = c[2];
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir, count = "2048", size = "64"] = process.argv.slice(2);
  if (!dir) {
    process.stderr.write("usage: npx tsx bench/shapes.ts DIR [COUNT] [SIZE]\n");
    process.exit(2);
  }
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(2026);
  for (let i = 0; i < Number(count); i++) {
    writeFileSync(
      join(dir, `shape-${String(i).padStart(5, "0")}.png`),
      shapeImage(rng, Number(size)),
    );
  }
  process.stderr.write(`shapes: wrote ${count} ${size}×${size} PNGs to ${dir}\n`);
}
