// Seeded randomness. Every random number in training comes from here, keyed by
// a hash of where it is used, so results never depend on call order or process.

/** Mixes 32-bit words into one 32-bit seed (murmur3-style finaliser per word). */
export function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    if (!Number.isSafeInteger(part) || part < 0) {
      throw new RangeError(`hashSeed: parts must be non-negative safe integers, got ${part}`);
    }
    // Fold values above 2^32 in, so distinct large integers still hash apart.
    const words = [part >>> 0, Math.floor(part / 0x100000000) >>> 0];
    for (const w of words) {
      let k = Math.imul(w, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h ^= k;
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) | 0;
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Stable numeric tags for hashSeed, so seeds for different purposes never collide. */
export const SeedDomain = {
  initG: 1,
  initD: 2,
  noise: 3,
  permutation: 4,
  ring: 5,
  sampleNoise: 6,
  interpolation: 7,
  xflip: 8,
  /** DiffAugment's draws per microtask: (noise seed, augment, 0 = reals / 1 = fakes). */
  augment: 9,
  /**
   * Conditional models: the classes of generated samples — a microtask's fakes
   * (noise seed, classes) and `agon eval`'s samples (eval seed, classes).
   */
  classes: 10,
} as const;

/** sfc32 generator seeded through splitmix32: fast, 128-bit state, good statistics. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | undefined;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  nextFloat(): number {
    return this.nextU32() / 0x100000000;
  }

  /** Uniform integer in [0, n). */
  nextInt(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }

  /** Standard normal by Box–Muller (pairs cached). */
  nextNormal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.nextFloat();
    const v = this.nextFloat();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fills a Float32Array of length n with N(mean, std²). */
  normalArray(n: number, mean = 0, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.nextNormal();
    return out;
  }
}

/** The noise seed of microtask (step, phase, shard): a pure function of the run seed. */
export function noiseSeed(runSeed: number, step: number, phase: number, shard: number): number {
  return hashSeed(runSeed, SeedDomain.noise, step, phase, shard);
}
