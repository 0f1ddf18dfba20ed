// The compiler front to middle: lowering, shapes, diagnostics, parameter counts of MODEL.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatError, MtcError } from '../compiler/diagnostics.ts';
import { loadProgram } from '../compiler/program.ts';
import { resolveHypers, resolveTrain } from '../compiler/config.ts';
import { lowerModel } from '../compiler/lower.ts';
import { buildGraph, compile, writeCompiled } from '../compiler/pipeline.ts';
import { numel } from '../compiler/ir.ts';
import { modelsDir, smallTrain, stdlibPath, tempModel } from './helpers/models.ts';

const thinker = path.join(modelsDir, 'matrix_thinker.mt');

function lowered(file: string, preset?: string, sets: Record<string, string> = {}) {
  const unit = loadProgram(file);
  const hypers = resolveHypers(unit, preset, sets);
  const train = resolveTrain(unit, hypers);
  return { graph: lowerModel(unit, hypers, train).graph, hypers, train };
}
const paramCount = (g: { params: { shape: number[] }[] }): number => g.params.reduce((a, p) => a + numel(p.shape), 0);

test('the full preset has the parameter counts of MODEL.md', () => {
  // bytes vocab, 512-row position tables: 257,560; the study's 2048 rows: 355,864
  assert.equal(paramCount(lowered(thinker, 'full', { pos_rows: '512', batch: '1' }).graph), 257_560);
  assert.equal(paramCount(lowered(thinker, 'full', { batch: '1' }).graph), 355_864);
  // GPT-2 BPE vocabulary with 2048 rows: the study's 5,155,960
  assert.equal(paramCount(lowered(thinker, 'full', { vocab: '50257', batch: '1' }).graph), 5_155_960);
});

test('the tiny model lowers to logits [batch, ctx, vocab] and observes the residual once per iteration', () => {
  const { graph, hypers } = lowered(thinker, 'tiny');
  const logits = graph.nodes[graph.outputs.logits];
  assert.deepEqual(logits.shape, [16, 64, 256]);
  assert.deepEqual(graph.nodes[graph.outputs.loss].shape, []);
  assert.equal(graph.observations.residual.length, hypers.get('T'));
  for (const id of graph.observations.residual) assert.deepEqual(graph.nodes[id].shape, [16, 64, 8, 8]);
  // distinct blocks, each with its own weights; iterations share them
  const paths = graph.params.map((p) => p.path);
  assert.ok(paths.includes('blocks.0.attn.q.A') && paths.includes('blocks.1.think.gamma.up.B'));
  assert.equal(new Set(paths).size, paths.length);
  assert.equal(paths.filter((p) => p.startsWith('blocks.')).length, 2 * paths.filter((p) => p.startsWith('blocks.0.')).length);
});

test('initialisers are read from the source', () => {
  const { graph } = lowered(thinker);
  const byPath = new Map(graph.params.map((p) => [p.path, p]));
  assert.deepEqual(byPath.get('blocks.0.attn.q.A')?.init, [{ kind: 'eye' }, { kind: 'normal', std: 0.02 }]);
  assert.deepEqual(byPath.get('blocks.0.think.b_m')?.init, [{ kind: 'const', value: -2 }]);
  assert.deepEqual(byPath.get('blocks.0.think.scale')?.init, [{ kind: 'const', value: 0.1 }]);
  assert.deepEqual(byPath.get('head.U')?.init, [{ kind: 'normal', std: 1 / Math.sqrt(8) }]);
  assert.deepEqual(byPath.get('head.W_out')?.init, [{ kind: 'uniform', bound: 1 / Math.sqrt(32) }]);
  assert.deepEqual(byPath.get('blocks.0.think.scale')?.shape, []);
});

test('gradients: one per parameter, with the parameter shape', () => {
  const { graph } = buildGraph(thinker);
  assert.ok(graph.grads);
  graph.params.forEach((p, i) => assert.deepEqual(graph.nodes[graph.grads![i]].shape, p.shape, p.path));
  assert.equal(new Set(graph.grads).size, graph.params.length);
});

function diagnostic(source: string): string {
  const file = tempModel(source);
  try {
    buildGraph(file);
  } catch (e) {
    if (e instanceof MtcError) return formatError(e).replaceAll(file, 'model.mt');
    throw e;
  }
  assert.fail('expected a diagnostic');
}

const header = `import "${stdlibPath}"\nhyper {\n  d = 4\n}\n`;

test('a shape mismatch names both shapes and the source position', () => {
  const msg = diagnostic(`${header}
model Bad {
  param W: [3, 5] = normal(1)
  param E: [256, 4] = normal(1)
  forward(tokens) {
    x = gather(E, tokens)
    return W @ x
  }
}
${smallTrain(8, 2)}`);
  assert.equal(
    msg,
    [
      'model.mt:11:12: error: matrix product of shapes [3, 5] and [2, 8, 4]: inner sizes 5 and 8 differ',
      '11 |     return W @ x',
      '                ^~~~~',
    ].join('\n'),
  );
});

test('unknown names, arity and presets are reported with positions', () => {
  const unknown = diagnostic(`${header}
model Bad {
  forward(tokens) {
    return silu(tokenz)
  }
}
${smallTrain(8, 2)}`);
  assert.match(unknown, /^model\.mt:8:17: error: unknown name 'tokenz'\n8 \|     return silu\(tokenz\)\n {20}\^~~~~~$/);
  const arity = diagnostic(`${header}
model Bad {
  forward(tokens) {
    return clamp(tokens, 1)
  }
}
${smallTrain(8, 2)}`);
  assert.match(arity, /^model\.mt:8:12: error: clamp takes 3 arguments, got 2/);
  assert.throws(() => resolveHypers(loadProgram(thinker), 'huge', {}), /unknown preset 'huge'; .* has 'tiny', 'full'/);
  assert.throws(() => resolveHypers(loadProgram(thinker), undefined, { dd: '3' }), /--set dd: 'dd' is not a hyperparameter/);
  assert.throws(() => resolveHypers(loadProgram(thinker), undefined, { d: 'x' }), /--set d=x: the value must be a decimal number/);
  assert.throws(() => resolveHypers(loadProgram(thinker), undefined, { d: '0x10' }), /--set d=0x10: the value must be a decimal number/);
  assert.equal(resolveHypers(loadProgram(thinker), undefined, { lr: ' 3e-4 ', d: '.5e1' }).get('d'), 5);
});

test('a layer that calls itself is stopped with a diagnostic, not a stack overflow', () => {
  const msg = diagnostic(`${header}
layer Loop(n) {
  inner = Loop(n)
  forward(x) {
    return x
  }
}
model Bad {
  l = Loop(d)
  forward(tokens) {
    return l(tokens)
  }
}
${smallTrain(8, 2)}`);
  assert.match(msg, /nest more than 64 deep/);
});

// ---- imported hyper, preset and train sections ---------------------------------------------

/** Writes `files` (name -> source) into one fresh folder; returns the path of each. */
function tempFiles(files: Record<string, string>): Record<string, string> {
  const [first, ...rest] = Object.keys(files);
  const firstPath = tempModel(files[first], first);
  const dir = path.dirname(firstPath);
  const out: Record<string, string> = { [first]: firstPath };
  for (const name of rest) {
    out[name] = path.join(dir, name);
    fs.writeFileSync(out[name], files[name]);
  }
  return out;
}

const tinyModel = (name: string): string => `
model ${name} {
  param E: [vocab, 4] = normal(1)
  param W: [4, vocab] = normal(1)
  forward(tokens) {
    return gather(E, tokens) @ W
  }
}
`;
const BASE = `hyper {
  vocab = 16
  a = 1
  b = a + 1
  c = 3
  ctx = 8
}
preset p {
  a = 10
  c = 30
}
preset q {
  c = 5
}
${tinyModel('Base')}
train {
  ctx = ctx
  batch = 2
  steps = 1
  loss = cross_entropy
  seed = 7
}
`;
const VARIANT = `import "base.mt"
hyper {
  a = 2
  e = 7
}
preset p {
  c = 300
  e = 70
}
${tinyModel('Variant')}
train {
  batch = 4
}
`;

const resolved = (file: string, preset?: string, sets: Record<string, string> = {}) => {
  const unit = loadProgram(file);
  const hypers = resolveHypers(unit, preset, sets);
  return { unit, hypers: Object.fromEntries(hypers), train: resolveTrain(unit, hypers) };
};

test('an imported file supplies hyper entries, presets and train settings as defaults', () => {
  const f = tempFiles({ 'variant.mt': VARIANT, 'base.mt': BASE });
  const d = resolved(f['variant.mt']);
  // overridden in place (b = a + 1 sees the new a), inherited, and new names appended
  assert.deepEqual(d.hypers, { vocab: 16, a: 2, b: 3, c: 3, ctx: 8, e: 7 });
  assert.deepEqual(Object.keys(d.hypers), ['vocab', 'a', 'b', 'c', 'ctx', 'e']);
  // train settings: batch overridden, the rest inherited
  assert.deepEqual([d.train.ctx, d.train.batch, d.train.steps, d.train.seed], [8, 4, 1, 7]);
  // one model: the main file's; the imported model is not part of the unit
  assert.equal(d.unit.model?.name, 'Variant');
  assert.ok(!d.unit.layers.has('Base'));
  const g = buildGraph(f['variant.mt']).graph;
  assert.deepEqual(g.nodes[g.outputs.logits].shape, [4, 8, 16]);
  // preset p merged entry by entry over the imported p; preset q inherited whole
  assert.deepEqual(resolved(f['variant.mt'], 'p').hypers, { vocab: 16, a: 10, b: 11, c: 300, ctx: 8, e: 70 });
  assert.deepEqual(resolved(f['variant.mt'], 'q').hypers, { vocab: 16, a: 2, b: 3, c: 5, ctx: 8, e: 7 });
  assert.deepEqual([...d.unit.presets.keys()], ['p', 'q']);
  // --set still wins over everything, and the base file alone is unchanged
  assert.equal(resolved(f['variant.mt'], 'p', { c: '9' }).hypers.c, 9);
  assert.deepEqual(resolved(f['base.mt'], 'p').hypers, { vocab: 16, a: 10, b: 11, c: 30, ctx: 8 });
});

test('chained and multiple imports: the nearer (importing) file wins, then the later import', () => {
  const f = tempFiles({
    'top.mt': `import "variant.mt"\nhyper {\n  c = 4\n}\npreset p {\n  a = 100\n}\n${tinyModel('Top')}`,
    'variant.mt': VARIANT,
    'base.mt': BASE,
    'left.mt': `hyper {\n  x = 1\n  y = 1\n}\ntrain {\n  steps = 5\n}\n`,
    'right.mt': `hyper {\n  x = 2\n}\ntrain {\n  steps = 6\n  seed = 3\n}\n`,
    'both.mt': `import "base.mt"\nimport "left.mt"\nimport "right.mt"\nhyper {\n  y = 9\n}\n${tinyModel('Both')}`,
  });
  const top = resolved(f['top.mt']);
  assert.deepEqual(top.hypers, { vocab: 16, a: 2, b: 3, c: 4, ctx: 8, e: 7 });
  assert.equal(top.train.batch, 4, 'the train section of the middle file');
  assert.equal(top.unit.model?.name, 'Top');
  // the preset is layered three deep: base p, variant p, top p
  assert.deepEqual(resolved(f['top.mt'], 'p').hypers, { vocab: 16, a: 100, b: 101, c: 300, ctx: 8, e: 70 });
  // siblings: right.mt (imported after left.mt) wins; the importing file wins over both
  const both = resolved(f['both.mt']);
  assert.deepEqual([both.hypers.x, both.hypers.y], [2, 9]);
  assert.deepEqual([both.train.steps, both.train.seed, both.train.batch], [6, 3, 2]);
});

test('diagnostics of merged sections point at the entry that set the value', () => {
  const f = tempFiles({
    'variant.mt': `import "base.mt"\nhyper {\n  a = nope\n}\n${tinyModel('V')}`,
    'base.mt': BASE,
    'inherit.mt': `import "base.mt"\nhyper {\n  q = 1\n}\npreset p {\n  zz = 1\n}\n${tinyModel('V')}`,
    'train.mt': `import "base.mt"\n${tinyModel('V')}\ntrain {\n  batch = 0\n}\n`,
    'dup.mt': `import "base.mt"\nhyper {\n  a = 1\n  a = 2\n}\n${tinyModel('V')}`,
    'nomodel.mt': `import "base.mt"\nhyper {\n  a = 2\n}\n`,
  });
  const where = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      if (e instanceof MtcError) return e.diagnostics.map((d) => `${path.basename(d.loc?.file ?? '')}:${d.loc?.line}:${d.loc?.col}: ${d.message}`).join('\n');
      throw e;
    }
    return assert.fail('expected a diagnostic');
  };
  assert.equal(where(() => resolved(f['variant.mt'])), "variant.mt:3:7: unknown name 'nope'");
  // an entry of the main file's preset p that no file's hyper section declares
  assert.equal(where(() => resolved(f['inherit.mt'], 'p')), "inherit.mt:6:3: preset 'p' sets 'zz', which is not a hyperparameter of the hyper section");
  // the overriding train setting is the one reported
  assert.equal(where(() => resolved(f['train.mt'])), "train.mt:12:3: train setting 'batch' must be a positive whole number, got the number 0");
  // a name twice in one file is still an error (overriding is only across files)
  assert.equal(where(() => loadProgram(f['dup.mt'])), "dup.mt:4:3: hyperparameter 'a' is defined twice");
  // with no model in the main file, the imported model is not taken
  assert.equal(where(() => loadProgram(f['nomodel.mt'])), 'base.mt:16:1: a model may only be declared in the main file, not in an imported one');
});

// ---- the study's other two configurations --------------------------------------------------

test('vector-collapse and 3D-attention models have the parameter counts of MODEL.md', () => {
  const vc = path.join(modelsDir, 'vector_collapse.mt');
  const mp = path.join(modelsDir, 'matrix_product_attention.mt');
  // parameter counts do not depend on ctx or batch (the position tables have pos_rows rows)
  const small = { batch: '1', ctx: '8' };
  // the MultiProbe run at bytes (512 and 2048 position rows) and BPE
  assert.equal(paramCount(lowered(thinker, 'full', { ...small, pos_rows: '512' }).graph), 257_560);
  assert.equal(paramCount(lowered(thinker, 'full', small).graph), 355_864);
  assert.equal(paramCount(lowered(thinker, 'full', { ...small, vocab: '50257' }).graph), 5_155_960);
  // vector-collapse at BPE, 2048 rows: 5,154,936
  const v = lowered(vc, 'full', { ...small, vocab: '50257' });
  assert.equal(paramCount(v.graph), 5_154_936);
  assert.equal(v.hypers.get('pos_rows'), 2048);
  // the 3D run: d 16, 12 blocks, 4 heads, K 16, BPE, 2048 rows: 2,552,788
  const m = lowered(mp, 'full', { ...small, vocab: '50257' });
  assert.equal(paramCount(m.graph), 2_552_788);
  assert.deepEqual(['d', 'n_blocks', 'heads', 'probes', 'T', 'pos_rows'].map((k) => m.hypers.get(k)), [16, 12, 4, 16, 8, 2048]);
  // their defaults are matrix_thinker's tiny size, with the residual observed once per iteration
  for (const file of [vc, mp]) {
    const t = lowered(file);
    assert.deepEqual([...t.hypers], [...lowered(thinker).hypers]);
    assert.equal(t.graph.observations.residual.length, 2);
    for (const id of t.graph.observations.residual) assert.deepEqual(t.graph.nodes[id].shape, [16, 64, 8, 8]);
  }
});

test('writing a compiled model removes stale kernels and leaves anything else in kernels/ alone', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-write-'));
  fs.mkdirSync(path.join(out, 'kernels', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(out, 'kernels', 'notes.txt'), 'mine');
  fs.writeFileSync(path.join(out, 'kernels', 'old_kernel.wgsl'), '// from an earlier compile');
  const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets: { d: '4', heads: '2', n_blocks: '1', T: '1', probes: '3', vocab: '11', ctx: '5', pos_rows: '5', batch: '2' } });
  writeCompiled(c, out);
  const kernels = fs.readdirSync(path.join(out, 'kernels'));
  assert.ok(!kernels.includes('old_kernel.wgsl'), 'the stale kernel is removed');
  assert.ok(kernels.includes('notes.txt') && kernels.includes('sub'), 'other entries stay');
  assert.equal(kernels.filter((f) => f.endsWith('.wgsl')).length, [...c.files.keys()].filter((f) => f.startsWith('kernels/')).length);
});
