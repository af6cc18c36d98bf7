// The bf16/fp16 transport codec: round to nearest even, saturation instead of
// overflow to Inf, NaN/Inf/subnormal handling, exact round trips, and the chunk
// codec carrying the encoded bytes.
import { describe, expect, it } from "vitest";
import {
  bf16Bits,
  decodeValues,
  encodeValues,
  fp16Bits,
  roundValues,
} from "../shared/precision.js";
import { CHUNK_BYTES, ChunkAssembler, chunkCount, chunksOf, encodeArray } from "../shared/wire.js";

/** The float32 value of a bit pattern. */
function f32(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0];
}

describe("bf16", () => {
  it("rounds to nearest, ties to even", () => {
    expect(bf16Bits(1)).toBe(0x3f80);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: the tie goes to the even mantissa (1).
    expect(bf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
    expect(bf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    // Just above and below a tie round to the nearer value.
    expect(bf16Bits(f32(0x3f808001))).toBe(0x3f81);
    expect(bf16Bits(f32(0x3f807fff))).toBe(0x3f80);
    expect(bf16Bits(-1.5)).toBe(0xbfc0);
  });

  it("saturates finite overflow, keeps ±Inf, NaN, signed zero and subnormals", () => {
    expect(bf16Bits(f32(0x7f7fffff))).toBe(0x7f7f); // float32 max → bf16 max, not Inf
    expect(bf16Bits(f32(0xff7fffff))).toBe(0xff7f);
    expect(bf16Bits(Number.POSITIVE_INFINITY)).toBe(0x7f80);
    expect(bf16Bits(Number.NEGATIVE_INFINITY)).toBe(0xff80);
    const nan = bf16Bits(Number.NaN);
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x7f).not.toBe(0);
    // A NaN whose payload sits only in the low 16 bits must not become Inf.
    expect(bf16Bits(f32(0x7f800001)) & 0x7f).not.toBe(0);
    expect(bf16Bits(-0)).toBe(0x8000);
    expect(bf16Bits(f32(0x00010000))).toBe(0x0001); // the smallest bf16 subnormal
  });

  it("round-trips every representable value exactly", () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const values = decodeValues("bf16", new Uint8Array(bits.buffer));
    const again = new Uint16Array(encodeValues("bf16", values).buffer);
    for (let i = 0; i < 65536; i++) {
      const nanPattern = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (nanPattern) expect(Number.isNaN(values[i])).toBe(true);
      else expect(again[i]).toBe(i);
    }
  });
});

describe("fp16", () => {
  it("rounds to nearest, ties to even, in normal and subnormal range", () => {
    expect(fp16Bits(1)).toBe(0x3c00);
    expect(fp16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(fp16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even
    expect(fp16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    expect(fp16Bits(65504)).toBe(0x7bff);
    expect(fp16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(fp16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(fp16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and 2^-24 → 0
    expect(fp16Bits(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 units → 2
    expect(fp16Bits(2 ** -25 * 1.0001)).toBe(0x0001);
    expect(fp16Bits(2 ** -14 - 2 ** -26)).toBe(0x0400); // rounds up into the normal range
    expect(fp16Bits(f32(0x00000001))).toBe(0x0000); // a float32 subnormal underflows
    expect(fp16Bits(-(2 ** -24))).toBe(0x8001);
  });

  it("saturates at ±65504 instead of overflowing to Inf; keeps ±Inf and NaN", () => {
    expect(fp16Bits(65519)).toBe(0x7bff);
    expect(fp16Bits(65520)).toBe(0x7bff); // plain IEEE rounding would give Inf
    expect(fp16Bits(1e30)).toBe(0x7bff);
    expect(fp16Bits(-1e30)).toBe(0xfbff);
    expect(fp16Bits(Number.POSITIVE_INFINITY)).toBe(0x7c00);
    expect(fp16Bits(Number.NEGATIVE_INFINITY)).toBe(0xfc00);
    expect(fp16Bits(Number.NaN)).toBe(0x7e00);
    expect(fp16Bits(-0)).toBe(0x8000);
  });

  it("round-trips every representable value exactly", () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const values = decodeValues("fp16", new Uint8Array(bits.buffer));
    const again = new Uint16Array(encodeValues("fp16", values).buffer);
    for (let i = 0; i < 65536; i++) {
      const nanPattern = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (nanPattern) expect(Number.isNaN(values[i])).toBe(true);
      else expect(again[i]).toBe(i);
    }
  });
});

describe("rounding as the wire does it", () => {
  const values = Float32Array.from(
    { length: 10_000 },
    (_, i) => Math.sin(i) * 10 ** ((i % 13) - 8),
  );

  it("roundValues is what the other side decodes, and rounding twice changes nothing", () => {
    for (const dtype of ["bf16", "fp16"] as const) {
      const rounded = roundValues(dtype, values);
      expect(decodeValues(dtype, encodeValues(dtype, values))).toEqual(rounded);
      expect(roundValues(dtype, rounded)).toEqual(rounded);
      expect(encodeValues(dtype, rounded)).toEqual(encodeValues(dtype, values));
    }
    expect(roundValues("fp32", values)).toBe(values);
  });

  it("bf16 keeps 8 significant bits: relative error at most 2^-8", () => {
    const rounded = roundValues("bf16", values);
    for (let i = 0; i < values.length; i++) {
      if (values[i] === 0) continue;
      expect(Math.abs(rounded[i] - values[i]) / Math.abs(values[i])).toBeLessThanOrEqual(2 ** -8);
    }
  });

  it("the chunk codec carries bf16 bytes: half the chunks, checksum over the encoded bytes", () => {
    const big = Float32Array.from({ length: 300_000 }, (_, i) => Math.cos(i));
    const encoded = encodeArray(big, "bf16");
    expect(encoded.bytes.byteLength).toBe(big.length * 2);
    const chunks = chunksOf(encoded.bytes);
    expect(chunks.length).toBe(chunkCount(big.length, "bf16"));
    expect(chunks.length).toBe(Math.ceil((big.length * 2) / CHUNK_BYTES));
    expect(chunkCount(big.length, "fp32")).toBeGreaterThan(chunks.length);
    const a = new ChunkAssembler(big.length, chunks.length, encoded.checksum, "bf16");
    chunks.forEach((c, i) => {
      a.add(i, c);
    });
    expect(a.finish(true)).toEqual(roundValues("bf16", big));
    // fp32 chunk counts or sizes do not pass for a bf16 array.
    expect(
      () => new ChunkAssembler(big.length, chunkCount(big.length), encoded.checksum, "bf16"),
    ).toThrow(/chunks/);
  });
});
