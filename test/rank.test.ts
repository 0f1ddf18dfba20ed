// runtime/rank.ts against constructions the module does not use: spectra built as U·diag(s)·Vᵀ
// from Householder-QR orthogonal factors of Gaussian matrices, eigenvalues of AᵀA from a cyclic
// two-sided Jacobi eigenvalue iteration, closed-form effective ranks, and hand-computed
// token-collapse ratios. Tolerances are in the test names; each test reports its worst error
// as a diagnostic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compositeNorm,
  effectiveRank,
  erank,
  projectRank,
  singularValues,
  singularValuesInto,
  svd,
  tokenCollapseRatio,
} from '../runtime/rank.ts';

// ---- independent helpers -------------------------------------------------------------------

/** mulberry32 + Box–Muller: a seeded Gaussian source. */
function gaussian(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

function randn(rows: number, cols: number, g: () => number): Float64Array {
  return Float64Array.from({ length: rows * cols }, g);
}

/** A random n×n orthogonal matrix: Q of the Householder QR of a Gaussian matrix (row-major). */
function randomOrthogonal(n: number, g: () => number): Float64Array {
  const a = randn(n, n, g);
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  const v = new Float64Array(n);
  for (let k = 0; k < n - 1; k++) {
    let norm = 0;
    for (let i = k; i < n; i++) norm += a[i * n + k] ** 2;
    norm = Math.sqrt(norm);
    const alpha = a[k * n + k] >= 0 ? -norm : norm;
    v.fill(0);
    for (let i = k; i < n; i++) v[i] = a[i * n + k];
    v[k] -= alpha;
    let vv = 0;
    for (let i = k; i < n; i++) vv += v[i] * v[i];
    if (vv === 0) continue;
    // A ← H A, Q ← Q H with H = I − 2 v vᵀ / vᵀv.
    for (let j = 0; j < n; j++) {
      let d = 0;
      for (let i = k; i < n; i++) d += v[i] * a[i * n + j];
      const f = (2 * d) / vv;
      for (let i = k; i < n; i++) a[i * n + j] -= f * v[i];
    }
    for (let i = 0; i < n; i++) {
      let d = 0;
      for (let j = k; j < n; j++) d += q[i * n + j] * v[j];
      const f = (2 * d) / vv;
      for (let j = k; j < n; j++) q[i * n + j] -= f * v[j];
    }
  }
  return q;
}

/** A = U·diag(s)·Vᵀ (rows×cols) with U, V the first r columns of random orthogonal matrices. */
function withSpectrum(rows: number, cols: number, s: number[], g: () => number): Float64Array {
  const r = Math.min(rows, cols);
  assert.equal(s.length, r);
  const u = randomOrthogonal(rows, g);
  const v = randomOrthogonal(cols, g);
  const a = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let t = 0;
      for (let c = 0; c < r; c++) t += u[i * rows + c] * s[c] * v[j * cols + c];
      a[i * cols + j] = t;
    }
  }
  return a;
}

/** Eigenvalues (descending) of a symmetric n×n matrix by cyclic two-sided Jacobi rotations. */
function symmetricEigenvalues(sym: Float64Array, n: number): number[] {
  const a = Float64Array.from(sym);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let total = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        total += a[i * n + j] ** 2;
        if (i !== j) off += a[i * n + j] ** 2;
      }
    }
    if (off <= 1e-34 * total) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        // A ← Jᵀ A J on rows/columns p, q.
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Array.from({ length: n }, (_, i) => a[i * n + i]).sort((x, y) => y - x);
}

/** The smaller Gram matrix: AᵀA (cols×cols) when rows ≥ cols, else AAᵀ. */
function gram(a: Float64Array, rows: number, cols: number): { g: Float64Array; n: number } {
  const tall = rows >= cols;
  const n = tall ? cols : rows;
  const len = tall ? rows : cols;
  const at = (i: number, k: number): number => (tall ? a[k * cols + i] : a[i * cols + k]);
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let t = 0;
      for (let k = 0; k < len; k++) t += at(i, k) * at(j, k);
      g[i * n + j] = t;
    }
  }
  return { g, n };
}

/** Closed-form effective rank, written out again: clamp at 1e-10, normalise, exp(entropy). */
function erankClosedForm(s: number[]): number {
  const c = s.map((x) => Math.max(x, 1e-10));
  const total = c.reduce((x, y) => x + y, 0);
  return Math.exp(-c.reduce((h, x) => h + (x / total) * Math.log(x / total), 0));
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** max |MᵀM − I| for the r orthonormal columns of a rows×r row-major M. */
function orthonormalityError(m: Float64Array, rows: number, r: number): number {
  let worst = 0;
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < r; j++) {
      let t = 0;
      for (let k = 0; k < rows; k++) t += m[k * r + i] * m[k * r + j];
      worst = Math.max(worst, Math.abs(t - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

function reconstructionError(a: Float64Array, rows: number, cols: number, d: ReturnType<typeof svd>): number {
  const r = Math.min(rows, cols);
  let worst = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let t = 0;
      for (let c = 0; c < r; c++) t += d.U[i * r + c] * d.S[c] * d.V[j * r + c];
      worst = Math.max(worst, Math.abs(t - a[i * cols + j]));
    }
  }
  return worst;
}

function assertDescending(s: ArrayLike<number>): void {
  for (let i = 1; i < s.length; i++) assert.ok(s[i - 1] >= s[i], `σ not descending at ${i}: ${s[i - 1]} < ${s[i]}`);
}

const sci = (x: number): string => x.toExponential(2);

// ---- singular values and effective rank ----------------------------------------------------

test('identity n×n: every σ = 1 (to 1e-14) and erank = n (to 1e-12)', (t) => {
  let worstS = 0;
  let worstE = 0;
  for (const n of [1, 2, 3, 5, 8, 16, 32]) {
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) a[i * n + i] = 1;
    const s = singularValues(a, n, n);
    assert.equal(s.length, n);
    for (const x of s) worstS = Math.max(worstS, Math.abs(x - 1));
    worstE = Math.max(worstE, Math.abs(erank(a, n, n) - n));
    for (const x of svd(a, n, n).S) worstS = Math.max(worstS, Math.abs(x - 1));
  }
  t.diagnostic(`worst |σ−1| ${sci(worstS)}, worst |erank−n| ${sci(worstE)}`);
  assert.ok(worstS <= 1e-14);
  assert.ok(worstE <= 1e-12);
});

test('rank-1 u·vᵀ: erank = 1 to 1e-6 (the 1e-10 clamp adds ~n·1e-10·ln 1e10), σ₁ = ‖u‖‖v‖ to 1e-12 relative', (t) => {
  const g = gaussian(1);
  let worst = 0;
  let worstS = 0;
  for (const [rows, cols] of [[8, 8], [16, 16], [32, 32], [7, 12], [12, 7], [1, 9]]) {
    const u = randn(rows, 1, g);
    const v = randn(cols, 1, g);
    const a = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) a[i * cols + j] = u[i] * v[j];
    const e = erank(a, rows, cols);
    assert.ok(e >= 1 - 1e-12, `erank ${e} < 1`);
    worst = Math.max(worst, e - 1);
    const s = singularValues(a, rows, cols);
    const norm = Math.hypot(...u) * Math.hypot(...v);
    worstS = Math.max(worstS, Math.abs(s[0] - norm) / norm);
    for (let i = 1; i < s.length; i++) assert.ok(s[i] <= 1e-14 * norm, `σ${i + 1} = ${s[i]}`);
  }
  t.diagnostic(`worst erank−1 ${sci(worst)}, worst σ₁ relative error ${sci(worstS)}`);
  assert.ok(worst <= 1e-6);
  assert.ok(worstS <= 1e-12);
});

test('diagonal matrices with a chosen spectrum: σ exact (to 1e-15 relative), erank = closed form (to 1e-9)', (t) => {
  const spectra = [
    [5, 3, 1, 0.5, 0.25, 0, 0, 0],
    [1, 1, 1, 1],
    [10, 1e-3, 1e-6, 1e-9, 1e-12],
    [2, 2, 1, 1, 0.5, 0.5, 0.1, 0.1, 0.01, 0.01, 1e-4, 1e-4],
  ];
  let worst = 0;
  let worstS = 0;
  for (const spectrum of spectra) {
    const n = spectrum.length;
    // Place the values on the diagonal in a scrambled order, with signs.
    const perm = spectrum.map((_, i) => (i * 7 + 3) % n);
    assert.equal(new Set(perm).size, n);
    const a = new Float64Array(n * n);
    perm.forEach((p, i) => (a[p * n + p] = (i % 2 ? -1 : 1) * spectrum[i]));
    const expected = [...spectrum].sort((x, y) => y - x);
    const s = singularValues(a, n, n);
    expected.forEach((x, i) => (worstS = Math.max(worstS, Math.abs(s[i] - x) / Math.max(x, 1e-300))));
    const closed = erankClosedForm(spectrum);
    worst = Math.max(worst, Math.abs(erank(a, n, n) - closed), Math.abs(effectiveRank(spectrum) - closed));
  }
  // [1, 1, 1, 1] is 4 exactly; [5, 3, 1, 0.5, 0.25, 0, 0, 0] by hand ≈ 3.0947.
  assert.ok(Math.abs(effectiveRank([1, 1, 1, 1]) - 4) <= 1e-14);
  t.diagnostic(`worst erank error ${sci(worst)}, worst σ relative error ${sci(worstS)}`);
  assert.ok(worst <= 1e-9);
  assert.ok(worstS <= 1e-15);
});

test('U·diag(s)·Vᵀ with Householder-random U, V: σ = s to 1e-9 relative, erank to 1e-6 (n = 4, 8, 16, 32, non-square, repeated σ)', (t) => {
  const g = gaussian(2);
  let worstS = 0;
  let worstJ = 0;
  let worstE = 0;
  const cases: Array<[number, number, number[]]> = [];
  for (const n of [4, 8, 16, 32]) {
    cases.push([n, n, Array.from({ length: n }, () => 0.1 + 10 * Math.abs(g()))]);
    cases.push([n, n, Array.from({ length: n }, (_, i) => (i < n / 2 ? 3 : 1))]); // repeated
  }
  cases.push([12, 5, [4, 3, 2, 1, 0.5]], [5, 12, [4, 3, 2, 1, 0.5]], [32, 16, Array.from({ length: 16 }, (_, i) => 16 - i)]);
  cases.push([9, 9, [7, 7, 7, 7, 7, 7, 7, 7, 7]]); // a multiple of an orthogonal matrix
  for (const [rows, cols, s0] of cases) {
    const s = [...s0].sort((x, y) => y - x);
    const a = withSpectrum(rows, cols, s, g);
    const got = singularValues(a, rows, cols);
    const jac = svd(a, rows, cols).S;
    assertDescending(got);
    assertDescending(jac);
    s.forEach((x, i) => {
      worstS = Math.max(worstS, Math.abs(got[i] - x) / x);
      worstJ = Math.max(worstJ, Math.abs(jac[i] - x) / x);
    });
    worstE = Math.max(worstE, Math.abs(erank(a, rows, cols) - erankClosedForm(s)));
  }
  t.diagnostic(`worst σ relative error: singularValues ${sci(worstS)}, svd ${sci(worstJ)}; worst erank error ${sci(worstE)}`);
  assert.ok(worstS <= 1e-9);
  assert.ok(worstJ <= 1e-9);
  assert.ok(worstE <= 1e-6);
});

test('wide spectra (σ from 1 down to 1e-12): σ within 1e-13·σ₁ absolute (backward stability), erank to 1e-9', (t) => {
  const g = gaussian(3);
  let worst = 0;
  let worstJ = 0;
  let worstE = 0;
  for (const n of [8, 16, 32]) {
    const s = Array.from({ length: n }, (_, i) => 10 ** (-12 * i / (n - 1)));
    const a = withSpectrum(n, n, s, g);
    const got = singularValues(a, n, n);
    const jac = svd(a, n, n).S;
    s.forEach((x, i) => {
      worst = Math.max(worst, Math.abs(got[i] - x));
      worstJ = Math.max(worstJ, Math.abs(jac[i] - x));
    });
    worstE = Math.max(worstE, Math.abs(erank(a, n, n) - erankClosedForm(s)));
  }
  t.diagnostic(`worst |σ − s|/σ₁: singularValues ${sci(worst)}, svd ${sci(worstJ)}; worst erank error ${sci(worstE)}`);
  assert.ok(worst <= 1e-13);
  assert.ok(worstJ <= 1e-13);
  assert.ok(worstE <= 1e-9);
});

test('Gaussian matrices: σ² = eigenvalues of AᵀA by cyclic Jacobi, to 1e-8 relative (well-conditioned cases)', (t) => {
  const g = gaussian(4);
  let worst = 0;
  let worstCond = 0;
  for (const [rows, cols] of [[6, 6], [10, 4], [4, 10], [16, 16], [20, 13], [32, 32], [40, 32], [3, 3]]) {
    for (let rep = 0; rep < 3; rep++) {
      const a = randn(rows, cols, g);
      const { g: gm, n } = gram(a, rows, cols);
      const lambda = symmetricEigenvalues(gm, n);
      const cond = Math.sqrt(lambda[0] / lambda[n - 1]);
      if (cond > 1e4) continue; // not a well-conditioned case
      worstCond = Math.max(worstCond, cond);
      const s = singularValues(a, rows, cols);
      const sj = svd(a, rows, cols).S;
      for (let i = 0; i < n; i++) {
        worst = Math.max(worst, Math.abs(s[i] * s[i] - lambda[i]) / lambda[i], Math.abs(sj[i] * sj[i] - lambda[i]) / lambda[i]);
      }
    }
  }
  t.diagnostic(`worst relative error of σ² ${sci(worst)} (condition numbers up to ${worstCond.toFixed(0)})`);
  assert.ok(worst <= 1e-8);
});

test('singularValues (Golub–Kahan–Reinsch) and svd (one-sided Jacobi) agree to 1e-13·σ₁', (t) => {
  const g = gaussian(5);
  let worst = 0;
  for (let rep = 0; rep < 60; rep++) {
    const rows = 1 + (rep % 11) * 3;
    const cols = 1 + ((rep * 7) % 13) * 2;
    const a = randn(rows, cols, g);
    // Make some of them nearly rank-deficient.
    if (rep % 3 === 0) for (let j = 0; j < cols; j++) a[j] = a[cols + j < a.length ? cols + j : j] * (1 + 1e-9);
    const s = singularValues(a, rows, cols);
    const sj = svd(a, rows, cols).S;
    for (let i = 0; i < s.length; i++) worst = Math.max(worst, Math.abs(s[i] - sj[i]) / s[0]);
  }
  t.diagnostic(`worst |σ_GKR − σ_Jacobi|/σ₁ ${sci(worst)}`);
  assert.ok(worst <= 1e-13);
});

// ---- svd and projectRank -------------------------------------------------------------------

test('svd: A = U·diag(S)·Vᵀ to 1e-10·max|A|, U and V orthonormal to 1e-12 (incl. rank-deficient and zero)', (t) => {
  const g = gaussian(6);
  let worstR = 0;
  let worstO = 0;
  const mats: Array<[Float64Array, number, number]> = [];
  for (const [rows, cols] of [[8, 8], [16, 16], [32, 32], [12, 5], [5, 12], [1, 6], [6, 1], [1, 1]]) {
    mats.push([randn(rows, cols, g), rows, cols]);
  }
  for (const [rows, cols, s] of [[8, 8, [5, 3, 1, 0, 0, 0, 0, 0]], [10, 6, [2, 2, 2, 0, 0, 0]], [6, 10, [1, 0, 0, 0, 0, 0]], [16, 16, Array(16).fill(0)]] as Array<[number, number, number[]]>) {
    mats.push([withSpectrum(rows, cols, s, g), rows, cols]);
  }
  const eye = new Float64Array(49);
  for (let i = 0; i < 7; i++) eye[i * 7 + i] = 1;
  mats.push([eye, 7, 7]);
  const diagZero = new Float64Array(16);
  diagZero[0] = 3;
  diagZero[5] = 2; // exactly rank 2, with exactly zero columns
  mats.push([diagZero, 4, 4]);
  for (const [a, rows, cols] of mats) {
    const d = svd(a, rows, cols);
    const r = Math.min(rows, cols);
    assert.equal(d.U.length, rows * r);
    assert.equal(d.V.length, cols * r);
    assert.equal(d.S.length, r);
    assertDescending(d.S);
    worstR = Math.max(worstR, reconstructionError(a, rows, cols, d) / Math.max(maxAbs(a), 1e-300));
    worstO = Math.max(worstO, orthonormalityError(d.U, rows, r), orthonormalityError(d.V, cols, r));
  }
  t.diagnostic(`worst reconstruction error ${sci(worstR)}·max|A|, worst orthonormality error ${sci(worstO)}`);
  assert.ok(worstR <= 1e-10);
  assert.ok(worstO <= 1e-12);
});

test('projectRank: rank ≤ k (σ_{k+1..} < 1e-9·σ₁), ‖A − A_k‖²_F = Σ_{i>k} σᵢ² to 1e-9·‖A‖²_F, k ≥ min(rows, cols) returns A', (t) => {
  const g = gaussian(7);
  let worstTail = 0;
  let worstErr = 0;
  let worstTop = 0;
  for (const [rows, cols] of [[8, 8], [16, 16], [12, 7], [7, 12], [32, 32]]) {
    const a = randn(rows, cols, g);
    const r = Math.min(rows, cols);
    const s = singularValues(a, rows, cols);
    let total = 0;
    for (const x of s) total += x * x;
    for (let k = 0; k <= r + 1; k++) {
      const p = projectRank(a, rows, cols, k);
      assert.equal(p.length, rows * cols);
      if (k >= r) {
        assert.notEqual(p, a);
        assert.deepEqual(Array.from(p), Array.from(a));
        continue;
      }
      const sp = singularValues(p, rows, cols);
      for (let i = k; i < r; i++) worstTail = Math.max(worstTail, sp[i] / s[0]);
      for (let i = 0; i < k; i++) worstTop = Math.max(worstTop, Math.abs(sp[i] - s[i]) / s[0]);
      let err = 0;
      for (let i = 0; i < a.length; i++) err += (a[i] - p[i]) ** 2;
      let tail = 0;
      for (let i = k; i < r; i++) tail += s[i] * s[i];
      worstErr = Math.max(worstErr, Math.abs(err - tail) / total);
    }
  }
  assert.throws(() => projectRank(new Float64Array(4), 2, 2, 1.5), RangeError);
  assert.throws(() => projectRank(new Float64Array(4), 2, 2, -1), RangeError);
  t.diagnostic(`worst σ_{>k}/σ₁ ${sci(worstTail)}, worst |err² − Σσ²_{>k}|/‖A‖²_F ${sci(worstErr)}, top-k σ kept to ${sci(worstTop)}·σ₁`);
  assert.ok(worstTail < 1e-9);
  assert.ok(worstErr <= 1e-9);
  assert.ok(worstTop <= 1e-12);
});

// ---- edge cases ----------------------------------------------------------------------------

test('zero matrix: σ = 0, erank = min(rows, cols) (every σ clamped to 1e-10), svd orthonormal, projection 0', () => {
  for (const [rows, cols] of [[1, 1], [4, 4], [16, 16], [3, 7], [7, 3]]) {
    const a = new Float64Array(rows * cols);
    const r = Math.min(rows, cols);
    assert.deepEqual(Array.from(singularValues(a, rows, cols)), Array(r).fill(0));
    assert.ok(Math.abs(erank(a, rows, cols) - r) <= 1e-12);
    const d = svd(a, rows, cols);
    assert.deepEqual(Array.from(d.S), Array(r).fill(0));
    assert.ok(orthonormalityError(d.U, rows, r) <= 1e-15);
    assert.ok(orthonormalityError(d.V, cols, r) <= 1e-15);
    assert.ok(projectRank(a, rows, cols, 1).every((x) => x === 0));
  }
  assert.equal(singularValues(new Float64Array(0), 0, 5).length, 0);
  assert.equal(effectiveRank([]), 0);
});

test('scaled matrices (×1e6, ×1e-8) keep erank to 1e-12 relative; ×2^±900 scale σ exactly', (t) => {
  const g = gaussian(8);
  let worst = 0;
  for (const [rows, cols] of [[8, 8], [16, 16], [32, 32], [9, 4]]) {
    const a = randn(rows, cols, g);
    const base = erank(a, rows, cols);
    const s = singularValues(a, rows, cols);
    for (const f of [1e6, 1e-8]) {
      worst = Math.max(worst, Math.abs(erank(a.map((x) => x * f), rows, cols) - base) / base);
    }
    // Power-of-two scaling is undone exactly (no overflow at 1e271, no underflow at 1e-271).
    for (const e of [900, -900]) {
      const f = 2 ** e;
      const sf = singularValues(a.map((x) => x * f), rows, cols);
      assert.deepEqual(Array.from(sf), Array.from(s, (x) => x * f));
      // (erank itself is not: at 2^-900 every σ is under the absolute 1e-10 clamp.)
      if (e > 0) assert.equal(erank(a.map((x) => x * f), rows, cols), base);
      const d = svd(a.map((x) => x * f), rows, cols);
      assert.deepEqual(Array.from(d.S), Array.from(svd(a, rows, cols).S, (x) => x * f));
    }
    // Entries at the ends of the range: near the largest double and subnormal.
    const huge = singularValues(a.map((x) => x * 1e300), rows, cols);
    const tiny = singularValues(a.map((x) => x * 1e-310), rows, cols);
    for (let i = 0; i < s.length; i++) {
      assert.ok(Number.isFinite(huge[i]) && Math.abs(huge[i] / 1e300 - s[i]) <= 1e-12 * s[0]);
      assert.ok(Math.abs(tiny[i] / 1e-310 - s[i]) <= 1e-5 * s[0]); // subnormal inputs hold ~15 bits
    }
  }
  t.diagnostic(`worst relative erank change under ×1e6, ×1e-8: ${sci(worst)}`);
  assert.ok(worst <= 1e-12);
});

test('the 1e-10 clamp is absolute: a rank-1 matrix ×1e-8 has erank effectiveRank([σ₁, 1e-10, ...]) > 1', () => {
  const n = 16;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = 1e-8 / n; // σ₁ = 1e-8
  const expected = erankClosedForm([1e-8, ...Array(n - 1).fill(0)]);
  assert.ok(expected > 1.1);
  assert.ok(Math.abs(erank(a, n, n) - expected) <= 1e-9);
});

test('non-finite entries give NaN, not a hang; offsets, Float32Array and number[] inputs; bad shapes throw', () => {
  const a = new Float64Array(16).fill(1);
  a[5] = NaN;
  assert.ok(singularValues(a, 4, 4).every(Number.isNaN));
  assert.ok(Number.isNaN(erank(a, 4, 4)));
  assert.ok(svd(a, 4, 4).S.every(Number.isNaN));
  a[5] = Infinity;
  assert.ok(singularValues(a, 4, 4).every(Number.isNaN));
  assert.ok(Number.isNaN(effectiveRank([1, NaN])));

  const g = gaussian(9);
  const m = randn(5, 3, g);
  const big = new Float64Array(40);
  big.set(m, 17);
  assert.deepEqual(Array.from(singularValues(big, 5, 3, 17)), Array.from(singularValues(m, 5, 3)));
  assert.equal(erank(big, 5, 3, 17), erank(m, 5, 3));
  assert.deepEqual(Array.from(projectRank(big, 5, 3, 1, 17)), Array.from(projectRank(m, 5, 3, 1)));
  assert.deepEqual(svd(big, 5, 3, 17), svd(m, 5, 3));
  const f32 = Float32Array.from(m);
  assert.deepEqual(Array.from(singularValues(f32, 5, 3)), Array.from(singularValues(Float64Array.from(f32), 5, 3)));
  assert.deepEqual(Array.from(singularValues(Array.from(m), 5, 3)), Array.from(singularValues(m, 5, 3)));
  const out = new Float64Array(3);
  assert.equal(singularValuesInto(out, m, 5, 3), out);
  assert.deepEqual(Array.from(out), Array.from(singularValues(m, 5, 3)));

  assert.throws(() => singularValues(m, 5, 4), RangeError);
  assert.throws(() => singularValues(m, 5, 3, 1), RangeError);
  assert.throws(() => erank(m, -1, 3), RangeError);
  assert.throws(() => singularValuesInto(new Float64Array(2), m, 5, 3), RangeError);
});

// ---- composite norm and token collapse -----------------------------------------------------

test('compositeNorm: sqrt(max column sum · max row sum) of |X|, by hand', () => {
  // [[1, -2], [3, 4]]: column sums 4, 6; row sums 3, 7 → sqrt(6·7).
  assert.ok(Math.abs(compositeNorm([1, -2, 3, 4], 2, 2) - Math.sqrt(42)) <= 1e-15);
  assert.ok(Math.abs(compositeNorm([9, 1, -2, 3, 4], 2, 2, 1) - Math.sqrt(42)) <= 1e-15);
  // A row vector [1, -2, 3]: column sums 1, 2, 3; row sum 6 → sqrt(18).
  assert.ok(Math.abs(compositeNorm([1, -2, 3], 1, 3) - Math.sqrt(18)) <= 1e-15);
  assert.equal(compositeNorm([0, 0, 0, 0], 2, 2), 0);
});

test('tokenCollapseRatio: 0 for equal tokens, a 3×2 example by hand (1e-15), scale and token-order invariance (1e-12)', () => {
  // Every token equal → the residual is exactly 0.
  assert.equal(tokenCollapseRatio([1.5, -2, 7, 1.5, -2, 7, 1.5, -2, 7, 1.5, -2, 7], 4, 3), 0);
  assert.equal(tokenCollapseRatio(new Float64Array(12), 4, 3), 0);
  // X = [[1, 2], [3, 4], [5, 9]]: mean token [3, 5]; res = [[-2, -3], [0, -1], [2, 4]].
  // ‖res‖₁ = max(4, 8) = 8, ‖res‖∞ = max(5, 1, 6) = 6; ‖X‖₁ = max(9, 15) = 15, ‖X‖∞ = max(3, 7, 14) = 14.
  // ratio = sqrt(48) / sqrt(210) = sqrt(8/35).
  const x = [1, 2, 3, 4, 5, 9];
  assert.ok(Math.abs(tokenCollapseRatio(x, 3, 2) - Math.sqrt(8 / 35)) <= 1e-15);
  assert.ok(Math.abs(tokenCollapseRatio([0, 0, ...x], 3, 2, 2) - Math.sqrt(8 / 35)) <= 1e-15);

  const g = gaussian(10);
  const tokens = 12;
  const d = 4;
  const w = d * d; // d×d token matrices, flattened
  const m = randn(tokens, w, g);
  const base = tokenCollapseRatio(m, tokens, w);
  assert.ok(base > 0 && base <= 2);
  for (const f of [1e6, 1e-8, -3]) {
    assert.ok(Math.abs(tokenCollapseRatio(m.map((v) => v * f), tokens, w) - base) <= 1e-12 * base);
  }
  const perm = Array.from({ length: tokens }, (_, i) => (i * 5 + 7) % tokens);
  assert.equal(new Set(perm).size, tokens);
  const shuffled = new Float64Array(tokens * w);
  perm.forEach((p, i) => shuffled.set(m.subarray(p * w, (p + 1) * w), i * w));
  assert.ok(Math.abs(tokenCollapseRatio(shuffled, tokens, w) - base) <= 1e-12 * base);
  // Adding the same vector to every token changes X but not the residual.
  const shifted = m.map((v, i) => v + 10 * ((i % w) - 3));
  const expected = (base * compositeNorm(m, tokens, w)) / compositeNorm(shifted, tokens, w);
  assert.ok(Math.abs(tokenCollapseRatio(shifted, tokens, w) - expected) <= 1e-12 * expected);
});
