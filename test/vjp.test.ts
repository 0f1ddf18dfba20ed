// Every primitive's VJP rule (compiler/autodiff.ts) against central finite differences, in
// float64 on the reference interpreter. Each case is a tiny graph: parameters → one op →
// loss = sum(out ⊙ W) with W a fixed random parameter (not checked), so every output element
// carries a distinct weight; `differentiate` appends the backward graph and the gradient of
// every checked parameter is compared, entry by entry, with (L(x+h) − L(x−h)) / 2h.
//
// Tolerance. h = 1e-6. Truncation error of the central difference is h²/6·|L'''| ≈ 2e-13·|L'''|
// (L''' ≤ ~10² for these inputs: ≤ 2e-11); rounding error is ≈ eps·Σ|terms of L|/h ≈ 2.2e-10·Σ,
// with Σ ≤ ~10² here: ≤ ~2e-8. An entry passes when |autodiff − fd| ≤ 1e-6 + 1e-6·|fd|, a
// margin of ~50× over both, while a wrong rule (a sign, a missing broadcast reduction, a
// transposed operand) is off by O(|gradient|) ≈ 1e-2…1. Inputs keep away from kinks and poles
// (relu/step at 0, clamp/inrange bounds, log/sqrt/rsqrt/recip/div at 0) by ≥ 1e-2 ≫ h.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { differentiate, vjpRules } from '../compiler/autodiff.ts';
import { GraphBuilder } from '../compiler/builder.ts';
import { interpret } from '../compiler/interp.ts';
import type { BinaryFn, Op, OpKind, UnaryFn } from '../compiler/ir.ts';
import { Rng } from '../compiler/rng.ts';
import { fdCheck } from './helpers/fd.ts';

const H = 1e-6;
const ATOL = 1e-6;
const RTOL = 1e-6;

/** A one-op graph under construction: its parameter values, which are checked, its inputs. */
class Case {
  readonly b = new GraphBuilder();
  readonly params: Float64Array[] = [];
  readonly checked: number[] = [];
  readonly inputs: Record<string, number[]> = {};
  constructor(readonly rng: Rng) {}
  /** Standard normal. */
  normal = (): number => this.rng.normal();
  /** Uniform in [0.5, 2]: for log, sqrt, rsqrt, recip and divisors. */
  positive = (): number => 0.5 + 1.5 * this.rng.next();
  /** Normal pushed away from 0 by 0.05: for relu and step. */
  nonzero = (): number => {
    const x = this.rng.normal();
    return Math.sign(x || 1) * (0.05 + Math.abs(x));
  };
  /** A parameter filled by `gen`; its gradient is checked unless `check` is false. */
  p(shape: number[], gen: () => number = this.normal, check = true): number {
    const n = shape.reduce((a, c) => a * c, 1);
    this.params.push(Float64Array.from({ length: n }, gen));
    if (check) this.checked.push(this.params.length - 1);
    return this.b.param({ path: `p${this.params.length - 1}`, shape, init: [] });
  }
  /** An i32 host input. */
  i(name: string, shape: number[], values: number[]): number {
    this.inputs[name] = values;
    return this.b.input(name, shape);
  }
  op(op: Op, inputs: number[], shape?: number[]): number {
    return this.b.node(op, inputs, shape);
  }
}

interface Spec {
  name: string;
  build: (c: Case) => number;
  training?: boolean;
  /** Extra assertions on the checked gradients (index = position in Case.checked) and forward values. */
  after?: (grads: Float64Array[], out: Float64Array) => void;
}

/** Op kinds and unary fns that appear in some checked forward graph. */
const coveredKinds = new Set<OpKind>();
const coveredFns = new Set<UnaryFn>();

function seedOf(name: string): number {
  let s = 17;
  for (const ch of name) s = (Math.imul(s, 31) + ch.charCodeAt(0)) >>> 0;
  return s;
}

/** Builds the case, differentiates sum(out ⊙ W) and compares with finite differences. */
function runSpec(spec: Spec): { checked: number; worst: number; worstAbs: number; failures: string[] } {
  const c = new Case(new Rng(seedOf(spec.name)));
  const out = spec.build(c);
  for (const n of c.b.graph.nodes) {
    coveredKinds.add(n.op.kind);
    if (n.op.kind === 'unary') coveredFns.add(n.op.fn);
  }
  const shape = c.b.shape(out);
  const w = c.p(shape, c.normal, false);
  const prod = c.b.binary('mul', out, w);
  const summed = shape.length ? c.b.sum(prod, [...shape.keys()]) : prod;
  const loss = shape.length ? c.b.reshape(summed, []) : summed;
  c.b.graph.outputs = { loss };
  differentiate(c.b, loss);
  const env = { params: c.params, inputs: c.inputs, training: spec.training ?? false, seed: 11, step: 5 };
  const r = fdCheck(c.b.graph, env, { loss, params: c.checked, h: H, atol: ATOL, rtol: RTOL });
  spec.after?.(
    c.checked.map((pi) => r.grads[pi]),
    interpret(c.b.graph, env, out)[out],
  );
  return r;
}

/** One top-level test per op family, one subtest per case; prints the family's worst error. */
function family(name: string, specs: Spec[]): void {
  test(`VJP ${name}`, async (t: TestContext) => {
    let worst = 0;
    let worstAbs = 0;
    let checked = 0;
    for (const spec of specs) {
      await t.test(spec.name, () => {
        const r = runSpec(spec);
        worst = Math.max(worst, r.worst);
        worstAbs = Math.max(worstAbs, r.worstAbs);
        checked += r.checked;
        assert.ok(r.checked > 0, 'no entries checked');
        assert.deepEqual(r.failures.slice(0, 5), [], `${r.failures.length} of ${r.checked} entries differ`);
      });
    }
    t.diagnostic(`${name}: ${specs.length} cases, ${checked} entries, largest relative error ${worst.toExponential(2)} (|diff| ≤ ${worstAbs.toExponential(2)})`);
  });
}

const nonzeroCount = (a: Float64Array): number => a.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);

// ---- elementwise ---------------------------------------------------------------------------

const unaryDomain: Record<Exclude<UnaryFn, 'silu_grad'>, 'normal' | 'positive' | 'nonzero'> = {
  neg: 'normal',
  exp: 'normal',
  log: 'positive',
  sqrt: 'positive',
  rsqrt: 'positive',
  recip: 'positive',
  square: 'normal',
  sigmoid: 'normal',
  silu: 'normal',
  relu: 'nonzero',
  step: 'nonzero', // piecewise constant: zero gradient (no rule) and zero finite difference
  tanh: 'normal',
};
const unarySpec = (fn: UnaryFn, domain: 'normal' | 'positive' | 'nonzero'): Spec => ({
  name: fn,
  build: (c) => c.b.unary(fn, c.p([2, 3], c[domain])),
});
family(
  'unary',
  Object.entries(unaryDomain).map(([fn, d]) => unarySpec(fn as UnaryFn, d)),
);

// clamp/inrange: values at least 1e-2 from the bounds, about half of them outside.
const LO = -0.5;
const HI = 0.8;
const offBounds = (c: Case) => (): number => {
  for (;;) {
    const x = 3 * c.rng.next() - 1.5;
    if (Math.abs(x - LO) > 1e-2 && Math.abs(x - HI) > 1e-2) return x;
  }
};
family('affine, clamp, inrange', [
  { name: 'affine 1.7x − 0.3', build: (c) => c.b.affine(c.p([2, 3]), 1.7, -0.3) },
  { name: 'affine −0.5x + 2', build: (c) => c.b.affine(c.p([4]), -0.5, 2) },
  {
    name: `clamp [${LO}, ${HI}], inside and outside`,
    build: (c) => c.op({ kind: 'clamp', lo: LO, hi: HI }, [c.p([4, 5], offBounds(c))]),
    after: ([g], out) => {
      const inside = out.filter((v) => v > LO && v < HI).length;
      assert.ok(inside > 2 && inside < 18, `${inside} of 20 inside: want both kinds`);
      assert.equal(nonzeroCount(g), inside, 'gradient is zero exactly outside the range');
    },
  },
  {
    name: 'inrange (zero gradient)',
    build: (c) => c.op({ kind: 'inrange', lo: LO, hi: HI }, [c.p([3, 4], offBounds(c))]),
    after: ([g]) => assert.equal(nonzeroCount(g), 0),
  },
]);

// Broadcasting cases the rules distinguish; each pair runs in both orders and for every fn.
const pairs: Array<[string, number[], number[]]> = [
  ['same shape', [2, 3], [2, 3]],
  ['scalar', [], [2, 3]],
  ['[3,1] with [4]', [3, 1], [4]],
  ['[2,1,5] with [3,1]', [2, 1, 5], [3, 1]],
  ['rank 2 with rank 4', [4, 5], [2, 3, 4, 5]],
  ['size-1 axes on both sides, rank 4', [2, 1, 4, 1], [3, 1, 5]],
];
const binarySpecs: Spec[] = [];
for (const fn of ['add', 'sub', 'mul', 'div'] as BinaryFn[])
  for (const [label, sa, sb] of pairs)
    for (const [x, y, order] of [
      [sa, sb, ''],
      [sb, sa, ' (swapped)'],
    ] as const)
      binarySpecs.push({
        name: `${fn} ${label}${order}`,
        build: (c) => c.b.binary(fn, c.p([...x]), c.p([...y], fn === 'div' ? c.positive : c.normal)),
      });
family('binary add/sub/mul/div with broadcasting', binarySpecs);

// ---- matmul --------------------------------------------------------------------------------

const mm = (name: string, sa: number[], sb: number[], folded = false): Spec => ({
  name: `${name}: [${sa}] @ [${sb}]${folded ? ' (rows folded, GraphBuilder.product)' : ''}`,
  build: (c) => (folded ? c.b.product(c.p(sa), c.p(sb)) : c.b.matmul(c.p(sa), c.p(sb))),
});
family('matmul', [
  mm('plain', [3, 4], [4, 2]),
  mm('batched', [2, 3, 4], [2, 4, 5]),
  mm('batch broadcast on the left', [1, 3, 4], [2, 4, 5]),
  mm('batch broadcast on the right', [2, 3, 4], [1, 4, 5]),
  mm('missing batch axis on the right', [2, 2, 3, 4], [2, 4, 5]),
  mm('rank-2 left, rank-3 right', [3, 4], [2, 4, 5]),
  mm('rank-4 batch, rank-2 weight on the right', [2, 3, 4, 5], [5, 2]),
  mm('rank-2 weight on the left, rank-4 batch', [3, 4], [2, 3, 4, 5]),
  mm('rank-4 batch, rank-2 weight', [2, 3, 4, 5], [5, 2], true),
  mm('size-1 outer dims', [1, 4], [4, 1]),
  mm('size-1 inner dim', [3, 1], [1, 2]),
  mm('size-1 rows and batch', [2, 1, 1, 3], [3, 1]),
  mm('size-1 batch axes both sides', [1, 2, 3], [4, 1, 3, 2]),
]);

// ---- reductions and layout -----------------------------------------------------------------

family('sum, expand, reshape, permute', [
  { name: 'sum over axis 1', build: (c) => c.b.sum(c.p([2, 3, 4]), [1]) },
  { name: 'sum over axes 0 and 2', build: (c) => c.b.sum(c.p([2, 3, 4]), [0, 2]) },
  { name: 'sum over all axes', build: (c) => c.b.sum(c.p([2, 3, 4]), [0, 1, 2]) },
  { name: 'sum of a vector', build: (c) => c.b.sum(c.p([5]), [0]) },
  { name: 'expand [3,1] to [2,3,4]', build: (c) => c.b.expand(c.p([3, 1]), [2, 3, 4]) },
  { name: 'expand [] to [2,3]', build: (c) => c.b.expand(c.p([]), [2, 3]) },
  { name: 'expand [2,1,3] to [2,4,3]', build: (c) => c.b.expand(c.p([2, 1, 3]), [2, 4, 3]) },
  { name: 'reshape [2,6] to [3,4]', build: (c) => c.b.reshape(c.p([2, 6]), [3, 4]) },
  { name: 'reshape [2,3,4] to [6,4]', build: (c) => c.b.reshape(c.p([2, 3, 4]), [6, 4]) },
  { name: 'reshape [] to [1,1]', build: (c) => c.b.reshape(c.p([]), [1, 1]) },
  { name: 'permute [2,0,1]', build: (c) => c.b.permute(c.p([2, 3, 4]), [2, 0, 1]) },
  { name: 'permute [0,2,1,3]', build: (c) => c.b.permute(c.p([2, 3, 4, 5]), [0, 2, 1, 3]) },
  { name: 'transpose', build: (c) => c.b.transpose(c.p([2, 3])) },
]);

family('slice, pad', [
  { name: 'slice axis 0 [1,3)', build: (c) => c.op({ kind: 'slice', axis: 0, start: 1 }, [c.p([4, 5])], [2, 5]) },
  { name: 'slice axis 1 [2,5)', build: (c) => c.op({ kind: 'slice', axis: 1, start: 2 }, [c.p([4, 5])], [4, 3]) },
  { name: 'slice last axis [3,4)', build: (c) => c.op({ kind: 'slice', axis: 2, start: 3 }, [c.p([2, 3, 4])], [2, 3, 1]) },
  { name: 'pad axis 0 at 1', build: (c) => c.op({ kind: 'pad', axis: 0, start: 1 }, [c.p([2, 5])], [4, 5]) },
  { name: 'pad last axis at 1', build: (c) => c.op({ kind: 'pad', axis: 2, start: 1 }, [c.p([2, 3, 2])], [2, 3, 4]) },
]);

// ---- indexing ------------------------------------------------------------------------------

family('gather, scatter_add', [
  {
    name: 'gather [5,3] by [2,3] with repeated indices',
    build: (c) => c.op({ kind: 'gather' }, [c.p([5, 3]), c.i('idx', [2, 3], [0, 2, 2, 4, 0, 2])]),
    after: ([g]) => {
      for (const r of [1, 3]) assert.deepEqual([...g.subarray(3 * r, 3 * r + 3)], [0, 0, 0], `row ${r} is never read`);
    },
  },
  {
    name: 'gather with out-of-range indices (no gradient)',
    build: (c) => c.op({ kind: 'gather' }, [c.p([4, 2]), c.i('idx', [5], [1, 4, -1, 3, 1])]),
  },
  {
    name: 'gather rows of a rank-3 table',
    build: (c) => c.op({ kind: 'gather' }, [c.p([4, 2, 3]), c.i('idx', [3], [3, 0, 3])]),
  },
  {
    name: 'scatter_add [2,3,2] into [4,2] with repeats and an out-of-range index',
    build: (c) => c.op({ kind: 'scatter_add' }, [c.p([2, 3, 2]), c.i('idx', [2, 3], [1, 1, 3, 0, 7, 1])], [4, 2]),
    after: ([g]) => assert.deepEqual([...g.subarray(8, 10)], [0, 0], 'the out-of-range entry gets no gradient'),
  },
]);

// ---- attention pieces and the loss ---------------------------------------------------------

family('causal_mask, softmax, dropout, cross_entropy', [
  {
    name: 'softmax(causal_mask(x)), fill −Infinity',
    build: (c) => c.op({ kind: 'softmax' }, [c.op({ kind: 'causal_mask', fill: -Infinity }, [c.p([2, 4, 4])])]),
    after: ([g], out) => {
      for (let i = 0; i < 32; i++) {
        if (i % 4 > Math.floor(i / 4) % 4) {
          assert.equal(out[i], 0, `masked probability ${i}`);
          assert.equal(g[i], 0, `masked gradient ${i}`);
        }
      }
    },
  },
  {
    name: 'causal_mask with a finite fill',
    build: (c) => c.op({ kind: 'causal_mask', fill: 0.5 }, [c.p([3, 3])]),
  },
  { name: 'softmax over the last axis', build: (c) => c.op({ kind: 'softmax' }, [c.b.affine(c.p([2, 3, 5]), 3)]) },
  { name: 'softmax of a vector', build: (c) => c.op({ kind: 'softmax' }, [c.p([6])]) },
  {
    name: 'dropout p = 0.4, training, fixed seed and step',
    training: true,
    build: (c) => c.op({ kind: 'dropout', p: 0.4, key: 3 }, [c.p([4, 5])]),
    after: ([g]) => {
      const kept = nonzeroCount(g);
      assert.ok(kept > 4 && kept < 20, `${kept} of 20 kept: want a nontrivial mask`);
    },
  },
  {
    name: 'dropout off at evaluation (identity)',
    build: (c) => c.op({ kind: 'dropout', p: 0.4, key: 3 }, [c.p([4, 5])]),
    after: ([g]) => assert.equal(nonzeroCount(g), 20),
  },
  {
    name: 'cross_entropy [2,3,5]',
    build: (c) => c.op({ kind: 'cross_entropy' }, [c.b.affine(c.p([2, 3, 5]), 2), c.i('targets', [2, 3], [0, 4, 2, 2, 1, 3])]),
  },
  {
    name: 'cross_entropy with an out-of-range target',
    build: (c) => c.op({ kind: 'cross_entropy' }, [c.p([3, 4]), c.i('targets', [3], [1, 4, 0])]),
  },
]);

// ---- attention without its scores (compiler/attention.ts) ------------------------------------
// The 'out' part's rule sends the whole softmax derivative to Q and K; lse, recomputed from the
// perturbed Q and K by the finite difference, takes none.

const attentionCase = (L: number, e: number, f: number, p: number, training: boolean): Spec => ({
  name: `attention [2, ${L}, ${e}] x [2, ${L}, ${f}], scale 0.7, dropout ${p}${training ? ', training' : ''}`,
  training,
  build: (c) => {
    const [q, k, v] = [c.p([2, L, e]), c.p([2, L, e]), c.p([2, L, f])];
    const attrs = { scale: 0.7, p, key: 5 };
    const lse = c.op({ kind: 'attention', part: 'lse', ...attrs }, [q, k]);
    return c.op({ kind: 'attention', part: 'out', ...attrs }, [q, k, v, lse]);
  },
});

family('attention', [attentionCase(5, 3, 4, 0, false), attentionCase(6, 2, 3, 0.3, true), attentionCase(4, 3, 3, 0.3, false), attentionCase(1, 2, 2, 0, false)]);

// ---- the rule table itself -----------------------------------------------------------------

const ALL_KINDS: OpKind[] = [
  ...(['input', 'param', 'fill', 'eye', 'unary', 'affine', 'clamp', 'inrange', 'binary', 'matmul', 'sum', 'expand'] as const),
  ...(['reshape', 'permute', 'slice', 'pad', 'gather', 'scatter_add', 'onehot', 'causal_mask', 'softmax'] as const),
  ...(['dropout', 'cross_entropy', 'attention'] as const),
];
/** Kinds with no differentiable input: nothing to check by finite differences. */
const NO_GRADIENT: OpKind[] = ['input', 'param', 'fill', 'eye', 'onehot'];

test('vjpRules has one rule per op kind, and every differentiable kind and unary fn was checked above', () => {
  assert.equal(new Set(ALL_KINDS).size, 24);
  assert.equal(Object.keys(vjpRules).length, ALL_KINDS.length);
  assert.deepEqual(Object.keys(vjpRules).sort(), [...ALL_KINDS].sort());
  const missing = ALL_KINDS.filter((k) => !NO_GRADIENT.includes(k) && !coveredKinds.has(k));
  assert.deepEqual(missing, [], 'op kinds without a finite-difference case');
  const fns = Object.keys(unaryDomain).filter((f) => !coveredFns.has(f as UnaryFn));
  assert.deepEqual(fns, [], 'unary fns without a finite-difference case');
});

test('silu_grad has no rule: differentiating through it is an error', () => {
  const c = new Case(new Rng(1));
  const y = c.b.unary('silu_grad', c.p([2]));
  const loss = c.b.reshape(c.b.sum(y, [0]), []);
  assert.throws(() => differentiate(c.b, loss), /second derivatives are not supported/);
});

test('the check catches a broken rule (sigmoid with its sign flipped)', () => {
  const rules = vjpRules as unknown as Record<string, (...a: unknown[]) => unknown>;
  const original = rules.unary;
  rules.unary = (b, n, g) => {
    const [bb, nn, gg] = [b as GraphBuilder, n as { id: number; op: { fn: UnaryFn } }, g as number];
    if (nn.op.fn !== 'sigmoid') return original(b, n, g);
    return [[0, bb.binary('mul', gg, bb.binary('sub', bb.unary('square', nn.id), nn.id))]];
  };
  try {
    const r = runSpec(unarySpec('sigmoid', 'normal'));
    assert.equal(r.failures.length, r.checked, 'every entry of the broken rule is caught');
  } finally {
    rules.unary = original;
  }
  assert.equal(runSpec(unarySpec('sigmoid', 'normal')).failures.length, 0);
});
