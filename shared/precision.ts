// Reduced-precision transport (transport.gradients / transport.params): the
// float32 ↔ bf16/fp16 codec, in plain JS so every backend and both sides of the
// wire round the same way. Rounding is part of the training definition: a
// microtask's gradient, and the weights it computes with, are these values.
//
// Rounding is to nearest, ties to even, saturating: a finite float32 that is
// too large for the format becomes the format's largest finite value (never
// Inf), so a big but healthy gradient is not mistaken for a diverged one. NaN
// stays NaN and ±Inf stays ±Inf (those are real divergence and must be seen).

export const DTYPES = ["fp32", "bf16", "fp16"] as const;
export type Dtype = (typeof DTYPES)[number];

export function bytesPerValue(dtype: Dtype): number {
  return dtype === "fp32" ? 4 : 2;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bits of a float32 value (its top 16 bits, rounded to nearest even, saturating). */
export function bf16Bits(value: number): number {
  f32[0] = value;
  const u = u32[0];
  if ((u & 0x7f800000) === 0x7f800000) {
    // Inf keeps its bits; NaN stays a (quiet) NaN with its sign.
    return (u & 0x007fffff) === 0 ? u >>> 16 : (u >>> 16) | 0x0040;
  }
  const rounded = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  return (rounded & 0x7fff) === 0x7f80 ? (rounded & 0x8000) | 0x7f7f : rounded;
}

/** fp16 bits of a float32 value (rounded to nearest even, saturating; subnormals kept). */
export function fp16Bits(value: number): number {
  f32[0] = value;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | (mant === 0 ? 0x7c00 : 0x7e00);
  const e = exp - 127 + 15; // the fp16 biased exponent
  if (e >= 31) return sign | 0x7bff;
  if (e <= 0) {
    // fp16 subnormal (or zero): the value in units of 2⁻²⁴, rounded. A float32
    // subnormal (exp 0) is far below 2⁻²⁵ and rounds to zero.
    if (exp === 0 || e < -10) return sign;
    return sign | roundShift(mant | 0x800000, 14 - e);
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1;
  return sign | (h >= 0x7c00 ? 0x7bff : h);
}

/** m / 2^shift rounded to nearest, ties to even (m < 2²⁴, shift ≤ 24). */
function roundShift(m: number, shift: number): number {
  const unit = 2 ** shift;
  const q = Math.floor(m / unit);
  const rest = m - q * unit;
  const half = unit / 2;
  return rest > half || (rest === half && (q & 1) === 1) ? q + 1 : q;
}

let fp16Table: Float32Array | null = null;

/** The float32 value of every fp16 bit pattern (built once, 256 KiB). */
function fp16Values(): Float32Array {
  if (fp16Table) return fp16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = sign * mant * 2 ** -24;
    else if (exp === 31) table[h] = mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
    else table[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  fp16Table = table;
  return table;
}

/** Little-endian bytes of `values` in `dtype` (fp32: a view of the same memory, no copy). */
export function encodeValues(dtype: Dtype, values: Float32Array): Uint8Array {
  if (dtype === "fp32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bits = new Uint16Array(values.length);
  const convert = dtype === "bf16" ? bf16Bits : fp16Bits;
  for (let i = 0; i < values.length; i++) bits[i] = convert(values[i]);
  return littleEndian16(bits);
}

/** The float32 values of little-endian `dtype` bytes (the byte length must be a multiple of the value size). */
export function decodeValues(dtype: Dtype, bytes: Uint8Array): Float32Array {
  const size = bytesPerValue(dtype);
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} values`);
  }
  if (dtype === "fp32") {
    const copy = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    return new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
  }
  const n = bytes.byteLength / 2;
  const out = new Float32Array(n);
  if (dtype === "bf16") {
    const wide = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) wide[i] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16;
  } else {
    const table = fp16Values();
    for (let i = 0; i < n; i++) out[i] = table[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
  }
  return out;
}

/**
 * The values as `dtype` represents them: what the other side of the wire
 * decodes. fp32 returns `values` itself; otherwise a new array.
 */
export function roundValues(dtype: Dtype, values: Float32Array): Float32Array {
  return dtype === "fp32" ? values : decodeValues(dtype, encodeValues(dtype, values));
}

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function littleEndian16(bits: Uint16Array): Uint8Array {
  const bytes = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
  if (!littleEndianHost) {
    for (let i = 0; i < bytes.length; i += 2) [bytes[i], bytes[i + 1]] = [bytes[i + 1], bytes[i]];
  }
  return bytes;
}
