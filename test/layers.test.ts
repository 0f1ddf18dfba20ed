// Each layer of models/stdlib.mt in a small model of its own (MatrixEmbedding → layer →
// MultiProbeHead, or the layer alone where it is the embedding or a head), built by the real
// pipeline (buildGraph: parse, lower, autodiff). Every entry of every parameter of the layer
// under test is checked against central finite differences of the interpreter's loss, in
// float64, with the initial weights perturbed so that eye/ones/zeros initialisers are not a
// special point; dropout is on with its fixed mask. Then the forward math of some layers is
// checked against a hand computation in plain TS that uses none of the compiler's ops.
//
// Tolerance. h = 1e-6; the loss is ≈ log(vocab) ≈ 2 and its third derivatives are O(10), so
// truncation h²/6·|L'''| ≈ 2e-12; rounding ≈ eps·Σ|terms|/h with Σ ≲ 10² over the ~200 forward
// nodes: ≲ 2e-8. An entry passes when |autodiff − fd| ≤ 1e-7 + 1e-5·|fd| (observed ≲ 1e-9).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { interpret, type InterpEnv } from '../compiler/interp.ts';
import type { Graph } from '../compiler/ir.ts';
import * as path from 'node:path';
import { buildGraph } from '../compiler/pipeline.ts';
import { Rng } from '../compiler/rng.ts';
import { initParams } from '../runtime/init.ts';
import { fdCheck } from './helpers/fd.ts';
import { modelsDir, smallTrain, stdlibPath, tempModel } from './helpers/models.ts';

const SIZES = { d: 4, heads: 2, ctx: 5, batch: 2, vocab: 7, probes: 3, pos_rows: 6 };
const { d, ctx, batch, vocab } = SIZES;
const H = 1e-6;
const ATOL = 1e-7;
const RTOL = 1e-5;

const EMBED = 'embed = MatrixEmbedding(vocab, pos_rows, ctx, d)';
const HEAD = 'head = MultiProbeHead(d, probes, vocab)';

/** A model: hypers (SIZES, dropout p), members, and `return <ret>` as its forward. */
function source(members: string[], ret: string, p = 0.1, over: Partial<typeof SIZES> = {}): string {
  const hyper = Object.entries({ ...SIZES, ...over, dropout: p })
    .map(([k, v]) => `  ${k} = ${v}`)
    .join('\n');
  return `import "${stdlibPath}"
hyper {
${hyper}
}
model LayerTest {
${members.map((m) => `  ${m}`).join('\n')}
  forward(tokens) {
    return ${ret}
  }
}
${smallTrain(ctx, batch)}`;
}

interface Built {
  graph: Graph;
  env: InterpEnv & { params: Float64Array[] };
  /** Parameter values by path. */
  byPath: Map<string, Float64Array>;
  index: (path: string) => number;
}

/** Compiles the model, initialises its weights (seed 3) and perturbs them by N(0, 0.05²). */
function build(src: string, seed = 5): Built {
  const { graph } = buildGraph(tempModel(src));
  const rng = new Rng(seed);
  const params = initParams(graph.params, 3).map((p) => Float64Array.from(p, (v) => v + 0.05 * rng.normal()));
  const n = batch * ctx;
  const inputs = { tokens: Array.from({ length: n }, () => rng.int(vocab)), targets: Array.from({ length: n }, () => rng.int(vocab)) };
  const env = { params, inputs, training: true, seed: 11, step: 5 };
  const byPath = new Map(graph.params.map((p, i) => [p.path, params[i]]));
  const index = (path: string): number => {
    const i = graph.params.findIndex((p) => p.path === path);
    assert.ok(i >= 0, `no parameter ${path}`);
    return i;
  };
  return { graph, env, byPath, index };
}

/** Checks every entry of every parameter whose path starts with one of `prefixes`. */
function checkLayer(t: { diagnostic: (s: string) => void }, m: Built, prefixes: string[], label: string): void {
  const chosen = m.graph.params.flatMap((p, i) => (prefixes.some((x) => p.path === x || p.path.startsWith(x + '.')) ? [i] : []));
  assert.ok(chosen.length > 0, 'no parameters under test');
  const r = fdCheck(m.graph, m.env, { loss: m.graph.outputs.loss, params: chosen, h: H, atol: ATOL, rtol: RTOL });
  assert.deepEqual(r.failures.slice(0, 8), [], `${r.failures.length} of ${r.checked} entries differ`);
  // not vacuous: every parameter under test receives some gradient
  const dead = chosen.filter((i) => r.grads[i].every((v) => v === 0)).map((i) => m.graph.params[i].path);
  assert.deepEqual(dead, [], 'parameters with an all-zero gradient');
  t.diagnostic(`${label}: ${chosen.length} parameters, ${r.checked} entries, largest relative error ${r.worst.toExponential(2)} (|diff| ≤ ${r.worstAbs.toExponential(2)})`);
}

const layerCases: Array<{ name: string; members: string[]; ret: string; under: string[] }> = [
  { name: 'RMSNorm', members: [EMBED, 'x = RMSNorm(d)', HEAD], ret: 'head(x(embed(tokens)))', under: ['x'] },
  { name: 'RowThenCol', members: [EMBED, 'x = RowThenCol(d)', HEAD], ret: 'head(x(embed(tokens)))', under: ['x'] },
  {
    name: 'FrobeniusAttention (causal, dropout on)',
    members: [EMBED, 'x = FrobeniusAttention(d, heads, dropout)', HEAD],
    ret: 'head(x(embed(tokens)))',
    under: ['x'],
  },
  {
    name: 'GatedUpdate (and its scale input s)',
    members: [EMBED, 'x = GatedUpdate(d)', 'param s: [] = 0.3', HEAD],
    ret: 'head(x(embed(tokens), s))',
    under: ['x', 's'],
  },
  { name: 'ThinkingLayer (dropout on)', members: [EMBED, 'x = ThinkingLayer(d, dropout)', HEAD], ret: 'head(x(embed(tokens)))', under: ['x'] },
  { name: 'ThinkingBlock', members: [EMBED, 'x = ThinkingBlock(d, heads, dropout)', HEAD], ret: 'head(x(embed(tokens)))', under: ['x'] },
  {
    name: 'MatrixProductAttention (causal, dropout on)',
    members: [EMBED, 'x = MatrixProductAttention(d, heads, dropout)', HEAD],
    ret: 'head(x(embed(tokens)))',
    under: ['x'],
  },
  {
    name: 'MatrixProductThinkingBlock',
    members: [EMBED, 'x = MatrixProductThinkingBlock(d, heads, dropout)', HEAD],
    ret: 'head(x(embed(tokens)))',
    under: ['x'],
  },
  { name: 'MatrixEmbedding', members: [EMBED, HEAD], ret: 'head(embed(tokens))', under: ['embed'] },
  { name: 'MultiProbeHead', members: [EMBED, HEAD], ret: 'head(embed(tokens))', under: ['head'] },
  { name: 'VectorCollapseHead', members: [EMBED, 'head = VectorCollapseHead(d, vocab)'], ret: 'head(embed(tokens))', under: ['head'] },
];

for (const c of layerCases) {
  test(`gradients of ${c.name} match central differences`, (t) => {
    const m = build(source(c.members, c.ret));
    // keep the thinking layer's scale well inside its clamp [0.01, 0.5] (kinks at the bounds)
    for (const [path, v] of m.byPath) if (path.endsWith('.scale')) v[0] = 0.2;
    checkLayer(t, m, c.under, c.name);
  });
}

// ---- ThinkingLayer: the clamp, the gates, the rank-1 write ---------------------------------

const thinking = (p = 0.1): string => source([EMBED, 'x = ThinkingLayer(d, dropout)', HEAD], 'head(x(embed(tokens)))', p);

test('ThinkingLayer: the clamp passes no gradient for scale outside [0.01, 0.5]', () => {
  const m = build(thinking());
  const si = m.index('x.scale');
  for (const [v, inside] of [[0.7, false], [0.005, false], [0.3, true], [0.0101, true], [0.4999, true]] as const) {
    m.env.params[si][0] = v;
    const r = fdCheck(m.graph, m.env, { loss: m.graph.outputs.loss, params: [si], h: H, atol: ATOL, rtol: RTOL });
    const g = r.grads[si][0];
    assert.deepEqual(r.failures, []);
    if (inside) assert.ok(Math.abs(g) > 1e-6, `scale ${v}: gradient ${g} should not vanish`);
    else assert.ok(g === 0, `scale ${v}: gradient ${g}`);
  }
});

test('ThinkingLayer: closed gates cut the gradient of what they gate', () => {
  const m = build(thinking());
  const grads = (): Map<string, Float64Array> => {
    const v = interpret(m.graph, m.env);
    return new Map(m.graph.params.map((p, i) => [p.path, v[m.graph.grads![i]]]));
  };
  const maxAbs = (a: Float64Array): number => a.reduce((s, x) => Math.max(s, Math.abs(x)), 0);
  const open = grads();
  for (const p of ['x.delta.gate.A', 'x.gamma.up.B', 'x.key_col', 'x.val_col']) assert.ok(maxAbs(open.get(p)!) > 1e-6, p);
  // sigmoid(-1000) is exactly 0 in float64: the multiplicative update is switched off
  m.byPath.get('x.b_m')![0] = -1000;
  const noMult = grads();
  for (const p of ['x.delta.gate.A', 'x.delta.up.B', 'x.gamma.value.A', 'x.W_m']) assert.equal(maxAbs(noMult.get(p)!), 0, p);
  assert.ok(maxAbs(noMult.get('x.key_col')!) > 1e-6, 'the rank-1 write still learns');
  m.byPath.get('x.b_m')![0] = -2;
  // ...and the rank-1 write
  m.byPath.get('x.b_w')![0] = -1000;
  const noWrite = grads();
  for (const p of ['x.key_col', 'x.val_col', 'x.W_w']) assert.equal(maxAbs(noWrite.get(p)!), 0, p);
  assert.ok(maxAbs(noWrite.get('x.delta.gate.A')!) > 1e-6, 'the multiplicative update still learns');
});

// ---- forward math by hand ------------------------------------------------------------------

type Mat = number[][];
const matmul = (a: Mat, b: Mat): Mat => a.map((row) => b[0].map((_, j) => row.reduce((s, x, k) => s + x * b[k][j], 0)));
const rowsOf = (flat: Float64Array, cols: number): Mat =>
  Array.from({ length: flat.length / cols }, (_, r) => Array.from(flat.subarray(r * cols, (r + 1) * cols)));
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** Token matrix at (batch b, position l): u vᵀ + 0.1 p qᵀ. */
function embedByHand(m: Built, b: number, l: number): Mat {
  const tok = m.env.inputs.tokens[b * ctx + l];
  const [u, v] = ['embed.u_tok', 'embed.v_tok'].map((p) => rowsOf(m.byPath.get(p)!, d)[tok]);
  const [p, q] = ['embed.p_pos', 'embed.q_pos'].map((x) => rowsOf(m.byPath.get(x)!, d)[l]);
  return u.map((ui, i) => v.map((vj, j) => ui * vj + 0.1 * p[i] * q[j]));
}
/** M / sqrt(mean(M²) + 1e-6) ⊙ g */
function rmsNormByHand(M: Mat, g: Mat): Mat {
  const ms = M.flat().reduce((s, x) => s + x * x, 0) / (d * d);
  return M.map((row, i) => row.map((x, j) => (x / Math.sqrt(ms + 1e-6)) * g[i][j]));
}
/** silu(A X) B */
const rowThenColByHand = (A: Mat, B: Mat, X: Mat): Mat => matmul(matmul(A, X).map((r) => r.map((x) => x * sigmoid(x))), B);
/** p_k = u_kᵀ M v_k, logits = W_out p */
function probeHeadByHand(m: Built, M: Mat): number[] {
  const [U, V] = ['head.U', 'head.V'].map((p) => rowsOf(m.byPath.get(p)!, d));
  const pr = U.map((u, k) => u.reduce((s, ui, i) => s + ui * M[i].reduce((t, x, j) => t + x * V[k][j], 0), 0));
  return rowsOf(m.byPath.get('head.W_out')!, pr.length).map((w) => w.reduce((s, x, k) => s + x * pr[k], 0));
}

/** Compares the model's logits with `byHand(b, l)` at every (batch, position). */
function compareLogits(m: Built, byHand: (b: number, l: number) => number[]): void {
  const logits = interpret(m.graph, m.env, m.graph.outputs.logits)[m.graph.outputs.logits];
  for (let b = 0; b < batch; b++)
    for (let l = 0; l < ctx; l++) {
      const want = byHand(b, l);
      const got = Array.from(logits.subarray((b * ctx + l) * vocab, (b * ctx + l + 1) * vocab));
      got.forEach((x, v) => assert.ok(Math.abs(x - want[v]) <= 1e-12 * Math.max(1, Math.abs(want[v])), `[${b},${l},${v}]: ${x} vs ${want[v]}`));
    }
}

test('forward by hand: MatrixEmbedding → RMSNorm → MultiProbeHead', () => {
  const m = build(source([EMBED, 'x = RMSNorm(d)', HEAD], 'head(x(embed(tokens)))'));
  const g = rowsOf(m.byPath.get('x.g')!, d);
  compareLogits(m, (b, l) => probeHeadByHand(m, rmsNormByHand(embedByHand(m, b, l), g)));
});

test('forward by hand: RowThenCol = silu(A X) B', () => {
  const m = build(source([EMBED, 'x = RowThenCol(d)', HEAD], 'head(x(embed(tokens)))'));
  const [A, B] = ['x.A', 'x.B'].map((p) => rowsOf(m.byPath.get(p)!, d));
  compareLogits(m, (b, l) => probeHeadByHand(m, rowThenColByHand(A, B, embedByHand(m, b, l))));
});

test('forward by hand: VectorCollapseHead vec_i = Σ_j W_ij M_ij, logits = W_out vec', () => {
  const m = build(source([EMBED, 'head = VectorCollapseHead(d, vocab)'], 'head(embed(tokens))'));
  const W = rowsOf(m.byPath.get('head.W')!, d);
  const Wout = rowsOf(m.byPath.get('head.W_out')!, d);
  compareLogits(m, (b, l) => {
    const vec = embedByHand(m, b, l).map((row, i) => row.reduce((s, x, j) => s + W[i][j] * x, 0));
    return Wout.map((w) => w.reduce((s, x, i) => s + x * vec[i], 0));
  });
});

test('forward by hand: ThinkingLayer rank-1 write M + g_w (Mn v)(Mn k)ᵀ, multiplicative gate closed, no dropout', () => {
  const m = build(thinking(0));
  m.byPath.get('x.b_m')![0] = -1000; // g_m = sigmoid(-1000) = 0 exactly
  const g = rowsOf(m.byPath.get('x.norm.g')!, d);
  const [key, val] = ['x.key_col', 'x.val_col'].map((p) => rowsOf(m.byPath.get(p)!, 1));
  const Ww = rowsOf(m.byPath.get('x.W_w')!, d);
  const bw = m.byPath.get('x.b_w')![0];
  compareLogits(m, (b, l) => {
    const M = embedByHand(m, b, l);
    const Mn = rmsNormByHand(M, g);
    const gw = sigmoid(Mn.flat().reduce((s, x, i) => s + x * Ww[Math.floor(i / d)][i % d], 0) + bw);
    const [a, k] = [matmul(Mn, val), matmul(Mn, key)]; // [d, 1] each
    return probeHeadByHand(m, M.map((row, i) => row.map((x, j) => x + gw * a[i][0] * k[j][0])));
  });
});

test('forward by hand: MatrixProductAttention = M + o(out), out_s = Σ_t a_st (Q_s K_tᵀ) V_t with the pair matrices', (t) => {
  // vocab = d·d, and the model returns the layer's output itself as its [B, L, d·d] "logits"
  const m = build(source([EMBED, 'x = MatrixProductAttention(d, heads, dropout)'], 'reshape(x(embed(tokens)), [..., vocab], 2)', 0, { vocab: d * d }));
  const got = interpret(m.graph, m.env, m.graph.outputs.logits)[m.graph.outputs.logits];
  const hd = d / SIZES.heads;
  const W = (p: string): Mat => rowsOf(m.byPath.get(`x.${p}`)!, d);
  const g = W('norm.g');
  const proj = (name: string) => (X: Mat): Mat => rowThenColByHand(W(`${name}.A`), W(`${name}.B`), X);
  const transposed = (a: Mat): Mat => a[0].map((_, j) => a.map((r) => r[j]));
  let worst = 0;
  let oMax = 0;
  let mMax = 0;
  for (let b = 0; b < batch; b++) {
    const Ms = Array.from({ length: ctx }, (_, l) => embedByHand(m, b, l));
    const Mn = Ms.map((M) => rmsNormByHand(M, g));
    const [Q, K, V] = ['q', 'k', 'v'].map((name) => Mn.map(proj(name)));
    for (let s = 0; s < ctx; s++) {
      const out: Mat = [];
      for (let h = 0; h < SIZES.heads; h++) {
        const rows = (X: Mat): Mat => X.slice(h * hd, (h + 1) * hd); // hd × d
        // S_st = Q_s K_tᵀ (hd × hd) for t ≤ s, score tr(S_st) / sqrt(hd), softmax over t
        const S = Array.from({ length: s + 1 }, (_, t2) => matmul(rows(Q[s]), transposed(rows(K[t2]))));
        const score = S.map((St) => St.reduce((a, row, i) => a + row[i], 0) / Math.sqrt(hd));
        const top = Math.max(...score);
        const e = score.map((x) => Math.exp(x - top));
        const a = e.map((x) => x / e.reduce((p, q) => p + q, 0));
        // out_s = Σ_t a_st S_st V_t (hd × d)
        const acc: Mat = Array.from({ length: hd }, () => new Array<number>(d).fill(0));
        S.forEach((St, t2) => matmul(St, rows(V[t2])).forEach((row, i) => row.forEach((x, j) => (acc[i][j] += a[t2] * x))));
        out.push(...acc);
      }
      const o = proj('o')(out);
      const flat = Array.from(got.subarray((b * ctx + s) * d * d, (b * ctx + s + 1) * d * d));
      // the attention's own contribution: got − M against o(out), and got against M + o(out)
      flat.forEach((x, i) => {
        const M = Ms[s][Math.floor(i / d)][i % d];
        const want = o[Math.floor(i / d)][i % d];
        worst = Math.max(worst, Math.abs(x - M - want));
        oMax = Math.max(oMax, Math.abs(want));
        mMax = Math.max(mMax, Math.abs(M));
      });
    }
  }
  t.diagnostic(`max |o(out)| ${oMax.toExponential(2)}, max |M| ${mMax.toExponential(2)}, max |got − M − o(out)| ${worst.toExponential(2)}`);
  assert.ok(oMax > 0.1 * mMax, 'the attention term is not negligible next to the residual');
  assert.ok(worst <= 1e-10 * oMax, `relative error ${worst / oMax}`);
});

test('the vector-collapse and 3D-attention models compile, and one interpreter step has a finite loss that a gradient step lowers', () => {
  for (const file of ['vector_collapse.mt', 'matrix_product_attention.mt']) {
    const { graph } = buildGraph(path.join(modelsDir, file), { sets: { batch: '2', ctx: '8' } });
    const rng = new Rng(1);
    const params = initParams(graph.params, 0).map((p) => Float64Array.from(p));
    const n = 2 * 8;
    const env = { params, inputs: { tokens: Array.from({ length: n }, () => rng.int(256)), targets: Array.from({ length: n }, () => rng.int(256)) }, training: true, seed: 1, step: 1 };
    const values = interpret(graph, env);
    const loss = values[graph.outputs.loss][0];
    assert.ok(Number.isFinite(loss) && loss > 0, `${file}: loss ${loss}`);
    const grads = graph.grads!.map((id) => values[id]);
    const norm = Math.sqrt(grads.reduce((a, gr) => a + gr.reduce((s2, x) => s2 + x * x, 0), 0));
    assert.ok(Number.isFinite(norm) && norm > 0, `${file}: gradient norm ${norm}`);
    params.forEach((p, i) => p.forEach((_, k) => (p[k] -= (1e-3 / norm) * grads[i][k])));
    const after = interpret(graph, env, graph.outputs.loss)[graph.outputs.loss][0];
    assert.ok(after < loss, `${file}: ${loss} -> ${after}`);
  }
});
