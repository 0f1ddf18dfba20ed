// Every WGSL kernel against the interpreter, on single-op graphs with random inputs of awkward
// sizes (not multiples of any tile, size-1 axes, long axes, broadcasting on either side), each
// variant of matmul / sum / softmax forced at least once. Needs a WebGPU device (lavapipe here).
//
// Tolerances (u = 2^-24, the f32 unit roundoff):
//   exact     data movement, selects and comparisons: bit-equal to the f32 of the reference.
//   rel(e)    |gpu - ref| <= e * max(1, |ref|), for elementwise arithmetic and transcendentals
//             (WGSL allows exp/log a few ulp plus an error growing with |x|; 4e-6 = 67 u).
//   sum(c)    sums of k terms (matmul, sum, scatter_add): |gpu - ref| <= c * u * sqrt(k) * M + u * |ref|,
//             M = the same op on |inputs| (sum of |terms|). Rounding errors of a k-term f32 sum
//             behave like a random walk of k steps of size <= u * M / k ... u * M; c = 4 leaves
//             room above the worst ratio observed (reported per family at the end).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GraphBuilder } from '../compiler/builder.ts';
import { interpret, type InterpEnv } from '../compiler/interp.ts';
import { numel, type Graph, type Node, type Op, type UnaryFn } from '../compiler/ir.ts';
import type { Kernel } from '../compiler/kernel.ts';
import { Rng } from '../compiler/rng.ts';
import { f32Down, f32Up, MAX_GROUPS_PER_DIM } from '../compiler/wgsl/common.ts';
import { emitKernel, emitMatmul, emitSoftmax, emitSum, type MatmulPlan } from '../compiler/wgsl/index.ts';
import { GpuExec } from './helpers/gpu-exec.ts';

const U = 2 ** -24;

type Tol = { kind: 'exact' } | { kind: 'rel'; eps: number } | { kind: 'sum'; terms: number; c?: number };
const exact: Tol = { kind: 'exact' };
const rel = (eps: number): Tol => ({ kind: 'rel', eps });
const sumTol = (terms: number): Tol => ({ kind: 'sum', terms });

let gpu: GpuExec;
before(async () => {
  gpu = await GpuExec.open();
});
after(() => {
  gpu.close();
  const rows = [...worst].map(([family, w]) => `${family.padEnd(14)} max rel err ${w.rel.toExponential(2)}  max err/tol ${w.ratio.toFixed(3)}`);
  console.log(['largest errors per op family (rel = |gpu - ref| / max(1, |ref|)):', ...rows].join('\n'));
});

/** Per op family: the largest relative error seen and the largest error / tolerance. */
const worst = new Map<string, { rel: number; ratio: number }>();

/** A single-op test graph: random f32 parameters and i32 inputs, deterministic per seed. */
class Case {
  readonly b = new GraphBuilder();
  readonly params: number[][] = [];
  readonly inputs: Record<string, number[]> = {};
  private rng: Rng;
  constructor(seed = 1) {
    this.rng = new Rng(seed);
  }
  /** An f32 tensor of uniform values in [lo, hi), rounded to f32. */
  f(shape: number[], lo = -1, hi = 1): number {
    this.params.push(Array.from({ length: numel(shape) }, () => Math.fround(lo + (hi - lo) * this.rng.next())));
    return this.b.param({ path: `p${this.params.length}`, shape, init: [] });
  }
  /** An f32 tensor of values with |x| in [0.5, 1.5) and random sign (never 0). */
  nonzero(shape: number[]): number {
    this.params.push(Array.from({ length: numel(shape) }, () => Math.fround((0.5 + this.rng.next()) * (this.rng.next() < 0.5 ? -1 : 1))));
    return this.b.param({ path: `p${this.params.length}`, shape, init: [] });
  }
  /** An i32 input of integers in [lo, hi). */
  idx(shape: number[], lo: number, hi: number): number {
    const name = `i${Object.keys(this.inputs).length}`;
    this.inputs[name] = Array.from({ length: numel(shape) }, () => lo + this.rng.int(hi - lo));
    return this.b.input(name, shape);
  }
  op(op: Op, inputs: number[], shape?: number[]): number {
    return this.b.node(op, inputs, shape);
  }
  get graph(): Graph {
    return this.b.graph;
  }
}

interface CheckOpts {
  env?: Partial<InterpEnv>;
  /** Emit with a forced variant instead of emitKernel's choice. */
  emit?: (node: Node, graph: Graph) => Kernel;
  /** Extra assertion on the kernel (e.g. the variant or the grid). */
  kernel?: (k: Kernel) => void;
}

/** Run node `id` of the case on the GPU and compare with the interpreter. Returns the kernel. */
async function check(family: string, c: Case, id: number, tol: Tol, opts: CheckOpts = {}): Promise<Kernel> {
  const env: InterpEnv = { params: c.params, inputs: c.inputs, training: false, seed: 0, step: 0, ...opts.env };
  const values = interpret(c.graph, env, id);
  const node = c.graph.nodes[id];
  const kernel = opts.emit ? opts.emit(node, c.graph) : emitKernel(c.graph, node);
  assert.ok(kernel, `no kernel for ${node.op.kind}`);
  assert.match(kernel.name, /^[A-Za-z0-9_]+$/);
  const again = opts.emit ? opts.emit(node, c.graph) : emitKernel(c.graph, node);
  assert.equal(again?.code, kernel.code, 'emitting twice gives the same code');
  for (const w of kernel.workgroups) assert.ok(w >= 1 && w <= MAX_GROUPS_PER_DIM, `workgroups ${kernel.workgroups}`);
  opts.kernel?.(kernel);
  const inputs = node.inputs.map((i) => (c.graph.nodes[i].dtype === 'i32' ? Int32Array.from(values[i]) : Float32Array.from(values[i])));
  const got = await gpu.run(kernel, inputs, numel(node.shape), node.dtype === 'i32' ? 'i32' : 'f32', { seed: env.seed, step: env.step, training: env.training });
  const ref = values[id];
  let mag: Float64Array | undefined;
  if (tol.kind === 'sum') {
    // the same op on |operands|: index operands (gather, scatter_add) stay as they are
    const isIndex = (n: Node) => c.graph.nodes.some((user) => ['gather', 'scatter_add'].includes(user.op.kind) && user.inputs[1] === n.id);
    const absInputs = Object.fromEntries(Object.entries(c.inputs).map(([name, v]) => [name, isIndex(c.graph.nodes[c.graph.inputs[name]]) ? v : v.map(Math.abs)]));
    mag = interpret(c.graph, { ...env, params: c.params.map((p) => p.map(Math.abs)), inputs: absInputs }, id)[id];
  }
  const w = worst.get(family) ?? { rel: 0, ratio: 0 };
  let bad = -1;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i];
    const g = got[i];
    const err = Object.is(g, Math.fround(r)) || g === r ? 0 : Math.abs(g - r);
    const allowed = tol.kind === 'exact' ? 0 : tol.kind === 'rel' ? tol.eps * Math.max(1, Math.abs(r)) : (tol.c ?? 4) * U * Math.sqrt(tol.terms) * mag![i] + U * Math.abs(r);
    if (!(err <= allowed) && bad < 0) bad = i;
    if (Number.isFinite(err)) {
      w.rel = Math.max(w.rel, err / Math.max(1, Math.abs(r)));
      if (allowed > 0) w.ratio = Math.max(w.ratio, err / allowed);
    }
  }
  worst.set(family, w);
  if (bad >= 0)
    assert.fail(`${kernel.name}: at ${bad} of ${ref.length}: gpu ${got[bad]}, ref ${ref[bad]} (tolerance ${JSON.stringify(tol)})\n${kernel.code}`);
  return kernel;
}

const ELEMENTWISE_TOL: { [F in UnaryFn]: Tol } = {
  neg: exact,
  relu: exact,
  step: exact,
  square: rel(2 * U),
  recip: rel(4 * U),
  sqrt: rel(4 * U),
  rsqrt: rel(8 * U),
  exp: rel(4e-6),
  log: rel(4e-6),
  sigmoid: rel(4e-6),
  silu: rel(4e-6),
  silu_grad: rel(4e-6),
  tanh: rel(4e-6),
};

describe('kernels: elementwise', () => {
  for (const fn of Object.keys(ELEMENTWISE_TOL) as UnaryFn[]) {
    test(`unary ${fn} on [3, 1001]`, async () => {
      const c = new Case(7);
      const positive = ['log', 'sqrt', 'rsqrt', 'recip'].includes(fn);
      const x = positive ? c.f([3, 1001], 0.05, 20) : c.f([3, 1001], -12, 12);
      await check('unary', c, c.b.unary(fn, x), ELEMENTWISE_TOL[fn]);
    });
  }

  test('affine, clamp, inrange (bounds that are not f32 numbers)', async () => {
    const c = new Case(2);
    const x = c.f([5, 1, 77], -2, 2);
    await check('affine', c, c.b.affine(x, 0.3, -1.7), rel(4 * U));
    await check('clamp', c, c.op({ kind: 'clamp', lo: -0.3, hi: 1.1 }, [x]), exact);
    await check('clamp', c, c.op({ kind: 'clamp', lo: -Infinity, hi: 0.5 }, [x]), exact);
    await check('inrange', c, c.op({ kind: 'inrange', lo: -0.3, hi: 1.1 }, [x]), exact);
    // the bounds themselves and their f32 neighbours
    const lo = 0.1;
    const hi = 0.7;
    c.params.push([f32Down(lo), Math.fround(lo), f32Up(lo), f32Down(hi), Math.fround(hi), f32Up(hi), 0.4, 2]);
    const edges = c.b.param({ path: 'edges', shape: [8], init: [] });
    await check('inrange', c, c.op({ kind: 'inrange', lo, hi }, [edges]), exact);
  });

  const binaryShapes: [number[], number[]][] = [
    [[7, 1, 13], [5, 13]],
    [[1, 13], [7, 5, 1]],
    [[3, 1001], [3, 1001]],
    [[4], []],
    [[2, 1, 3, 1], [1, 5, 1, 4]],
  ];
  for (const fn of ['add', 'sub', 'mul', 'div'] as const)
    for (const [sa, sb] of binaryShapes)
      test(`binary ${fn} [${sa}] and [${sb}]`, async () => {
        const c = new Case(3);
        const a = c.f(sa);
        const b = fn === 'div' ? c.nonzero(sb) : c.f(sb);
        await check('binary', c, c.b.binary(fn, a, b), fn === 'div' ? rel(4 * U) : rel(2 * U));
      });

  test('expand, fill, eye, causal_mask', async () => {
    const c = new Case(4);
    await check('expand', c, c.b.expand(c.f([5, 1, 3]), [2, 5, 4, 3]), exact);
    await check('expand', c, c.b.expand(c.f([1]), [1001]), exact);
    await check('fill', c, c.b.fill(-0.3, [3, 333]), exact);
    await check('fill', c, c.b.fill(-Infinity, [5]), exact);
    await check('eye', c, c.op({ kind: 'eye' }, [], [3, 7, 7]), exact);
    await check('causal_mask', c, c.op({ kind: 'causal_mask', fill: -Infinity }, [c.f([2, 3, 13, 13])]), exact);
    await check('causal_mask', c, c.op({ kind: 'causal_mask', fill: 0 }, [c.f([1, 1])]), exact);
  });

  for (const training of [true, false])
    test(`dropout p = 0.3, ${training ? 'training: the mask of compiler/rng.ts bit for bit' : 'not training: identity'}`, async () => {
      const c = new Case(5);
      const x = c.nonzero([3, 1001]);
      const d = c.op({ kind: 'dropout', p: 0.3, key: 77 }, [x]);
      for (const [seed, step] of [
        [12345, 7],
        [0xdeadbeef, 123456],
      ]) {
        const env = { training, seed, step };
        const k = await check('dropout', c, d, rel(2 * U), { env, kernel: (k) => assert.ok(k.usesStep) });
        // exact mask: zero exactly where the interpreter drops
        const ref = interpret(c.graph, { params: c.params, inputs: {}, ...env }, d)[d];
        const got = await gpu.run(k, [Float32Array.from(c.params[0])], ref.length, 'f32', env);
        let dropped = 0;
        ref.forEach((r, i) => {
          assert.equal(got[i] === 0, r === 0, `mask differs at ${i}`);
          dropped += r === 0 ? 1 : 0;
        });
        if (training) assert.ok(dropped > 800 && dropped < 1000, `dropped ${dropped} of 3003 at p = 0.3`);
        else assert.equal(dropped, 0);
      }
    });
});

describe('kernels: layout', () => {
  test('permute, including i32 and size-1 axes', async () => {
    const c = new Case(6);
    await check('permute', c, c.b.permute(c.f([3, 1, 5, 7]), [2, 0, 3, 1]), exact);
    await check('permute', c, c.b.transpose(c.f([2, 37, 45])), exact);
    await check('permute', c, c.b.permute(c.idx([4, 3, 2], -5, 5), [1, 2, 0]), exact);
  });

  test('slice and pad along each axis', async () => {
    const c = new Case(8);
    const x = c.f([3, 17, 5]);
    await check('slice', c, c.op({ kind: 'slice', axis: 1, start: 4 }, [x], [3, 9, 5]), exact);
    await check('slice', c, c.op({ kind: 'slice', axis: 0, start: 2 }, [x], [1, 17, 5]), exact);
    await check('slice', c, c.op({ kind: 'slice', axis: 1, start: 1 }, [c.idx([3, 4], 0, 9)], [3, 2]), exact);
    await check('pad', c, c.op({ kind: 'pad', axis: 1, start: 4 }, [c.f([3, 9, 5])], [3, 17, 5]), exact);
    await check('pad', c, c.op({ kind: 'pad', axis: 2, start: 0 }, [c.f([2, 3, 1])], [2, 3, 6]), exact);
  });

  test('gather with out-of-range indices', async () => {
    const c = new Case(9);
    await check('gather', c, c.op({ kind: 'gather' }, [c.f([256, 3, 3]), c.idx([5, 67], -3, 260)]), exact);
    await check('gather', c, c.op({ kind: 'gather' }, [c.f([11]), c.idx([1001], 0, 11)]), exact);
  });

  test('scatter_add (the inverse of gather), ragged columns', async () => {
    const c = new Case(10);
    for (const [rest, v] of [
      [[3, 3], 256],
      [[8, 8], 256],
      [[], 13],
      [[17], 5],
      [[130], 7], // more columns than one thread owns, not a multiple of them
    ] as [number[], number][]) {
      const idx = c.idx([5, 67], -2, v + 2);
      const g = c.f([5, 67, ...rest]);
      await check('scatter_add', c, c.op({ kind: 'scatter_add' }, [g, idx], [v, ...rest]), sumTol(335));
    }
  });

  test('onehot', async () => {
    const c = new Case(11);
    await check('onehot', c, c.op({ kind: 'onehot' }, [c.idx([7, 13], -1, 258)], [7, 13, 256]), exact);
  });
});

/** Every matmul variant, forced: tiles that do not divide the sizes, k not a multiple of bk. */
const PLANS: MatmulPlan[] = [
  { variant: 'regs', tm: 8, tn: 8 },
  { variant: 'regs', tm: 16, tn: 16 },
  { variant: 'regs', tm: 3, tn: 5 },
  { variant: 'tiled', tm: 4, tn: 4, wm: 8, wn: 8, bk: 16 },
  { variant: 'tiled', tm: 8, tn: 8, wm: 4, wn: 4, bk: 32 },
  { variant: 'splitk', tm: 8, tn: 8, threads: 64 },
  { variant: 'splitk', tm: 2, tn: 3, threads: 32 },
];

const MATMUL_SHAPES: [number[], number[]][] = [
  [[2, 3], [3, 2]],
  [[1, 9], [9, 1]],
  [[3, 1, 5, 7], [4, 7, 6]], // batch broadcast on both sides
  [[16, 5, 8, 8], [8, 8]], // tokens times a shared matrix: folded into rows
  [[8, 8], [16, 5, 8, 8]], // shared matrix times tokens
  [[2, 37, 70], [70, 45]],
  [[45, 70], [2, 3, 70, 1]], // logits style: folded into columns
  [[2, 3, 33, 20], [2, 3, 20, 35]], // attention-score style
  [[7, 1000], [1000, 3]], // long k
];

describe('kernels: matmul', () => {
  for (const [sa, sb] of MATMUL_SHAPES)
    test(`[${sa}] @ [${sb}], every variant`, async () => {
      const c = new Case(12);
      const m = c.b.matmul(c.f(sa), c.f(sb));
      const k = sa[sa.length - 1];
      await check('matmul', c, m, sumTol(k));
      for (const plan of PLANS) await check('matmul', c, m, sumTol(k), { emit: (node, graph) => emitMatmul(node, graph, () => plan) });
    });

  test('the plan follows the shapes', () => {
    const variant = (sa: number[], sb: number[]) => {
      const c = new Case();
      const m = c.b.matmul(c.f(sa), c.f(sb));
      return /variant (\w+)/.exec(emitKernel(c.graph, c.graph.nodes[m])!.code)![1];
    };
    assert.equal(variant([16, 64, 8, 8], [8, 8]), 'regs');
    assert.equal(variant([8, 8192], [8192, 8]), 'splitk');
    assert.equal(variant([4, 512, 128], [4, 128, 512]), 'regs');
  });
});

describe('kernels: reductions', () => {
  const sums: [number[], number[]][] = [
    [[16, 64, 8, 8], [0, 1, 2, 3]],
    [[16, 64, 8, 8], [0, 2, 3]],
    [[16, 64, 8, 8], [0, 1]],
    [[3, 1001], [1]],
    [[1001, 3], [0]],
    [[5, 1, 7], [1]],
    [[2, 3, 4, 5], [1, 3]],
    [[100003], [0]],
  ];
  for (const [shape, axes] of sums)
    test(`sum [${shape}] over [${axes}], both variants`, async () => {
      const c = new Case(13);
      const s = c.b.sum(c.f(shape), axes);
      const terms = axes.reduce((a, ax) => a * shape[ax], 1);
      await check('sum', c, s, sumTol(terms));
      for (const v of ['rows', 'tree'] as const) await check('sum', c, s, sumTol(terms), { emit: (node, graph) => emitSum(node, graph, v) });
    });

  for (const shape of [[3, 5, 13], [2, 3, 64, 64], [4, 3000], [1, 1], [7, 1]])
    test(`softmax [${shape}], both variants`, async () => {
      const c = new Case(14);
      const s = c.op({ kind: 'softmax' }, [c.f(shape, -20, 20)]);
      await check('softmax', c, s, rel(1e-6));
      for (const v of ['rows', 'tree'] as const) await check('softmax', c, s, rel(1e-6), { emit: (node, graph) => emitSoftmax(node, graph, v) });
    });

  test('softmax after a causal mask (-Infinity entries)', async () => {
    const c = new Case(15);
    const masked = c.op({ kind: 'causal_mask', fill: -Infinity }, [c.f([2, 37, 37], -5, 5)]);
    const s = c.op({ kind: 'softmax' }, [masked]);
    for (const v of ['rows', 'tree'] as const) await check('softmax', c, s, rel(1e-6), { emit: (node, graph) => emitSoftmax(node, graph, v) });
  });

  for (const [lead, v] of [
    [[16, 64], 256],
    [[3], 1001],
    [[1], 5],
    [[2, 333], 17],
  ] as [number[], number][])
    test(`cross_entropy [${lead}, ${v}] with out-of-range targets`, async () => {
      const c = new Case(16);
      const ce = c.op({ kind: 'cross_entropy' }, [c.f([...lead, v], -8, 8), c.idx(lead, -1, v + 1)]);
      await check('cross_entropy', c, ce, rel(2e-6));
    });
});

// The attention parts (compiler/wgsl/attention.ts): L past one block of 64 rows and across
// tile edges, odd e and f, rows held as vec4s, several slices, dropout on while training. Scores are sums of e
// products and every output a sum of up to L terms of exp(·) times values in [-1, 1]:
// rel(4e-6) (67 u, as for exp) on O(1) values; the worst seen is printed at the end.
describe('kernels: attention', () => {
  const sizes: Array<{ lead: number[]; L: number; e: number; f: number; p: number }> = [
    { lead: [3], L: 70, e: 5, f: 3, p: 0.25 },
    { lead: [2, 2], L: 9, e: 8, f: 8, p: 0 },
    { lead: [1], L: 130, e: 40, f: 24, p: 0.1 },
    { lead: [2], L: 1, e: 3, f: 2, p: 0.5 },
    { lead: [2], L: 70, e: 32, f: 12, p: 0.1 }, // rows of vec4s in registers (multiples of 4, up to 32 floats)
    { lead: [1], L: 40, e: 33, f: 36, p: 0.1 }, // past 32 floats: arrays of f32 (e) and of vec4 (f)
  ];
  for (const { lead, L, e, f, p } of sizes)
    test(`lse, out, dq, dk, dv on [${lead}, ${L}, ${e}] x [${lead}, ${L}, ${f}], dropout ${p}`, async () => {
      const c = new Case(21);
      const attrs = { scale: 1 / Math.sqrt(e), p, key: 3 };
      const [q, k, v] = [c.f([...lead, L, e], -2, 2), c.f([...lead, L, e], -2, 2), c.f([...lead, L, f])];
      const lse = c.op({ kind: 'attention', part: 'lse', ...attrs }, [q, k]);
      const out = c.op({ kind: 'attention', part: 'out', ...attrs }, [q, k, v, lse]);
      const g = c.f([...lead, L, f]);
      const d = c.b.sum(c.b.binary('mul', g, out), [lead.length + 1]);
      const env = { training: p > 0, seed: 9, step: 4 };
      for (const [part, ins] of [
        ['lse', [q, k]],
        ['out', [q, k, v, lse]],
        ['dq', [q, k, v, lse, g, d]],
        ['dk', [q, k, v, lse, g, d]],
        ['dv', [q, k, lse, g]],
      ] as const) {
        const id = part === 'lse' ? lse : part === 'out' ? out : c.op({ kind: 'attention', part, ...attrs }, [...ins]);
        await check('attention', c, id, rel(4e-6), { env });
      }
    });
});

describe('kernels: dispatch limits and determinism', () => {
  test('a huge elementwise op is folded into a grid within 65535 per dimension', () => {
    const c = new Case();
    const x = c.b.input('x', [70_000_000]);
    for (const id of [c.b.affine(x, 2), c.b.sum(c.b.reshape(x, [35_000_000, 2]), [1]), c.b.binary('add', x, x)]) {
      const k = emitKernel(c.graph, c.graph.nodes[id])!;
      assert.ok(k.workgroups.every((w) => w <= MAX_GROUPS_PER_DIM));
      assert.ok(k.workgroups[1] > 1, `folded: ${k.workgroups}`);
    }
  });

  test('a folded dispatch computes every element (sum of [4194321, 2] over axis 1)', async () => {
    const c = new Case(17);
    const n = 65536 * 64 + 17;
    const s = c.b.sum(c.f([n, 2]), [1]);
    await check('sum', c, s, sumTol(2), { kernel: (k) => assert.ok(k.workgroups[1] > 1, `folded: ${k.workgroups}`) });
  });

  test('a folded elementwise dispatch computes every element (65535 * 256 + 17 elements)', async () => {
    const c = new Case(18);
    const x = c.f([65535 * 256 + 17]);
    await check('affine', c, c.b.affine(x, -2, 0.5), rel(4 * U), { kernel: (k) => assert.ok(k.workgroups[1] > 1, `folded: ${k.workgroups}`) });
  });

  test('kernels depend on (op, shapes) only: same name and byte-identical code', () => {
    const make = (prefix: number) => {
      const c = new Case();
      for (let i = 0; i < prefix; i++) c.f([2]);
      c.b.scope = `blocks.${prefix}`;
      const a = c.f([16, 64, 8, 8]);
      const ids = [c.b.matmul(a, c.f([8, 8])), c.op({ kind: 'dropout', p: 0.1, key: 3 }, [a]), c.b.sum(a, [0, 1]), c.op({ kind: 'softmax' }, [a])];
      return ids.map((id) => emitKernel(c.graph, c.graph.nodes[id])!);
    };
    const [k1, k2] = [make(0), make(3)];
    k1.forEach((k, i) => {
      assert.equal(k.name, k2[i].name);
      assert.equal(k.code, k2[i].code);
    });
    assert.notEqual(k1[0].name, k1[2].name);
  });

  test('i32 operands of arithmetic are read as f32', async () => {
    const c = new Case(19);
    const t = c.idx([5, 7], -50, 50);
    await check('i32 operands', c, c.b.binary('add', t, c.f([7])), rel(2 * U));
    await check('i32 operands', c, c.b.sum(t, [0]), exact);
    await check('i32 operands', c, c.b.matmul(t, c.f([7, 3])), sumTol(7));
    await check('i32 operands', c, c.op({ kind: 'pad', axis: 0, start: 1 }, [t], [6, 7]), exact);
    await check('i32 operands', c, c.op({ kind: 'gather' }, [t, c.idx([4], 0, 5)]), exact);
    await check('i32 operands', c, c.op({ kind: 'softmax' }, [c.idx([3, 4], -3, 3)]), rel(1e-6));
  });

  test('different attributes or dtypes give different names', () => {
    const c = new Case();
    const x = c.f([4, 4]);
    const t = c.idx([4, 4], 0, 4);
    const ids = [
      c.b.affine(x, -1e-7),
      c.b.affine(x, -1e7),
      c.b.affine(x, 1e7),
      c.b.sum(x, [0]),
      c.b.sum(x, [1]),
      c.b.transpose(x),
      c.b.transpose(t),
      c.op({ kind: 'pad', axis: 0, start: 1 }, [x], [5, 4]),
      c.op({ kind: 'pad', axis: 0, start: 1 }, [t], [5, 4]),
      c.op({ kind: 'dropout', p: 0.1, key: 1 }, [x]),
      c.op({ kind: 'dropout', p: 0.2, key: 1 }, [x]),
    ];
    const names = ids.map((id) => emitKernel(c.graph, c.graph.nodes[id])!.name);
    assert.equal(new Set(names).size, names.length, names.join(' '));
  });

  test('dropout sites alike share one kernel: the key is bound at run time', () => {
    const c = new Case();
    const x = c.f([4, 4]);
    const [a, b] = [1, 2].map((key) => emitKernel(c.graph, c.graph.nodes[c.op({ kind: 'dropout', p: 0.1, key }, [x])])!);
    assert.equal(a.name, b.name);
    assert.equal(a.code, b.code);
    assert.deepEqual([a.keys, b.keys], [[1], [2]]);
  });

  test('input, param and reshape have no kernel', () => {
    const c = new Case();
    const x = c.f([4]);
    const t = c.b.input('t', [4]);
    for (const id of [x, t, c.b.reshape(x, [2, 2])]) assert.equal(emitKernel(c.graph, c.graph.nodes[id]), null);
  });
});
