// Statistics over seeds: mean and Student-t confidence intervals, for `mtc report` and
// `mtc run sweep`. The t quantile is computed, not looked up: the t CDF is written with the
// regularized incomplete beta function (continued fraction, Numerical Recipes §6.4) and
// inverted by bisection, so every degree of freedom is exact to ~1e-12.

/** Mean of `values` with a two-sided `level` confidence interval from Student's t. */
export interface CI {
  mean: number;
  /** mean − half */
  lo: number;
  /** mean + half */
  hi: number;
  /** half-width of the interval: t_{(1+level)/2, n−1} · sd / √n; 0 when n = 1 (no interval) */
  half: number;
  n: number;
  /** sample standard deviation (n − 1 in the denominator); 0 when n = 1 */
  sd: number;
}

/**
 * Mean and Student-t confidence interval of `values` (e.g. one value per seed).
 * n = 0 gives NaN everywhere; n = 1 gives lo = hi = mean (one value has no interval).
 * A NaN or infinite value makes the result NaN: a diverged seed is not silently dropped.
 */
export function meanCI(values: readonly number[], level = 0.95): CI {
  if (!(level > 0 && level < 1)) throw new RangeError(`confidence level must lie in (0, 1), got ${level}`);
  const n = values.length;
  if (n === 0) return { mean: NaN, lo: NaN, hi: NaN, half: NaN, n: 0, sd: NaN };
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / n;
  if (n === 1) return { mean, lo: mean, hi: mean, half: 0, n, sd: 0 };
  let ss = 0;
  for (const v of values) ss += (v - mean) * (v - mean);
  const sd = Math.sqrt(ss / (n - 1));
  const half = tQuantile((1 + level) / 2, n - 1) * (sd / Math.sqrt(n));
  return { mean, lo: mean - half, hi: mean + half, half, n, sd };
}

/** A record of one run: scalars and per-iteration arrays, e.g. `{ bpb: 1.7, erank: [5, 6] }`. */
export type StatRecord = Record<string, number | readonly number[]>;
export type Aggregate = Record<string, CI | CI[]>;

/**
 * Per key, the mean/CI over the records that have it; for array values, per index over the
 * records whose array reaches that index (runs with different T aggregate index by index).
 * A key is an array key when its first present value is an array; records giving the other
 * kind for that key are skipped. Keys come out sorted, so the result serialises the same way
 * whatever the records' key order.
 */
export function aggregate(records: readonly StatRecord[], level = 0.95): Aggregate {
  const keys = [...new Set(records.flatMap((r) => Object.keys(r)))].sort();
  const out: Aggregate = {};
  for (const key of keys) {
    const present = records.map((r) => r[key]).filter((v) => v !== undefined && v !== null);
    if (present.length === 0) continue;
    if (Array.isArray(present[0])) {
      const arrays = present.filter((v): v is readonly number[] => Array.isArray(v));
      const len = Math.max(...arrays.map((a) => a.length));
      const cis: CI[] = [];
      for (let i = 0; i < len; i++) {
        cis.push(meanCI(arrays.filter((a) => i < a.length && typeof a[i] === 'number').map((a) => a[i]), level));
      }
      out[key] = cis;
    } else {
      out[key] = meanCI(present.filter((v): v is number => typeof v === 'number'), level);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Special functions

/**
 * ln Γ(x) for x > 0: Stirling's series at x ≥ 15 (terms through x⁻¹¹, error < 1e-16 there),
 * shifted up by the recurrence Γ(x+1) = xΓ(x) below that; ~1e-15 relative.
 */
export function lnGamma(x: number): number {
  if (!(x > 0)) return NaN;
  let shift = 0;
  while (x < 15) {
    shift += Math.log(x);
    x += 1;
  }
  const r = 1 / x;
  const r2 = r * r;
  // Bernoulli terms B_2k / (2k(2k−1) x^(2k−1))
  const series = r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 * (1 / 1188 - r2 * (691 / 360360))))));
  return (x - 0.5) * Math.log(x) - x + 0.5 * Math.log(2 * Math.PI) + series - shift;
}

/** Continued fraction of the incomplete beta function (modified Lentz), NR `betacf`. */
function betaCF(x: number, a: number, b: number): number {
  const TINY = 1e-300;
  const EPS = 1e-15;
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  // Converges in O(√max(a, b)) terms; the cap covers df up to ~1e10.
  for (let m = 1; m <= 1_000_000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) return h;
  }
  return h;
}

/** Regularized incomplete beta function I_x(a, b), a, b > 0, x ∈ [0, 1]. */
export function regIncBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  const front = Math.exp(lnFront);
  // The fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 − I_{1−x}(b,a) otherwise.
  if (x < (a + 1) / (a + b + 2)) return (front * betaCF(x, a, b)) / a;
  return 1 - (front * betaCF(1 - x, b, a)) / b;
}

/** Standard normal CDF, Φ(z) = erfc(−z/√2)/2, via the regularized incomplete gamma P(1/2, z²/2). */
export function normalCdf(z: number): number {
  const p = regLowerGamma(0.5, (z * z) / 2); // P(|Z| < |z|)
  return z >= 0 ? 0.5 + p / 2 : 0.5 - p / 2;
}

/** Regularized lower incomplete gamma P(a, x) (series / continued fraction, NR `gammp`). */
function regLowerGamma(a: number, x: number): number {
  if (x <= 0) return 0;
  const lnFront = a * Math.log(x) - x - lnGamma(a);
  if (x < a + 1) {
    let sum = 1 / a;
    let del = sum;
    for (let n = 1; n < 10_000; n++) {
      del *= x / (a + n);
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * 1e-16) break;
    }
    return sum * Math.exp(lnFront);
  }
  const TINY = 1e-300;
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 10_000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return 1 - Math.exp(lnFront) * h;
}

/** CDF of Student's t with `df` > 0 degrees of freedom (df = Infinity: the standard normal). */
export function tCdf(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`degrees of freedom must be > 0, got ${df}`);
  if (Number.isNaN(t)) return NaN;
  if (df === Infinity) return normalCdf(t);
  if (t === Infinity) return 1;
  if (t === -Infinity) return 0;
  // P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2)
  const tail = 0.5 * regIncBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/**
 * Quantile of Student's t: the t with P(T ≤ t) = p. Bisection on the CDF (monotone), after
 * bracketing by doubling; ~1e-12 relative. tQuantile(0.975, 1) = 12.7062…; df = Infinity
 * gives the normal quantile.
 */
export function tQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) {
    if (p === 0) return -Infinity;
    if (p === 1) return Infinity;
    throw new RangeError(`probability must lie in [0, 1], got ${p}`);
  }
  if (!(df > 0)) throw new RangeError(`degrees of freedom must be > 0, got ${df}`);
  if (p < 0.5) return -tQuantile(1 - p, df);
  if (p === 0.5) return 0;
  if (df > 1e7) {
    // ln B(df/2, 1/2) loses digits to cancellation here; the Cornish–Fisher expansion around
    // the normal quantile is exact to O(df⁻³) instead.
    const z = bisect((x) => normalCdf(x) < p);
    const z2 = z * z;
    return z + (z * (z2 + 1)) / (4 * df) + (z * (5 * z2 * z2 + 16 * z2 + 3)) / (96 * df * df);
  }
  return bisect((x) => tCdf(x, df) < p);
}

/** The boundary x > 0 where `below(x)` (true near 0, false beyond; monotone) turns false. */
function bisect(below: (x: number) => boolean): number {
  let lo = 0;
  let hi = 1;
  while (below(hi)) {
    lo = hi;
    hi *= 2;
    if (hi > 1e300) return Infinity;
  }
  for (let i = 0; i < 200 && hi - lo > 1e-14 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (below(mid)) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}
