// Counter-based randomness shared by every backend. Dropout masks are a pure function of
// (seed, step, key, index), so the interpreter and the WGSL kernels draw the same mask and a
// resumed run draws what the uninterrupted run would have. The WGSL twin is in
// compiler/wgsl (PCG_WGSL); keep them identical.

/** PCG-RXS-M-XS 32-bit hash (Jarzynski & Olano 2020). */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** A uniform in [0, 1) with 24 bits, from (seed, step, key, index). */
export function counterUniform(seed: number, step: number, key: number, index: number): number {
  const h = pcgHash((index + pcgHash((key + pcgHash((step + pcgHash(seed >>> 0)) >>> 0)) >>> 0)) >>> 0);
  return (h >>> 8) / 16777216;
}

export function dropoutKeep(seed: number, step: number, key: number, index: number, p: number): boolean {
  return counterUniform(seed, step, key, index) >= p;
}

/** Seeded stream generator for weight initialisation and data order (mulberry32). */
export class Rng {
  private s: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.s = pcgHash(seed >>> 0);
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}
