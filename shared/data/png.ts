// PNG output for humans: sample grids of generated images and dot plots of 2-D
// samples. Pixel values in [-1, 1] map to 0..255; NaN renders as black.

import { PNG } from "pngjs";

/** Encodes 8-bit gray (1), RGB (3) or RGBA (4) pixels, row-major. */
export function encodePng(
  width: number,
  height: number,
  channels: 1 | 3 | 4,
  pixels: Uint8Array,
): Buffer {
  if (pixels.length !== width * height * channels) {
    throw new RangeError(
      `encodePng: ${pixels.length} bytes for ${width}x${height}x${channels} (need ${width * height * channels})`,
    );
  }
  const colorType = channels === 1 ? 0 : channels === 3 ? 2 : 6;
  // Same input and output colour type lets pngjs use the bytes as they are.
  const data = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  return PNG.sync.write({ width, height, data } as PNG, {
    colorType,
    inputColorType: colorType,
    inputHasAlpha: channels === 4,
  });
}

function toByte(v: number): number {
  // NaN fails both comparisons and falls through to 0.
  return v > -1 ? (v < 1 ? Math.round((v + 1) * 127.5) : 255) : 0;
}

const GRID_PAD = 1;
const GRID_PAD_VALUE = 128; // mid-gray separates tiles on both dark and light images

/**
 * Tiles `count` HWC images (values in [-1, 1]) into rows of `cols`, with 1px gray
 * padding between tiles. Gray PNG for 1 channel, RGB for 3. `cellOf` (optional):
 * image n's grid cell (row-major index, distinct per image); cells no image takes
 * stay gray (a conditional grid's short rows).
 */
export function imageGridPng(
  images: Float32Array,
  count: number,
  sampleShape: [number, number, number],
  cols: number,
  cellOf?: ArrayLike<number>,
): Buffer {
  const [h, w, c] = sampleShape;
  if (c !== 1 && c !== 3) throw new RangeError(`imageGridPng: channels must be 1 or 3, got ${c}`);
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`imageGridPng: count must be a positive integer, got ${count}`);
  }
  if (!Number.isInteger(cols) || cols < 1) {
    throw new RangeError(`imageGridPng: cols must be a positive integer, got ${cols}`);
  }
  const tile = h * w * c;
  if (images.length < count * tile) {
    throw new RangeError(
      `imageGridPng: ${images.length} values for ${count} images of ${h}x${w}x${c}`,
    );
  }
  // cellOf: image n goes to grid cell cellOf[n] (row-major), the other cells stay blank.
  let cells = count;
  if (cellOf) {
    cells = 0;
    for (let n = 0; n < count; n++) cells = Math.max(cells, cellOf[n] + 1);
  }
  const gridCols = cellOf ? cols : Math.min(cols, count);
  const gridRows = Math.ceil(cells / gridCols);
  const width = gridCols * w + (gridCols - 1) * GRID_PAD;
  const height = gridRows * h + (gridRows - 1) * GRID_PAD;
  const pixels = new Uint8Array(width * height * c).fill(GRID_PAD_VALUE);
  for (let n = 0; n < count; n++) {
    const cell = cellOf ? cellOf[n] : n;
    const x0 = (cell % gridCols) * (w + GRID_PAD);
    const y0 = Math.floor(cell / gridCols) * (h + GRID_PAD);
    for (let y = 0; y < h; y++) {
      const src = n * tile + y * w * c;
      const dst = ((y0 + y) * width + x0) * c;
      for (let i = 0; i < w * c; i++) pixels[dst + i] = toByte(images[src + i]);
    }
  }
  return encodePng(width, height, c, pixels);
}

/**
 * Dot plot of 2-D points over [-extent, extent]² (y up). Each point darkens its
 * pixel, so density shows; reference points (e.g. ring modes) are red circles.
 */
export function scatterPng(
  points: Float32Array,
  count: number,
  opts: { size: number; extent: number; reference?: Array<[number, number]> },
): Buffer {
  const { size, extent } = opts;
  if (!Number.isInteger(size) || size < 8) {
    throw new RangeError(`scatterPng: size must be an integer >= 8, got ${size}`);
  }
  if (!(extent > 0)) throw new RangeError(`scatterPng: extent must be > 0, got ${extent}`);
  if (points.length < count * 2) {
    throw new RangeError(`scatterPng: ${points.length} values for ${count} 2-D points`);
  }
  const rgb = new Uint8Array(size * size * 3).fill(255);
  const toPixel = (x: number, y: number): [number, number] => [
    Math.floor(((x + extent) / (2 * extent)) * size),
    Math.floor(((extent - y) / (2 * extent)) * size),
  ];
  const inside = (px: number, py: number): boolean => px >= 0 && px < size && py >= 0 && py < size;
  const set = (px: number, py: number, r: number, g: number, b: number): void => {
    if (!inside(px, py)) return;
    const o = (py * size + px) * 3;
    rgb[o] = r;
    rgb[o + 1] = g;
    rgb[o + 2] = b;
  };

  // Light axes through the origin for orientation.
  const [ox, oy] = toPixel(0, 0);
  for (let i = 0; i < size; i++) {
    set(ox, i, 220, 220, 220);
    set(i, oy, 220, 220, 220);
  }

  for (let i = 0; i < count; i++) {
    const [px, py] = toPixel(points[2 * i], points[2 * i + 1]);
    if (!inside(px, py)) continue; // also drops NaN
    const o = (py * size + px) * 3;
    // Toward dark blue, a step per hit: density stays readable up to ~10 hits.
    rgb[o] = Math.floor(rgb[o] * 0.6);
    rgb[o + 1] = Math.floor(rgb[o + 1] * 0.6);
    rgb[o + 2] = Math.max(90, Math.floor(rgb[o + 2] * 0.8));
  }

  const radius = Math.max(3, Math.round(size / 100));
  for (const [x, y] of opts.reference ?? []) {
    const [cx, cy] = toPixel(x, y);
    const steps = Math.ceil(2 * Math.PI * radius * 2);
    for (let s = 0; s < steps; s++) {
      const a = (2 * Math.PI * s) / steps;
      set(Math.round(cx + radius * Math.cos(a)), Math.round(cy + radius * Math.sin(a)), 220, 0, 0);
    }
  }
  return encodePng(size, size, 3, rgb);
}
