// The reference interpreter against hand-computed values, one or more cases per op kind.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GraphBuilder } from '../compiler/builder.ts';
import { interpret, type InterpEnv } from '../compiler/interp.ts';
import type { Op } from '../compiler/ir.ts';
import { dropoutKeep } from '../compiler/rng.ts';

/** A graph under construction with its parameter and input values. */
class G {
  readonly b = new GraphBuilder();
  readonly params: number[][] = [];
  readonly inputs: Record<string, number[]> = {};
  /** A parameter holding `values` (row-major). */
  p(shape: number[], values: number[]): number {
    this.params.push(values);
    return this.b.param({ path: `p${this.params.length}`, shape, init: [] });
  }
  /** An i32 input holding `values`. */
  i(name: string, shape: number[], values: number[]): number {
    this.inputs[name] = values;
    return this.b.input(name, shape);
  }
  op(op: Op, inputs: number[], shape?: number[]): number {
    return this.b.node(op, inputs, shape);
  }
  /** The value of node `id`. */
  run(id: number, env: Partial<InterpEnv> = {}): number[] {
    const vals = interpret(this.b.graph, { params: this.params, inputs: this.inputs, training: false, seed: 0, step: 0, ...env });
    return Array.from(vals[id]);
  }
  shape(id: number): number[] {
    return this.b.shape(id);
  }
}

function close(got: number[], want: number[], eps = 1e-12): void {
  assert.equal(got.length, want.length, `length ${got.length} != ${want.length}`);
  got.forEach((g, i) => {
    const ok = g === want[i] || Math.abs(g - want[i]) <= eps * Math.max(1, Math.abs(want[i]));
    assert.ok(ok, `at ${i}: got ${g}, want ${want[i]}\n  got  [${got.join(', ')}]\n  want [${want.join(', ')}]`);
  });
}

describe('interp: creation and elementwise', () => {
  test('fill and eye', () => {
    const g = new G();
    close(g.run(g.b.fill(2.5, [2, 2])), [2.5, 2.5, 2.5, 2.5]);
    const e = g.op({ kind: 'eye' }, [], [2, 3, 3]);
    close(g.run(e), [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
  });

  test('unary functions', () => {
    const g = new G();
    const x = g.p([4], [-2, 0, 0.5, 3]);
    const f = (fn: Parameters<GraphBuilder['unary']>[0]) => g.run(g.b.unary(fn, x));
    close(f('neg'), [2, -0, -0.5, -3]);
    close(f('square'), [4, 0, 0.25, 9]);
    close(f('relu'), [0, 0, 0.5, 3]);
    close(f('step'), [0, 0, 1, 1]);
    close(f('exp'), [0.1353352832366127, 1, 1.6487212707001282, 20.085536923187668]);
    close(f('sigmoid'), [0.11920292202211755, 0.5, 0.6224593312018546, 0.9525741268224334]);
    close(f('silu'), [-0.2384058440442351, 0, 0.3112296656009273, 2.8577223804673]);
    // s (1 + x (1 - s)): at 0 it is 1/2; at 3: 0.95257 * (1 + 3 * 0.04743) = 1.0881
    close(f('silu_grad'), [-0.0907842408, 0.5, 0.7399611, 1.0881042], 1e-7);
    close(f('tanh'), [-0.9640275800758169, 0, 0.46211715726000974, 0.9950547536867305]);
    const y = g.p([3], [0.25, 1, 4]);
    close(g.run(g.b.unary('log', y)), [-1.3862943611198906, 0, 1.3862943611198906]);
    close(g.run(g.b.unary('sqrt', y)), [0.5, 1, 2]);
    close(g.run(g.b.unary('rsqrt', y)), [2, 1, 0.5]);
    close(g.run(g.b.unary('recip', y)), [4, 1, 0.25]);
  });

  test('affine, clamp and inrange (bounds inclusive)', () => {
    const g = new G();
    const x = g.p([5], [-2, -1, 0, 1, 2]);
    close(g.run(g.b.affine(x, 2, 1)), [-3, -1, 1, 3, 5]);
    close(g.run(g.op({ kind: 'clamp', lo: -1, hi: 1.5 }, [x])), [-1, -1, 0, 1, 1.5]);
    close(g.run(g.op({ kind: 'inrange', lo: -1, hi: 1 }, [x])), [0, 1, 1, 1, 0]);
  });

  test('binary broadcasting [3, 1] with [4]', () => {
    const g = new G();
    const a = g.p([3, 1], [1, 2, 3]);
    const b = g.p([4], [10, 20, 30, 40]);
    const add = g.b.binary('add', a, b);
    assert.deepEqual(g.shape(add), [3, 4]);
    close(g.run(add), [11, 21, 31, 41, 12, 22, 32, 42, 13, 23, 33, 43]);
    close(g.run(g.b.binary('sub', b, a)), [9, 19, 29, 39, 8, 18, 28, 38, 7, 17, 27, 37]);
    close(g.run(g.b.binary('div', a, b)).slice(0, 4), [0.1, 0.05, 1 / 30, 0.025]);
    close(g.run(g.b.binary('mul', a, b)).slice(8), [30, 60, 90, 120]);
  });

  test('dropout: identity when not training, the rng.ts mask when training', () => {
    const g = new G();
    const vals = Array.from({ length: 1000 }, (_, i) => i + 1);
    const x = g.p([10, 100], vals);
    const d = g.op({ kind: 'dropout', p: 0.25, key: 3 }, [x]);
    close(g.run(d), vals);
    const out = g.run(d, { training: true, seed: 11, step: 5 });
    let kept = 0;
    out.forEach((v, i) => {
      const keep = dropoutKeep(11, 5, 3, i, 0.25);
      assert.equal(v, keep ? vals[i] * (1 / 0.75) : 0);
      kept += keep ? 1 : 0;
    });
    assert.ok(kept > 700 && kept < 800, `kept ${kept} of 1000 at p = 0.25`);
    assert.notDeepEqual(g.run(d, { training: true, seed: 11, step: 6 }), out, 'the mask changes with the step');
  });
});

describe('interp: matmul', () => {
  test('2x3 @ 3x2', () => {
    const g = new G();
    const c = g.b.matmul(g.p([2, 3], [1, 2, 3, 4, 5, 6]), g.p([3, 2], [7, 8, 9, 10, 11, 12]));
    close(g.run(c), [58, 64, 139, 154]);
  });

  test('batch axes broadcast on either side', () => {
    const g = new G();
    const a = g.p([2, 1, 2, 2], [1, 0, 0, 1, 2, 0, 0, 2]); // I and 2I
    const b = g.p([3, 2, 2], [1, 2, 3, 4, 0, 1, 1, 0, 5, 6, 7, 8]);
    const c = g.b.matmul(a, b);
    assert.deepEqual(g.shape(c), [2, 3, 2, 2]);
    close(g.run(c), [1, 2, 3, 4, 0, 1, 1, 0, 5, 6, 7, 8, 2, 4, 6, 8, 0, 2, 2, 0, 10, 12, 14, 16]);
    const w = g.p([2, 2], [0, 1, 1, 0]); // swaps rows when on the left
    close(g.run(g.b.matmul(w, b)), [3, 4, 1, 2, 1, 0, 0, 1, 7, 8, 5, 6]);
  });
});

describe('interp: reductions', () => {
  test('sum keeps reduced axes as size 1', () => {
    const g = new G();
    const x = g.p([2, 3], [1, 2, 3, 4, 5, 6]);
    const s0 = g.b.sum(x, [0]);
    assert.deepEqual(g.shape(s0), [1, 3]);
    close(g.run(s0), [5, 7, 9]);
    close(g.run(g.b.sum(x, [1])), [6, 15]);
    const all = g.b.sum(x, [0, 1]);
    assert.deepEqual(g.shape(all), [1, 1]);
    close(g.run(all), [21]);
    const y = g.p([2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
    close(g.run(g.b.sum(y, [0, 2])), [1 + 2 + 5 + 6, 3 + 4 + 7 + 8]);
  });

  test('softmax of [1, 2, 3], stable for large and -Infinity entries', () => {
    const g = new G();
    const want = [0.09003057317038046, 0.24472847105479764, 0.6652409557748219];
    close(g.run(g.op({ kind: 'softmax' }, [g.p([3], [1, 2, 3])])), want);
    close(g.run(g.op({ kind: 'softmax' }, [g.p([3], [1001, 1002, 1003])])), want);
    close(g.run(g.op({ kind: 'softmax' }, [g.p([2, 2], [0, -Infinity, 5, 5])])), [1, 0, 0.5, 0.5]);
  });

  test('cross_entropy: mean over rows of logsumexp - picked', () => {
    const g = new G();
    const logits = g.p([2, 3], [1, 2, 3, 1, 1, 1]);
    const ce = g.op({ kind: 'cross_entropy' }, [logits, g.i('targets', [2], [2, 0])]);
    assert.deepEqual(g.shape(ce), []);
    // row 0: log(e + e^2 + e^3) - 3 = 0.40760596; row 1: log 3 = 1.09861229
    close(g.run(ce), [(0.40760596444438 + 1.09861228866811) / 2], 1e-12);
  });
});

describe('interp: layout', () => {
  test('expand and reshape', () => {
    const g = new G();
    const x = g.p([2, 1], [1, 2]);
    close(g.run(g.b.expand(x, [2, 2, 3])), [1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]);
    close(g.run(g.b.reshape(x, [1, 2])), [1, 2]);
  });

  test('permute', () => {
    const g = new G();
    const x = g.p([2, 3], [1, 2, 3, 4, 5, 6]);
    close(g.run(g.b.transpose(x)), [1, 4, 2, 5, 3, 6]);
    const y = g.p([2, 2, 3], [...Array(12).keys()]);
    const p = g.b.permute(y, [2, 0, 1]);
    assert.deepEqual(g.shape(p), [3, 2, 2]);
    close(g.run(p), [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]);
  });

  test('slice and pad are inverses', () => {
    const g = new G();
    const x = g.p([2, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const s = g.op({ kind: 'slice', axis: 1, start: 1 }, [x], [2, 3]);
    close(g.run(s), [1, 2, 3, 6, 7, 8]);
    const p = g.op({ kind: 'pad', axis: 1, start: 1 }, [s], [2, 5]);
    close(g.run(p), [0, 1, 2, 3, 0, 0, 6, 7, 8, 0]);
  });

  test('gather: rows by index, zeros out of range; scatter_add sums back', () => {
    const g = new G();
    const table = g.p([3, 2], [10, 11, 20, 21, 30, 31]);
    const idx = g.i('tokens', [2, 2], [2, 0, -1, 2]);
    const gath = g.op({ kind: 'gather' }, [table, idx]);
    assert.deepEqual(g.shape(gath), [2, 2, 2]);
    close(g.run(gath), [30, 31, 10, 11, 0, 0, 30, 31]);
    const grad = g.p([2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
    const sc = g.op({ kind: 'scatter_add' }, [grad, idx], [3, 2]);
    // row 0 <- index 1 (3, 4); row 2 <- indices 0 and 3 (1 + 7, 2 + 8); index 2 is out of range
    close(g.run(sc), [3, 4, 0, 0, 8, 10]);
  });

  test('onehot', () => {
    const g = new G();
    const o = g.op({ kind: 'onehot' }, [g.i('t', [3], [1, 3, 0])], [3, 3]);
    close(g.run(o), [0, 1, 0, 0, 0, 0, 1, 0, 0]);
  });

  test('causal_mask sets column > row', () => {
    const g = new G();
    const x = g.p([1, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    close(g.run(g.op({ kind: 'causal_mask', fill: -Infinity }, [x])), [1, -Infinity, -Infinity, 4, 5, -Infinity, 7, 8, 9]);
  });
});

describe('interp: driver', () => {
  test('values of every node, or up to a node', () => {
    const g = new G();
    const x = g.p([2], [1, 2]);
    const y = g.b.affine(x, 3);
    const z = g.b.unary('neg', y);
    const env = { params: g.params, inputs: {}, training: false, seed: 0, step: 0 };
    const all = interpret(g.b.graph, env);
    assert.equal(all.length, 3);
    close(Array.from(all[z]), [-3, -6]);
    const some = interpret(g.b.graph, env, y);
    assert.equal(some.length, 2);
    close(Array.from(some[y]), [3, 6]);
  });

  test('a missing input is an error', () => {
    const g = new G();
    g.b.input('tokens', [2]);
    assert.throws(() => interpret(g.b.graph, { params: [], inputs: {}, training: false, seed: 0, step: 0 }), /missing input "tokens"/);
  });
});
