// Image decoding for the in-memory folder loader (sharp, i.e. libvips: EXIF
// orientation applied, gray / palette / 16-bit expanded) and the float pixel
// maths it needs: channel conversion and deterministic resizing.

import sharp from "sharp";
import { DatasetError } from "./errors.js";

export interface RgbaImage {
  width: number;
  height: number;
  /** 8-bit RGBA, row-major. */
  rgba: Uint8Array;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47];
const JPEG_SIGNATURE = [0xff, 0xd8, 0xff];

function startsWith(bytes: Uint8Array, sig: number[]): boolean {
  return bytes.length >= sig.length && sig.every((b, i) => bytes[i] === b);
}

/**
 * Decodes a PNG or JPEG by content rather than extension, so a misnamed file
 * still loads, to 8-bit RGBA upright: EXIF orientation is applied as every
 * viewer does. Throws DatasetError naming the file when it is neither or broken.
 */
export async function decodeImage(bytes: Buffer, file: string): Promise<RgbaImage> {
  const fix = "fix or remove the file";
  const kind = startsWith(bytes, PNG_SIGNATURE)
    ? "PNG"
    : startsWith(bytes, JPEG_SIGNATURE)
      ? "JPEG"
      : null;
  if (kind === null) {
    throw new DatasetError(`${file} is not a PNG or JPEG image (unrecognised header); ${fix}`);
  }
  try {
    const { data, info } = await sharp(bytes, { failOn: "warning" })
      .autoOrient()
      .toColourspace("srgb")
      .ensureAlpha()
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, rgba: new Uint8Array(data) };
  } catch (err) {
    throw new DatasetError(
      `${file} could not be decoded as ${kind}: ${decoderFailure(err)}; ${fix}`,
    );
  }
}

/**
 * RGBA bytes to HWC floats in [0, 255] with 1 or 3 channels. Alpha is composited
 * over black, the background convention of MNIST-like data.
 */
export function toChannels(img: RgbaImage, channels: 1 | 3): Float32Array {
  const n = img.width * img.height;
  const src = img.rgba;
  const out = new Float32Array(n * channels);
  for (let p = 0; p < n; p++) {
    const a = src[4 * p + 3] / 255;
    const r = src[4 * p] * a;
    const g = src[4 * p + 1] * a;
    const b = src[4 * p + 2] * a;
    if (channels === 1) {
      out[p] = 0.299 * r + 0.587 * g + 0.114 * b;
    } else {
      out[3 * p] = r;
      out[3 * p + 1] = g;
      out[3 * p + 2] = b;
    }
  }
  return out;
}

/** Sparse resampling matrix for one axis: output j reads src[idx[k]]*w[k] for k in [off[j], off[j+1]). */
interface AxisWeights {
  off: Int32Array;
  idx: Int32Array;
  w: Float32Array;
}

/**
 * Area averaging when shrinking (each output pixel is the exact mean of the source
 * area it covers, so thin strokes don't alias away), bilinear with half-pixel
 * centres otherwise. Weights of each output sum to 1, so flat images stay flat.
 */
function axisWeights(src: number, dst: number): AxisWeights {
  const scale = src / dst;
  const off = new Int32Array(dst + 1);
  const idx: number[] = [];
  const w: number[] = [];
  for (let j = 0; j < dst; j++) {
    off[j] = idx.length;
    if (dst < src) {
      const a = j * scale;
      const b = (j + 1) * scale;
      for (let i = Math.floor(a); i < Math.min(Math.ceil(b), src); i++) {
        const overlap = Math.min(b, i + 1) - Math.max(a, i);
        if (overlap > 0) {
          idx.push(i);
          w.push(overlap / scale);
        }
      }
    } else {
      const x = Math.min(Math.max((j + 0.5) * scale - 0.5, 0), src - 1);
      const x0 = Math.floor(x);
      const f = x - x0;
      idx.push(x0);
      w.push(1 - f);
      if (f > 0) {
        idx.push(x0 + 1);
        w.push(f);
      }
    }
  }
  off[dst] = idx.length;
  return { off, idx: Int32Array.from(idx), w: Float32Array.from(w) };
}

/** Separable resize of an HWC float image (columns first, then rows). */
export function resize(
  src: Float32Array,
  width: number,
  height: number,
  channels: number,
  outW: number,
  outH: number,
): Float32Array {
  if (width === outW && height === outH) return src;
  const wx = axisWeights(width, outW);
  const wy = axisWeights(height, outH);
  const tmp = new Float32Array(height * outW * channels);
  for (let y = 0; y < height; y++) {
    const row = y * width * channels;
    for (let x = 0; x < outW; x++) {
      const o = (y * outW + x) * channels;
      for (let k = wx.off[x]; k < wx.off[x + 1]; k++) {
        const s = row + wx.idx[k] * channels;
        const wk = wx.w[k];
        for (let c = 0; c < channels; c++) tmp[o + c] += src[s + c] * wk;
      }
    }
  }
  const out = new Float32Array(outH * outW * channels);
  const stride = outW * channels;
  for (let y = 0; y < outH; y++) {
    const o = y * stride;
    for (let k = wy.off[y]; k < wy.off[y + 1]; k++) {
      const s = wy.idx[k] * stride;
      const wk = wy.w[k];
      for (let i = 0; i < stride; i++) out[o + i] += tmp[s + i] * wk;
    }
  }
  return out;
}

/**
 * A decoder's failure in words: libvips' wrapping ("Input buffer has corrupt
 * header: VipsJpeg: premature end of JPEG image") becomes "the data is corrupt
 * or truncated (premature end of JPEG image)"; any other error, its first line.
 */
export function decoderFailure(err: unknown): string {
  const line = (err instanceof Error ? err.message : String(err)).split("\n")[0];
  if (!/^(Input buffer|Vips\w*:)/.test(line)) return line;
  const detail = line
    .replace(/^Input buffer has corrupt header:?\s*/i, "")
    .replace(/^Input buffer contains\s*/i, "")
    .replace(/^Vips\w*:\s*/, "")
    .replace(/[.:]\s*$/, "")
    .trim();
  return `the data is corrupt or truncated (${detail || "the decoder gave no detail"})`;
}
