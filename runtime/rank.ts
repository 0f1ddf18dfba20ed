// Rank metrics of token matrices, in float64, with no dependencies (../shared/MODEL.md,
// "Metrics").
//
// - Singular values (`singularValues`, `erank`): Golub–Kahan–Reinsch — Householder
//   bidiagonalisation, then implicit-shift QR on the bidiagonal (Golub & Reinsch 1970), values
//   only. Backward stable: each σ is within a few ulps·‖A‖ of the exact one (absolute, not
//   relative, accuracy for the tiny ones).
// - The full SVD (`svd`, `projectRank`): one-sided Jacobi (Hestenes 1958) on the columns of A
//   (of Aᵀ when rows < cols), converged to |gᵢ·gⱼ| ≤ m·eps·‖gᵢ‖‖gⱼ‖ for every column pair; U and
//   V are orthonormal to ~m·eps, also for rank-deficient A (the left vectors of zero singular
//   values are completed by Gram–Schmidt).
// Every input is first scaled by a power of two so that max|aᵢⱼ| ≈ 1 (exact, so no overflow or
// underflow for entries anywhere in the float64 range); the σ are scaled back at the end. A
// matrix holding NaN or ±Infinity gives NaN singular values (and a NaN svd), never a hang.
//
// - Effective rank (Roy & Vetterli 2007), exactly as MODEL.md: σ clamped ≥ 1e-10,
//   pᵢ = σᵢ / Σⱼ σⱼ, erank = exp(−Σ pᵢ ln pᵢ). The clamp is absolute, so erank is
//   scale-invariant only while every σ exceeds 1e-10; the all-zero n×n matrix has every σ
//   clamped to 1e-10, equal, so its erank is n (what the definition gives, not 0 or 1).
// - Best rank-k approximation (`projectRank`): the truncated SVD Σ_{i<k} σᵢ uᵢ vᵢᵀ
//   (Eckart–Young), for the rank-projection ablation.
// - Token-collapse ratio (Dong, Cordonnier & Loukas 2021, "Attention is not all you need"):
//   ‖res(X)‖ / ‖X‖ in the composite norm ‖X‖₁,∞ = sqrt(‖X‖₁ ‖X‖∞) (‖·‖₁ max absolute column
//   sum, ‖·‖∞ max absolute row sum), with res(X) = X − 1·x̄ᵀ around the mean token x̄ (the
//   paper's res takes the x minimising the norm; the mean is the usual, deterministic choice).
//
// Matrices are row-major, read from `a[offset ..]`; results are fresh Float64Arrays. Scratch
// is module-level and reused (no allocation per call apart from the result), so the module is
// not re-entrant — fine in single-threaded JS.

const EPS = 2.220446049250313e-16;
/** MODEL.md's clamp on singular values in the effective rank. */
export const ERANK_CLAMP = 1e-10;

let work: Float64Array = new Float64Array(0); // the scaled copy of the matrix (m×n, m ≥ n), or its columns
let diag: Float64Array = new Float64Array(0); // bidiagonal diagonal / column norms
let offd: Float64Array = new Float64Array(0); // bidiagonal superdiagonal
let rot: Float64Array = new Float64Array(0); // accumulated right rotations (Jacobi)
let sigmaScratch: Float64Array = new Float64Array(0);
let order = new Int32Array(0);
let colScratch: Float64Array = new Float64Array(0);

function grow(buf: Float64Array, n: number): Float64Array {
  return buf.length >= n ? buf : new Float64Array(Math.max(n, 2 * buf.length));
}

function checkMatrix(a: ArrayLike<number>, rows: number, cols: number, offset: number, what: string): void {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 0) {
    throw new RangeError(`${what}: rows and cols must be non-negative integers (got ${rows}×${cols})`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + rows * cols > a.length) {
    throw new RangeError(`${what}: a ${rows}×${cols} matrix at offset ${offset} does not fit in an array of ${a.length}`);
  }
}

/**
 * Copies the matrix into `work` as m×n row-major with m = max(rows, cols) (transposing when
 * rows < cols), scaled by a power of two so that its largest |entry| lies in [1, 2).
 * Returns log2 of the scale to undo (σ_true = σ_scaled · 2^e), -Infinity for the zero
 * matrix, NaN when an entry is not finite.
 */
function loadScaled(a: ArrayLike<number>, rows: number, cols: number, offset: number, columnMajor: boolean): number {
  const size = rows * cols;
  let mx = 0;
  for (let i = 0; i < size; i++) {
    const x = Math.abs(a[offset + i]);
    if (x > mx) mx = x;
    else if (x - x !== 0) return NaN; // NaN (Infinity is caught below)
  }
  if (mx === 0) return -Infinity;
  if (mx === Infinity) return NaN;
  let e = Math.floor(Math.log2(mx));
  if (e < -1074) e = -1074;
  // Two exact power-of-two factors, so that 2^-e never overflows for subnormal maxima.
  const s1 = e < -1000 ? 2 ** 600 : 1;
  const s2 = 2 ** (-e - (e < -1000 ? 600 : 0));
  work = grow(work, size);
  const w = work;
  const transpose = columnMajor ? rows >= cols : rows < cols;
  if (!transpose) {
    for (let i = 0; i < size; i++) w[i] = a[offset + i] * s1 * s2;
  } else {
    // w[j*rows + i] = a[i*cols + j]
    for (let i = 0; i < rows; i++) {
      const base = offset + i * cols;
      for (let j = 0; j < cols; j++) w[j * rows + i] = a[base + j] * s1 * s2;
    }
  }
  return e;
}

function pythag(a: number, b: number): number {
  const x = Math.abs(a);
  const y = Math.abs(b);
  if (x > y) {
    const r = y / x;
    return x * Math.sqrt(1 + r * r);
  }
  if (y === 0) return 0;
  const r = x / y;
  return y * Math.sqrt(1 + r * r);
}

/**
 * Golub–Kahan–Reinsch singular values of the m×n (m ≥ n) row-major matrix in `work`, into
 * diag[0..n) (unsorted, non-negative). Returns false if the QR iteration failed to converge
 * (never observed; the values are then best effort).
 */
function gkrValues(m: number, n: number): boolean {
  const a = work;
  const w = diag;
  const rv1 = offd;
  let g = 0;
  let scale = 0;
  let anorm = 0;
  // Householder bidiagonalisation: w = diagonal, rv1[i] = superdiagonal entry (i-1, i).
  for (let i = 0; i < n; i++) {
    const l = i + 1;
    rv1[i] = scale * g;
    g = 0;
    scale = 0;
    let s = 0;
    for (let k = i; k < m; k++) scale += Math.abs(a[k * n + i]);
    if (scale !== 0) {
      const inv = 1 / scale;
      for (let k = i; k < m; k++) {
        const v = a[k * n + i] * inv;
        a[k * n + i] = v;
        s += v * v;
      }
      const f = a[i * n + i];
      g = f >= 0 ? -Math.sqrt(s) : Math.sqrt(s);
      const h = f * g - s;
      a[i * n + i] = f - g;
      const hinv = 1 / h;
      // A[i.., l..] += v (vᵀ A[i.., l..]) / h, row by row (contiguous): rv1[l..] = vᵀ A / h.
      for (let j = l; j < n; j++) rv1[j] = 0;
      for (let k = i; k < m; k++) {
        const rk = k * n;
        const vk = a[rk + i];
        for (let j = l; j < n; j++) rv1[j] += vk * a[rk + j];
      }
      for (let j = l; j < n; j++) rv1[j] *= hinv;
      for (let k = i; k < m; k++) {
        const rk = k * n;
        const vk = a[rk + i];
        for (let j = l; j < n; j++) a[rk + j] += vk * rv1[j];
      }
    }
    w[i] = scale * g;
    g = 0;
    scale = 0;
    s = 0;
    if (i !== n - 1) {
      const row = i * n;
      for (let k = l; k < n; k++) scale += Math.abs(a[row + k]);
      if (scale !== 0) {
        const inv = 1 / scale;
        for (let k = l; k < n; k++) {
          const v = a[row + k] * inv;
          a[row + k] = v;
          s += v * v;
        }
        const f = a[row + l];
        g = f >= 0 ? -Math.sqrt(s) : Math.sqrt(s);
        const h = f * g - s;
        a[row + l] = f - g;
        const hinv = 1 / h;
        for (let k = l; k < n; k++) rv1[k] = a[row + k] * hinv;
        for (let j = l; j < m; j++) {
          const rj = j * n;
          let t = 0;
          for (let k = l; k < n; k++) t += a[rj + k] * a[row + k];
          for (let k = l; k < n; k++) a[rj + k] += t * rv1[k];
        }
      }
    }
    const nrm = Math.abs(w[i]) + Math.abs(rv1[i]);
    if (nrm > anorm) anorm = nrm;
  }
  // Implicit-shift QR on the bidiagonal, deflating from the bottom.
  let ok = true;
  for (let k = n - 1; k >= 0; k--) {
    for (let its = 1; ; its++) {
      let l = k;
      let cancel = true;
      for (; l >= 0; l--) {
        if (l === 0 || Math.abs(rv1[l]) + anorm === anorm) {
          cancel = false;
          break;
        }
        if (Math.abs(w[l - 1]) + anorm === anorm) break;
      }
      if (cancel) {
        // w[l-1] is negligible: chase rv1[l] off the matrix with Givens rotations.
        let c = 0;
        let s = 1;
        for (let i = l; i <= k; i++) {
          const f = s * rv1[i];
          rv1[i] = c * rv1[i];
          if (Math.abs(f) + anorm === anorm) break;
          const gg = w[i];
          const h = pythag(f, gg);
          w[i] = h;
          c = gg / h;
          s = -f / h;
        }
      }
      let z = w[k];
      if (l === k) {
        if (z < 0) w[k] = -z;
        break;
      }
      if (its > 75) {
        ok = false;
        w[k] = Math.abs(z);
        break;
      }
      // Shift from the bottom 2×2 minor.
      let x = w[l];
      const nm = k - 1;
      let y = w[nm];
      let gg = rv1[nm];
      let h = rv1[k];
      let f = ((y - z) * (y + z) + (gg - h) * (gg + h)) / (2 * h * y);
      gg = pythag(f, 1);
      f = ((x - z) * (x + z) + h * (y / (f + (f >= 0 ? gg : -gg)) - h)) / x;
      let c = 1;
      let s = 1;
      for (let j = l; j <= nm; j++) {
        const i = j + 1;
        gg = rv1[i];
        y = w[i];
        h = s * gg;
        gg = c * gg;
        z = pythag(f, h);
        rv1[j] = z;
        c = f / z;
        s = h / z;
        f = x * c + gg * s;
        gg = gg * c - x * s;
        h = y * s;
        y *= c;
        z = pythag(f, h);
        w[j] = z;
        if (z !== 0) {
          c = f / z;
          s = h / z;
        }
        f = c * gg + s * y;
        x = c * y - s * gg;
      }
      rv1[l] = 0;
      rv1[k] = f;
      w[k] = x;
    }
  }
  return ok;
}

function sortDescending(v: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) {
    const x = v[i];
    let j = i - 1;
    while (j >= 0 && v[j] < x) {
      v[j + 1] = v[j];
      j--;
    }
    v[j + 1] = x;
  }
}

/**
 * Singular values, descending, of the rows×cols row-major matrix at a[offset], written into
 * out[0 .. min(rows, cols)). Returns `out`. (The allocation-free form of `singularValues`.)
 */
export function singularValuesInto(out: Float64Array, a: ArrayLike<number>, rows: number, cols: number, offset = 0): Float64Array {
  checkMatrix(a, rows, cols, offset, 'singularValues');
  const r = Math.min(rows, cols);
  if (out.length < r) throw new RangeError(`singularValues: output of ${out.length} for ${r} values`);
  if (r === 0) return out;
  const m = Math.max(rows, cols);
  const e = loadScaled(a, rows, cols, offset, false);
  if (e === -Infinity || Number.isNaN(e)) {
    out.fill(e === -Infinity ? 0 : NaN, 0, r);
    return out;
  }
  diag = grow(diag, r);
  offd = grow(offd, r);
  gkrValues(m, r);
  sortDescending(diag, r);
  const back = 2 ** e;
  for (let i = 0; i < r; i++) out[i] = diag[i] * back;
  return out;
}

/** Singular values, descending, of the rows×cols row-major matrix starting at a[offset]. */
export function singularValues(a: ArrayLike<number>, rows: number, cols: number, offset = 0): Float64Array {
  return singularValuesInto(new Float64Array(Math.min(rows, cols)), a, rows, cols, offset);
}

/**
 * Effective rank (Roy & Vetterli 2007) of a spectrum, as MODEL.md defines it: σ clamped
 * ≥ 1e-10, pᵢ = σᵢ/Σσ, exp(−Σ pᵢ ln pᵢ). In [1, n]; n for all-zero σ (all clamped to the same
 * 1e-10); 0 for an empty spectrum; NaN if any σ is NaN.
 */
export function effectiveRank(sigma: ArrayLike<number>): number {
  return erankOf(sigma, sigma.length);
}

function erankOf(sigma: ArrayLike<number>, n: number): number {
  if (n === 0) return 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const s = sigma[i];
    sum += s < ERANK_CLAMP ? ERANK_CLAMP : s;
  }
  const inv = 1 / sum;
  let h = 0;
  for (let i = 0; i < n; i++) {
    const s = sigma[i];
    const p = (s < ERANK_CLAMP ? ERANK_CLAMP : s) * inv;
    h -= p * Math.log(p);
  }
  return Math.exp(h);
}

/** erank of the rows×cols row-major matrix at a[offset]: effectiveRank(singularValues(...)). */
export function erank(a: ArrayLike<number>, rows: number, cols: number, offset = 0): number {
  const r = Math.min(rows, cols);
  sigmaScratch = grow(sigmaScratch, r);
  singularValuesInto(sigmaScratch, a, rows, cols, offset);
  return erankOf(sigmaScratch, r);
}

/**
 * One-sided Jacobi on the n columns (each of length m, m ≥ n, stored contiguously in `work`).
 * On return `work` holds the columns gⱼ = σⱼ uⱼ, `rot` the n×n right rotations (column j at
 * rot[j*n ..]), diag[j] = ‖gⱼ‖.
 */
function jacobi(m: number, n: number): void {
  const g = work;
  rot = grow(rot, n * n);
  const v = rot;
  v.fill(0, 0, n * n);
  for (let j = 0; j < n; j++) v[j * n + j] = 1;
  diag = grow(diag, n);
  const nrm = diag;
  const tol = Math.max(m, 4) * EPS;
  for (let sweep = 0; sweep < 80; sweep++) {
    for (let j = 0; j < n; j++) {
      let t = 0;
      const o = j * m;
      for (let k = 0; k < m; k++) t += g[o + k] * g[o + k];
      nrm[j] = t;
    }
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      const op = p * m;
      const vp = p * n;
      for (let q = p + 1; q < n; q++) {
        const oq = q * m;
        let gamma = 0;
        for (let k = 0; k < m; k++) gamma += g[op + k] * g[oq + k];
        const alpha = nrm[p];
        const beta = nrm[q];
        if (!(Math.abs(gamma) > tol * Math.sqrt(alpha) * Math.sqrt(beta))) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const az = Math.abs(zeta);
        let t = az > 1e150 ? 0.5 / az : 1 / (az + Math.sqrt(1 + zeta * zeta));
        if (zeta < 0) t = -t;
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let k = 0; k < m; k++) {
          const x = g[op + k];
          const y = g[oq + k];
          g[op + k] = c * x - s * y;
          g[oq + k] = s * x + c * y;
        }
        const vq = q * n;
        for (let k = 0; k < n; k++) {
          const x = v[vp + k];
          const y = v[vq + k];
          v[vp + k] = c * x - s * y;
          v[vq + k] = s * x + c * y;
        }
        nrm[p] = alpha - t * gamma;
        nrm[q] = beta + t * gamma;
      }
    }
    if (!rotated) break;
  }
  for (let j = 0; j < n; j++) {
    let t = 0;
    const o = j * m;
    for (let k = 0; k < m; k++) t += g[o + k] * g[o + k];
    nrm[j] = Math.sqrt(t);
  }
}

/** Below this (for max|a| ≈ 1) a Jacobi column counts as zero and its left vector is completed. */
const ZERO_COLUMN = 1e-150;

/**
 * Singular value decomposition A = U·diag(S)·Vᵀ of the rows×cols row-major matrix at
 * a[offset], r = min(rows, cols): U is rows×r, V is cols×r (both row-major, orthonormal
 * columns), S descending. One-sided Jacobi.
 */
export function svd(a: ArrayLike<number>, rows: number, cols: number, offset = 0): { U: Float64Array; S: Float64Array; V: Float64Array } {
  checkMatrix(a, rows, cols, offset, 'svd');
  const r = Math.min(rows, cols);
  const m = Math.max(rows, cols);
  const U = new Float64Array(rows * r);
  const S = new Float64Array(r);
  const V = new Float64Array(cols * r);
  if (r === 0) return { U, S, V };
  // Jacobi on the columns of B (m×r): B = A when rows ≥ cols, else B = Aᵀ. `work` holds B
  // column-major, i.e. columns contiguous.
  const e = loadScaled(a, rows, cols, offset, true);
  if (Number.isNaN(e)) {
    U.fill(NaN);
    S.fill(NaN);
    V.fill(NaN);
    return { U, S, V };
  }
  if (e === -Infinity) {
    work = grow(work, m * r);
    work.fill(0, 0, m * r);
  }
  jacobi(m, r);
  order = order.length >= r ? order : new Int32Array(Math.max(r, 2 * order.length));
  for (let j = 0; j < r; j++) order[j] = j;
  // Stable insertion sort of column indices by descending norm.
  for (let i = 1; i < r; i++) {
    const x = order[i];
    let j = i - 1;
    while (j >= 0 && diag[order[j]] < diag[x]) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = x;
  }
  const g = work;
  // Left vectors: normalise the nonzero columns; complete the zero ones with unit vectors
  // orthogonal to every vector already placed (Gram–Schmidt, twice, on e_0, e_1, ...).
  const left = rows >= cols ? U : V; // m×r row-major
  const right = rows >= cols ? V : U; // r×r: the rotations
  colScratch = grow(colScratch, m);
  const tmp = colScratch;
  let nextBasis = 0;
  const back = 2 ** e;
  for (let jj = 0; jj < r; jj++) {
    const j = order[jj];
    const sj = diag[j];
    S[jj] = e === -Infinity ? 0 : sj * back;
    if (sj > ZERO_COLUMN) {
      const inv = 1 / sj;
      for (let k = 0; k < m; k++) left[k * r + jj] = g[j * m + k] * inv;
    } else {
      // Columns are in descending order, so every later one is (near) zero too: the vectors
      // placed so far are exactly the columns c < jj.
      for (; nextBasis < m; nextBasis++) {
        tmp.fill(0, 0, m);
        tmp[nextBasis] = 1;
        for (let pass = 0; pass < 2; pass++) {
          for (let c = 0; c < jj; c++) {
            let d = 0;
            for (let k = 0; k < m; k++) d += left[k * r + c] * tmp[k];
            for (let k = 0; k < m; k++) tmp[k] -= d * left[k * r + c];
          }
        }
        let nn = 0;
        for (let k = 0; k < m; k++) nn += tmp[k] * tmp[k];
        if (nn > 0.25) {
          const inv = 1 / Math.sqrt(nn);
          for (let k = 0; k < m; k++) left[k * r + jj] = tmp[k] * inv;
          nextBasis++;
          break;
        }
      }
    }
    for (let k = 0; k < r; k++) right[k * r + jj] = rot[j * r + k];
  }
  return { U, S, V };
}

/**
 * The best rank-k approximation (Eckart–Young) of the rows×cols row-major matrix at a[offset]:
 * Σ_{i<k} σᵢ uᵢ vᵢᵀ, rows×cols row-major. k ≥ min(rows, cols) returns a copy; k = 0 zeros.
 */
export function projectRank(a: ArrayLike<number>, rows: number, cols: number, k: number, offset = 0): Float64Array {
  checkMatrix(a, rows, cols, offset, 'projectRank');
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`projectRank: k must be a non-negative integer (got ${k})`);
  const r = Math.min(rows, cols);
  const out = new Float64Array(rows * cols);
  if (k >= r) {
    for (let i = 0; i < rows * cols; i++) out[i] = a[offset + i];
    return out;
  }
  if (k === 0) return out;
  const { U, S, V } = svd(a, rows, cols, offset);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let t = 0;
      for (let c = 0; c < k; c++) t += U[i * r + c] * S[c] * V[j * r + c];
      out[i * cols + j] = t;
    }
  }
  return out;
}

/** sqrt(‖X‖₁ · ‖X‖∞): max absolute column sum times max absolute row sum, square-rooted. */
export function compositeNorm(x: ArrayLike<number>, rows: number, cols: number, offset = 0): number {
  checkMatrix(x, rows, cols, offset, 'compositeNorm');
  colScratch = grow(colScratch, cols);
  const colSum = colScratch;
  colSum.fill(0, 0, cols);
  let rowMax = 0;
  for (let i = 0; i < rows; i++) {
    const base = offset + i * cols;
    let s = 0;
    for (let j = 0; j < cols; j++) {
      const v = Math.abs(x[base + j]);
      s += v;
      colSum[j] += v;
    }
    if (!(s <= rowMax)) rowMax = s; // NaN propagates
  }
  let colMax = 0;
  for (let j = 0; j < cols; j++) if (!(colSum[j] <= colMax)) colMax = colSum[j];
  return Math.sqrt(colMax) * Math.sqrt(rowMax);
}

let meanScratch: Float64Array = new Float64Array(0);

/**
 * Token-collapse ratio (Dong et al. 2021): X is tokens×width row-major (one token per row; a
 * d×d token matrix flattened has width d²); res = X − 1·mean_over_tokens(X); returns
 * compositeNorm(res) / compositeNorm(X), in [0, 2]; 0 when X is all zeros (or has no tokens).
 */
export function tokenCollapseRatio(x: ArrayLike<number>, tokens: number, width: number, offset = 0): number {
  checkMatrix(x, tokens, width, offset, 'tokenCollapseRatio');
  const whole = compositeNorm(x, tokens, width, offset);
  if (whole === 0 || tokens === 0) return 0;
  meanScratch = grow(meanScratch, 2 * width);
  const mean = meanScratch;
  mean.fill(0, 0, 2 * width);
  for (let i = 0; i < tokens; i++) {
    const base = offset + i * width;
    for (let j = 0; j < width; j++) mean[j] += x[base + j];
  }
  const inv = 1 / tokens;
  for (let j = 0; j < width; j++) mean[j] *= inv;
  // Column sums of |res| in mean[width ..]; row maxima on the fly.
  let rowMax = 0;
  for (let i = 0; i < tokens; i++) {
    const base = offset + i * width;
    let s = 0;
    for (let j = 0; j < width; j++) {
      const v = Math.abs(x[base + j] - mean[j]);
      s += v;
      mean[width + j] += v;
    }
    if (!(s <= rowMax)) rowMax = s;
  }
  let colMax = 0;
  for (let j = 0; j < width; j++) if (!(mean[width + j] <= colMax)) colMax = mean[width + j];
  return (Math.sqrt(colMax) * Math.sqrt(rowMax)) / whole;
}
