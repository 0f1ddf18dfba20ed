// `mtc report`: statistics (t quantiles, CIs), the SVG writer, and the report over synthetic
// run folders generated in a temporary directory (sweep layout, old runs without rank fields
// or model names, resumed runs, partial lines).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { aggregate, lnGamma, meanCI, regIncBeta, tCdf, tQuantile } from '../runtime/stats.ts';
import { escapeXml, lineChart, logTicks, niceTicks } from '../runtime/svg.ts';
import { buildReport, findRunFolders, loadRun, modelFromFile, writeReport } from '../runtime/report.ts';
import { MtcError } from '../compiler/diagnostics.ts';

const close = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what} ${a} != ${b} (tol ${tol})`);

// ---------------------------------------------------------------------------------------
// stats

test('t quantiles match published tables (two-sided 95%)', () => {
  const table: Array<[number, number]> = [
    [1, 12.7062],
    [2, 4.3027],
    [3, 3.1824],
    [4, 2.7764],
    [5, 2.5706],
    [10, 2.2281],
    [30, 2.0423],
    [100, 1.984],
  ];
  for (const [df, t] of table) close(tQuantile(0.975, df), t, 5e-5, `df ${df}`);
  close(tQuantile(0.975, 1e6), 1.95996, 5e-5, 'df 1e6');
  close(tQuantile(0.975, 1e9), 1.959964, 1e-6, 'df 1e9');
  close(tQuantile(0.975, Infinity), 1.959963984540054, 1e-9, 'normal');
  close(tQuantile(0.995, 4), 4.6041, 5e-5, '99% df 4');
  close(tQuantile(0.9995, 1), 636.6192, 5e-4, '99.9% df 1');
});

test('t quantiles agree with the closed forms for df 1 and 2, and invert the CDF', () => {
  for (const p of [0.51, 0.6, 0.75, 0.9, 0.975, 0.999]) {
    close(tQuantile(p, 1), Math.tan(Math.PI * (p - 0.5)), 1e-9 * Math.tan(Math.PI * (p - 0.5)), `df1 p ${p}`);
    close(tQuantile(p, 2), (2 * p - 1) / Math.sqrt(2 * p * (1 - p)), 1e-9, `df2 p ${p}`);
    close(tQuantile(1 - p, 7), -tQuantile(p, 7), 1e-12, 'symmetry');
    close(tCdf(tQuantile(p, 7.5), 7.5), p, 1e-12, `roundtrip p ${p}`);
  }
  assert.equal(tQuantile(0.5, 3), 0);
  close(lnGamma(0.5), Math.log(Math.sqrt(Math.PI)), 1e-14);
  close(lnGamma(10), Math.log(362880), 1e-13);
  close(regIncBeta(0.3, 2, 3), 0.3483, 1e-12); // integer a, b: Σ_{j=2..4} C(4,j) 0.3^j 0.7^(4−j)
});

test('meanCI: known data, one value, none', () => {
  const ci = meanCI([1, 2, 3, 4, 5]);
  close(ci.mean, 3, 1e-15);
  close(ci.sd, Math.sqrt(2.5), 1e-15);
  close(ci.half, 2.776445105 * Math.sqrt(2.5) / Math.sqrt(5), 1e-8);
  close(ci.lo, 3 - ci.half, 1e-15);
  close(ci.hi, 3 + ci.half, 1e-15);
  assert.equal(ci.n, 5);
  const ninety = meanCI([10, 12], 0.9);
  close(ninety.half, 6.3138 * Math.SQRT2 / Math.SQRT2, 5e-4); // sd √2, n 2: half = t_{.95,1}·1
  assert.deepEqual(meanCI([4.2]), { mean: 4.2, lo: 4.2, hi: 4.2, half: 0, n: 1, sd: 0 });
  assert.ok(Number.isNaN(meanCI([]).mean));
  assert.ok(Number.isNaN(meanCI([1, NaN]).mean), 'a diverged seed is not dropped');
});

test('aggregate: per key, per array index, over the records that have it', () => {
  const a = aggregate([
    { bpb: 2, erank: [1, 2] },
    { bpb: 4, erank: [3, 4, 5] },
    { erank: [5, 6] },
  ]);
  assert.deepEqual(Object.keys(a), ['bpb', 'erank']);
  const bpb = a.bpb as ReturnType<typeof meanCI>;
  assert.equal(bpb.n, 2);
  assert.equal(bpb.mean, 3);
  const er = a.erank as ReturnType<typeof meanCI>[];
  assert.deepEqual(er.map((c) => [c.mean, c.n]), [[3, 3], [4, 3], [5, 1]]);
});

// ---------------------------------------------------------------------------------------
// svg

/** A minimal XML well-formedness check: balanced, properly nested tags, quoted attributes, known entities. */
function assertWellFormedXml(xml: string): void {
  const stack: string[] = [];
  let i = 0;
  let roots = 0;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt < 0 ? xml.length : lt);
    assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(text), `bad entity in text ${JSON.stringify(text)}`);
    if (stack.length === 0) assert.equal(text.trim(), '', `text outside the root: ${JSON.stringify(text)}`);
    if (lt < 0) break;
    const gt = xml.indexOf('>', lt);
    assert.ok(gt > lt, 'unterminated tag');
    const tag = xml.slice(lt + 1, gt);
    assert.ok(!tag.includes('<'), `'<' inside a tag: ${tag}`);
    if (tag.startsWith('/')) {
      assert.equal(stack.pop(), tag.slice(1).trim(), 'mismatched close tag');
    } else {
      const selfClosing = tag.endsWith('/');
      const body = selfClosing ? tag.slice(0, -1) : tag;
      const m = /^([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*$/.exec(body);
      assert.ok(m, `malformed tag <${tag}>`);
      assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(m[2]), `bad entity in attributes of <${tag}>`);
      const names = [...m[2].matchAll(/([\w:.-]+)=/g)].map((x) => x[1]);
      assert.equal(new Set(names).size, names.length, `duplicate attribute in <${tag}>`);
      if (stack.length === 0) roots++;
      if (!selfClosing) stack.push(m[1]);
    }
    i = gt + 1;
  }
  assert.equal(stack.length, 0, `unclosed: ${stack.join(', ')}`);
  assert.equal(roots, 1, 'one root element');
}

test('the XML checker rejects broken documents', () => {
  assertWellFormedXml('<svg a="1"><g><text>a &amp; b</text></g><rect/></svg>');
  assert.throws(() => assertWellFormedXml('<svg><g></svg>'));
  assert.throws(() => assertWellFormedXml('<svg><text>a & b</text></svg>'));
  assert.throws(() => assertWellFormedXml('<svg a=1></svg>'));
  assert.throws(() => assertWellFormedXml('<svg></svg><svg></svg>'));
});

test('nice ticks and log ticks', () => {
  assert.deepEqual(niceTicks(0, 600).ticks, [0, 200, 400, 600]);
  assert.deepEqual(niceTicks(2.31, 3.97).ticks, [2, 2.5, 3, 3.5, 4]);
  assert.deepEqual(niceTicks(0.1, 0.3).ticks, [0.1, 0.15, 0.2, 0.25, 0.3]);
  assert.deepEqual(logTicks(1, 1000), [1, 3, 10, 30, 100, 300, 1000]);
  assert.deepEqual(logTicks(1, 1e6), [1, 10, 100, 1000, 10000, 100000, 1000000]);
  assert.deepEqual(logTicks(0.5, 40), [0.5, 1, 2, 5, 10, 20]);
  assert.ok(logTicks(2.1, 3.9).length >= 2, 'less than a decade still gets ticks');
});

test('line chart: well-formed, escaped, deterministic, has every series, band and reference line', () => {
  const spec = {
    title: 'Rank <val> & "train"',
    subtitle: "it's shaded",
    xLabel: 'iteration t',
    yLabel: 'effective rank',
    xTicks: [1, 2, 3],
    series: [
      { label: 'A & B', x: [1, 2, 3], y: [3, 3.5, 4], lo: [2.8, 3.2, 3.7], hi: [3.2, 3.8, 4.3], color: 0 },
      { label: 'C <dashed>', x: [1, 2, 3], y: [2, NaN, 2.5], dashed: true, color: 1 },
    ],
    refLines: [{ label: 'baseline', y: 3.3, color: 2 }],
  };
  const svg = lineChart(spec);
  assertWellFormedXml(svg);
  assert.equal(lineChart(spec), svg, 'same input, same bytes');
  assert.ok(svg.includes('Rank &lt;val&gt; &amp; &quot;train&quot;'));
  assert.ok(svg.includes('>A &amp; B</text>') && svg.includes('>C &lt;dashed&gt;</text>') && svg.includes('>baseline</text>'));
  assert.equal((svg.match(/<polygon /g) ?? []).length, 1, 'one CI band');
  assert.ok(svg.includes('stroke-dasharray="7 4"'), 'dashed series');
  // The NaN splits series C into two one-point pieces: no path segment crosses it.
  const cPaths = svg.split('\n').filter((l) => l.startsWith('<path') && l.includes('stroke="#D55E00"') && l.includes('stroke-width="2"'));
  assert.equal(cPaths.length, 2);
  assert.ok(!/NaN|Infinity|undefined/.test(svg));
  assert.ok(svg.endsWith('</svg>\n'));

  const log = lineChart({ title: 'log', xLabel: 'T', yLabel: 'bpb', logX: true, logY: true, xTicks: [1, 2, 4, 8], series: [{ label: 's', x: [1, 2, 4, 8], y: [4, 3, 0, 2.5] }] });
  assertWellFormedXml(log);
  assert.ok(!/NaN|Infinity/.test(log), 'non-positive values on a log axis are skipped');
  assert.ok(log.includes('(log scale)'));
  const empty = lineChart({ title: 'nothing', xLabel: 'x', yLabel: 'y', series: [] });
  assertWellFormedXml(empty);
  assert.ok(empty.includes('no data'));
  assert.equal(escapeXml('a\u0001b<'), 'ab&lt;');
});

// ---------------------------------------------------------------------------------------
// report over synthetic run folders

interface RunSpec {
  file: string;
  model?: string;
  preset?: string | null;
  sets?: Record<string, string>;
  seed: number;
  steps?: number;
  T: number;
  /** val erank per iteration at the final eval; undefined: an old run without rank fields */
  valErank?: number[];
  trainErank?: number[];
  finalBpb: number;
  evalJson?: { bpbByT: Record<number, number>; rankByT: Record<number, number>; ablation: Array<[number | null, number]> };
  extraLines?: string[];
}

function makeRun(dir: string, s: RunSpec): void {
  fs.mkdirSync(path.join(dir, 'checkpoints'), { recursive: true });
  const steps = s.steps ?? 100;
  const config: Record<string, unknown> = {
    file: s.file,
    preset: s.preset === undefined ? 'tiny' : s.preset,
    sets: s.sets ?? {},
    data: 'sotu',
    val: null,
    steps,
    seed: s.seed,
    hypers: { d: 8, T: s.T },
    train: { batch: 4 },
  };
  if (s.model) config.model = s.model;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  // A checkpoint folder holding a stray config.json must not count as a run.
  fs.writeFileSync(path.join(dir, 'checkpoints', 'config.json'), '{}');
  const lines: string[] = [];
  for (let step = 10; step <= steps; step += 10) {
    lines.push(JSON.stringify({ step, loss: 5 - step / 50 + s.seed * 0.01, lr: 0.01, tokens_per_s: 900, elapsed_s: step / 10 }));
    if (step % 50 === 0) {
      const last = step === steps;
      const bpb = last ? s.finalBpb : s.finalBpb + 1;
      const rec: Record<string, unknown> = { step, val_loss: bpb * Math.LN2, val_bpb: bpb, val_ppl: Math.exp(bpb * Math.LN2), elapsed_s: step / 10 };
      if (s.valErank) {
        rec.val_erank = last ? s.valErank : s.valErank.map((v) => v - 1);
        rec.val_collapse = s.valErank.map((_, i) => 0.5 - i * 0.1);
        rec.train_erank = s.trainErank ?? s.valErank.map((v) => v - 0.5);
        rec.train_collapse = s.valErank.map((_, i) => 0.4 - i * 0.1);
      }
      lines.push(JSON.stringify(rec));
    }
  }
  lines.push(...(s.extraLines ?? []));
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), lines.join('\n') + '\n');
  if (s.evalJson) {
    const e = s.evalJson;
    const variants = [1, 2, 4, 8].map((T) => ({
      hypers: { T },
      loss: e.bpbByT[T] * Math.LN2,
      bpb: e.bpbByT[T],
      ppl: Math.exp(e.bpbByT[T] * Math.LN2),
      erank: Array.from({ length: T }, (_, i) => (i === T - 1 ? e.rankByT[T] : 1 + i)),
      collapse: Array.from({ length: T }, () => 0.3),
    }));
    const ablation = e.ablation.map(([k, bpb]) => ({ k, loss: bpb * Math.LN2, bpb, ppl: Math.exp(bpb * Math.LN2), erank: k ?? 6 }));
    fs.writeFileSync(path.join(dir, 'eval.json'), JSON.stringify({ model: s.model, step: steps, seed: s.seed, windows: 64, tokens: 4096, bytes: 4096, tokenizer: 'bytes', variants, ablation }, null, 2));
  }
}

/**
 * Three configurations:
 * - MatrixThinker, sweep layout, seeds 0–2, T=2, eval.json; val rank t=1 3.0/3.1/3.2, t=2 3.4/3.6/3.8
 * - VectorCollapseThinker, two old run folders (no model name, no rank fields, no eval.json)
 * - MatrixProductThinker, sweep layout, one seed, T=2, eval.json
 */
function makeFixture(root: string): { sweep: string; old: string[] } {
  const sweep = path.join(root, 'sweep');
  for (const seed of [0, 1, 2]) {
    makeRun(path.join(sweep, 'matrix_thinker', `seed-${seed}`), {
      file: 'models/matrix_thinker.mt',
      model: 'MatrixThinker',
      sets: { lr: '1e-2', seed: String(seed) },
      seed,
      T: 2,
      valErank: [3.0 + 0.1 * seed, 3.4 + 0.2 * seed],
      trainErank: [3.3 - 0.1 * seed, 3.0 - 0.1 * seed],
      finalBpb: [2.5, 2.6, 2.7][seed],
      evalJson: {
        bpbByT: { 1: 3.0 + 0.1 * seed, 2: [2.5, 2.6, 2.7][seed], 4: 2.8, 8: 3.2 },
        rankByT: { 1: 3, 2: 3.4 + 0.2 * seed, 4: 4, 8: 4.5 },
        ablation: [[null, 2.6], [1, 4 + seed * 0.1], [2, 3.5], [4, 3.0], [8, 2.7]],
      },
    });
  }
  makeRun(path.join(sweep, 'matrix_product_attention', 'seed-0'), {
    file: 'models/matrix_product_attention.mt',
    model: 'MatrixProductThinker',
    sets: { lr: '1e-2' },
    seed: 0,
    T: 2,
    valErank: [2.75, 2.66],
    finalBpb: 3.25,
    evalJson: { bpbByT: { 1: 3.5, 2: 3.25, 4: 3.3, 8: 3.6 }, rankByT: { 1: 2, 2: 2.66, 4: 2.5, 8: 2.4 }, ablation: [[null, 3.25], [1, 4.5], [2, 3.9]] },
  });
  const old: string[] = [];
  for (const seed of [0, 1]) {
    const dir = path.join(root, `vc-old-${seed}`);
    makeRun(dir, {
      file: 'models/vector_collapse.mt',
      sets: { lr: '1e-2' },
      seed,
      T: 2,
      finalBpb: [3.0, 3.2][seed],
      // A resumed run: steps 90–100 logged twice, the later ones win; a killed writer's partial line.
      extraLines: [
        JSON.stringify({ event: 'resume', step: 80 }),
        JSON.stringify({ step: 90, loss: 9, lr: 0.01 }),
        JSON.stringify({ step: 100, loss: 1.25, lr: 0.01 }),
        '{"step": 110, "lo',
      ],
    });
    old.push(dir);
  }
  return { sweep, old };
}

function withFixture(fn: (root: string, f: { sweep: string; old: string[] }) => void): void {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-report-'));
  try {
    fn(root, makeFixture(root));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

test('folder discovery: run folders and sweep folders mixed, checkpoints skipped, duplicates merged', () => {
  withFixture((root, f) => {
    const found = findRunFolders([f.sweep, ...f.old, path.join(f.sweep, 'matrix_thinker', 'seed-1')]);
    const rel = found.map((d) => path.relative(fs.realpathSync(root), d).split(path.sep).join('/'));
    assert.deepEqual(rel, ['sweep/matrix_product_attention/seed-0', 'sweep/matrix_thinker/seed-0', 'sweep/matrix_thinker/seed-1', 'sweep/matrix_thinker/seed-2', 'vc-old-0', 'vc-old-1']);
    assert.equal(findRunFolders([root]).length, 6, 'a folder of sweeps and runs');
    fs.mkdirSync(path.join(root, 'empty'));
    assert.throws(() => findRunFolders([path.join(root, 'empty')]), /no run folder/);
    assert.throws(() => findRunFolders([path.join(root, 'missing')]), /no such folder/);
  });
});

test('loadRun: old runs without model name or rank fields; resumed steps; unknown and partial lines', () => {
  withFixture((_root, f) => {
    const r = loadRun(f.old[0]);
    assert.equal(r.model, 'VectorCollapseThinker');
    assert.equal(modelFromFile('models/some_new_model.mt'), 'SomeNewModel');
    assert.equal(modelFromFile('models/matrix_product_attention.mt'), 'MatrixProductThinker');
    assert.equal(modelFromFile('models/vector_collapse.mt'), 'VectorCollapseThinker');
    const compiled = path.join(f.old[1], 'compiled');
    fs.mkdirSync(compiled);
    fs.writeFileSync(path.join(compiled, 'program.ts'), '// Generated by mtc\nexport const model = {\n  "name": "RenamedThinker",\n  "sources": []\n};\n');
    assert.equal(loadRun(f.old[1]).model, 'RenamedThinker', 'the compiled program names the model');
    assert.equal(r.final?.source, 'metrics.jsonl');
    assert.equal(r.final?.bpb, 3.0);
    assert.equal(r.final?.erank, undefined);
    assert.equal(r.train.find((p) => p.step === 100)?.loss, 1.25, 'the record logged last wins');
    assert.equal(r.train.length, 10);
    assert.equal(r.stepsDone, 100);
    assert.deepEqual(r.warnings, ['1 unreadable line in metrics.jsonl skipped']);
    const m = loadRun(path.join(f.sweep, 'matrix_thinker', 'seed-2'));
    assert.equal(m.final?.source, 'eval.json');
    assert.deepEqual(m.final?.erank, [1, 3.8]); // eval.json's T=2 variant
    close(m.final!.trainErank![0], 3.1, 1e-12, 'training-batch rank from metrics.jsonl');
    close(m.final!.trainErank![1], 2.8, 1e-12);
    assert.deepEqual(m.variants.map((v) => v.T), [1, 2, 4, 8]);
    assert.deepEqual(m.ablation.map((a) => a.k), [null, 1, 2, 4, 8]);
  });
});

test('report: summary rows with the right numbers, the study columns, trends, sweep and ablation tables', () => {
  withFixture((root, f) => {
    const out = path.join(root, 'report');
    const { markdown, files } = writeReport([f.sweep, ...f.old], out);
    assert.equal(fs.readFileSync(path.join(out, 'report.md'), 'utf8'), markdown);
    const names = files.map((p) => path.basename(p)).sort();
    assert.deepEqual(names, ['ablation_bpb.svg', 'bpb_val.svg', 'collapse_train.svg', 'collapse_val.svg', 'loss_train.svg', 'rank_train.svg', 'rank_val.svg', 'report.md', 'tsweep_bpb.svg', 'tsweep_rank.svg']);
    for (const p of files.filter((p) => p.endsWith('.svg'))) {
      const svg = fs.readFileSync(p, 'utf8');
      assertWellFormedXml(svg);
      assert.ok(!/NaN|undefined/.test(svg), p);
      assert.ok(markdown.includes(`](${path.basename(p)})`), `report links ${p}`);
    }
    const lines = markdown.split('\n');
    const row = (prefix: string) => {
      const l = lines.find((x) => x.startsWith(prefix));
      assert.ok(l, `no row ${prefix}\n${markdown}`);
      return l;
    };
    assert.ok(markdown.includes('All runs: preset tiny · lr=1e-2 · data sotu · 100 steps.'));
    // The val rank comes from eval.json's T=2 variant: t=1 is 1 in every seed (sd 0), t=2 3.4/3.6/3.8.
    // t=2: mean 3.6, sd 0.2, half 4.3027·0.2/√3 = 0.4968. bpb 2.5/2.6/2.7: half 0.2484.
    assert.equal(row('| MatrixThinker |'), '| MatrixThinker | 3 | 2 | 1.00 ± 0.00 → 3.60 ± 0.50 | 2.600 ± 0.248 | 6.07 ± 1.04 | 5.05 … 6.13 | PPL 72.4, "bpb" 1.670 |');
    assert.equal(row('| VectorCollapseThinker |'), '| VectorCollapseThinker | 2 | 2 | — | 3.100 ± 1.271 | 8.59 ± 7.56 | 3.66 → 3.38 | PPL 638 |');
    assert.equal(row('| MatrixProductThinker |'), '| MatrixProductThinker | 1 | 2 | 1.00 → 2.66 | 3.250 | 9.51 | 2.75 → 2.66 | "bpb" 2.457 |');
    assert.ok(row('- **MatrixThinker**').includes('val rank rose 1.00 → 3.60 (Δ +2.60 ± 0.50 over 3 seeds; the 95% CI excludes 0)'));
    assert.ok(row('- **MatrixThinker**').includes('Training-batch rank (dropout on): fell 3.20 → 2.90 (Δ −0.30 ± 0.00 over 3 seeds'));
    assert.ok(row('- **VectorCollapseThinker**').includes('val rank not measured'));
    assert.ok(row('- **MatrixProductThinker**').includes('(Δ +1.66; one seed, no CI)'));
    // T-sweep: MatrixThinker bpb at T=1 is 3.0/3.1/3.2.
    assert.ok(markdown.includes('| configuration | trained T | T=1 | T=2 | T=4 | T=8 |'));
    assert.ok(markdown.includes('| MatrixThinker | 2 | 3.100 ± 0.248 | 2.600 ± 0.248 | 2.800 ± 0.000 | 3.200 ± 0.000 |'));
    assert.ok(markdown.includes('| MatrixProductThinker | 2 | 3.500 | 3.250 | 3.300 | 3.600 |'));
    // Ablation: MatrixProductThinker has no k=4, 8.
    assert.ok(markdown.includes('| configuration | unprojected | k=1 | k=2 | k=4 | k=8 |'));
    assert.ok(markdown.includes('| MatrixThinker | 2.600 ± 0.000 | 4.100 ± 0.248 | 3.500 ± 0.000 | 3.000 ± 0.000 | 2.700 ± 0.000 |'));
    assert.ok(markdown.includes('| MatrixProductThinker | 3.250 | 4.500 | 3.900 | — | — |'));
    // Runs table: relative links from the report folder, steps done / planned.
    assert.ok(markdown.includes('](../sweep/matrix_thinker/seed-0) | MatrixThinker | 0 | 100/100 | tiny | lr=1e-2, seed=0 | sotu | eval.json (step 100) |'));
    assert.ok(markdown.includes('](../vc-old-1) | VectorCollapseThinker | 1 | 100/100 | tiny | lr=1e-2 | sotu | metrics.jsonl (step 100) |'));
    assert.ok(markdown.includes('1 unreadable line in metrics.jsonl skipped'));
    // Val and training-batch rank are separate sections and figures.
    const rankTrain = fs.readFileSync(path.join(out, 'rank_train.svg'), 'utf8');
    assert.ok(rankTrain.includes('TRAINING batch') && rankTrain.includes('stroke-dasharray="7 4"'));
    const rankVal = fs.readFileSync(path.join(out, 'rank_val.svg'), 'utf8');
    assert.ok(!rankVal.includes('stroke-dasharray="7 4"') && rankVal.includes('<polygon '));
    assert.ok(rankVal.includes('MatrixThinker (3 seeds)') && !rankVal.includes('VectorCollapseThinker'), 'configs without rank data are left out');
    const ablation = fs.readFileSync(path.join(out, 'ablation_bpb.svg'), 'utf8');
    assert.ok(ablation.includes('MatrixThinker: unprojected'));
  });
});

test('report: same input, same bytes; configurations split by their differing sets', () => {
  withFixture((root, f) => {
    const a = writeReport([f.sweep, ...f.old], path.join(root, 'out-a'));
    const b = writeReport([...f.old, f.sweep], path.join(root, 'out-b'));
    assert.equal(a.markdown, b.markdown);
    for (const p of a.files) assert.equal(fs.readFileSync(p, 'utf8'), fs.readFileSync(path.join(root, 'out-b', path.basename(p)), 'utf8'), p);

    // One more MatrixThinker seed with another lr: a fourth configuration, labelled by what differs.
    makeRun(path.join(root, 'mt-lr3'), { file: 'models/matrix_thinker.mt', model: 'MatrixThinker', sets: { lr: '3e-3' }, seed: 0, T: 2, valErank: [3, 3.1], finalBpb: 2.9 });
    const runs = findRunFolders([root]).map(loadRun);
    const { markdown } = buildReport(runs);
    assert.ok(markdown.includes('| MatrixThinker (lr=1e-2) | 3 |'));
    assert.ok(markdown.includes('| MatrixThinker (lr=3e-3) | 1 |'));
    assert.ok(markdown.includes('All runs: preset tiny · data sotu · 100 steps.'));

    // A configuration without the --set the others make is labelled without "lr=default".
    makeRun(path.join(root, 'mt-default'), { file: 'models/matrix_thinker.mt', model: 'MatrixThinker', seed: 0, T: 2, finalBpb: 2.9 });
    const again = buildReport(findRunFolders([root]).map(loadRun)).markdown;
    assert.ok(again.includes('| MatrixThinker | 1 |'), again);
    assert.ok(again.includes('| VectorCollapseThinker (lr=1e-2) | 2 |'));
  });
});

test('report: runs with only training records and no rank fields anywhere', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-report-'));
  try {
    const dir = path.join(root, 'run');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ file: 'models/matrix_thinker.mt', preset: null, sets: {}, data: 'sotu', val: null, steps: 20, seed: 0, hypers: { T: 2 } }));
    fs.writeFileSync(path.join(dir, 'metrics.jsonl'), '{"step":10,"loss":3}\n');
    const { markdown, files } = writeReport([dir], path.join(root, 'out'));
    assert.ok(markdown.includes('| MatrixThinker | 1 | 2 | — | — | — | 5.05 … 6.13 |'));
    assert.ok(markdown.includes('Not recorded by these runs'));
    assert.ok(markdown.includes('No run has an eval.json with variants.'));
    assert.ok(markdown.includes('stopped at step 10 of 20'));
    assert.deepEqual(files.map((p) => path.basename(p)), ['report.md', 'loss_train.svg']);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('report: a user\'s mistakes are MtcErrors (one line, exit 1, no "internal error"): empty, missing, a file, broken config.json, -o a file', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-report-'));
  try {
    const isUserError = (re: RegExp) => (e: unknown) => e instanceof MtcError && re.test(e.message) && !e.message.includes('\n');
    fs.mkdirSync(path.join(root, 'empty'));
    assert.throws(() => writeReport([path.join(root, 'empty')], path.join(root, 'out')), isUserError(/empty: no run folder \(one holding config\.json\)/));
    assert.throws(() => writeReport([path.join(root, 'missing')], path.join(root, 'out')), isUserError(/missing: no such folder/));
    fs.writeFileSync(path.join(root, 'notes.txt'), 'hi');
    assert.throws(() => writeReport([path.join(root, 'notes.txt')], path.join(root, 'out')), isUserError(/notes\.txt: not a folder/));
    fs.mkdirSync(path.join(root, 'broken'));
    fs.writeFileSync(path.join(root, 'broken', 'config.json'), '{bad');
    assert.throws(() => writeReport([path.join(root, 'broken')], path.join(root, 'out')), isUserError(/no readable run folder in .*broken: config\.json is not valid JSON/));
    makeRun(path.join(root, 'run'), { file: 'models/matrix_thinker.mt', model: 'MatrixThinker', seed: 0, T: 2, finalBpb: 3 });
    assert.throws(() => writeReport([path.join(root, 'run')], path.join(root, 'notes.txt')), isUserError(/-o .*notes\.txt: a file of that name is in the way/));
    // a broken run beside a good one is listed, not fatal
    const { markdown } = writeReport([path.join(root, 'run'), path.join(root, 'broken')], path.join(root, 'out'));
    assert.ok(markdown.includes('## Skipped folders') && markdown.includes('config.json is not valid JSON'));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('report: a partly evaluated configuration says how many seeds each figure holds, and notes the mixed sources', () => {
  withFixture((root, f) => {
    // seed 2 loses its eval.json: the T-sweep and ablation have two seeds, the summary three
    fs.rmSync(path.join(f.sweep, 'matrix_thinker', 'seed-2', 'eval.json'));
    const out = path.join(root, 'report');
    const { markdown } = writeReport([f.sweep], out);
    const tsweep = fs.readFileSync(path.join(out, 'tsweep_bpb.svg'), 'utf8');
    assert.ok(tsweep.includes('MatrixThinker (2 seeds)') && !tsweep.includes('MatrixThinker (3 seeds)'), 'T-sweep legend counts the seeds with a T-sweep');
    assert.ok(fs.readFileSync(path.join(out, 'ablation_bpb.svg'), 'utf8').includes('MatrixThinker (2 seeds)'));
    assert.ok(fs.readFileSync(path.join(out, 'loss_train.svg'), 'utf8').includes('MatrixThinker (3 seeds)'));
    assert.ok(markdown.includes('| MatrixThinker | 3 |'));
    assert.match(markdown, /- MatrixThinker: the final values mix eval\.json \(2 runs\) with the last evaluation in metrics\.jsonl, on other windows \(\S*seed-2: run `mtc run eval --run <folder>` there\)/);
  });
});

test('report: a CI band is cut to the values the metric can take (erank ≥ 1), the table keeps the interval', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-report-'));
  try {
    // t=1 ranks 1.1, 3.0, 1.2: mean 1.77, the t interval reaches far below 1
    [1.1, 3.0, 1.2].forEach((r, seed) =>
      makeRun(path.join(root, 'sweep', 'matrix_thinker', `seed-${seed}`), { file: 'models/matrix_thinker.mt', model: 'MatrixThinker', seed, T: 2, valErank: [r, r + 0.5], finalBpb: 3 }),
    );
    const out = path.join(root, 'report');
    const { markdown } = writeReport([path.join(root, 'sweep')], out);
    const svg = fs.readFileSync(path.join(out, 'rank_val.svg'), 'utf8');
    const yTicks = [...svg.matchAll(/text-anchor="end">([^<]+)</g)].map((m) => Number(m[1]));
    assert.ok(yTicks.length > 2 && Math.min(...yTicks) >= 1, `y ticks ${yTicks}`);
    assert.ok(svg.includes('shaded: 95% CI (Student t), cut to erank ≥ 1'));
    assert.ok(fs.readFileSync(path.join(out, 'collapse_val.svg'), 'utf8').includes("cut to the ratio's range [0, 2]".replace("'", '&apos;')));
    assert.ok(!fs.readFileSync(path.join(out, 'loss_train.svg'), 'utf8').includes('cut to'), 'loss bands are not cut');
    // sd 1.07, half 4.3027·1.07/√3 = 2.66: the table gives the interval as computed
    assert.ok(markdown.includes('| MatrixThinker | 1.77 ± 2.66 | 2.27 ± 2.66 |'), markdown);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
