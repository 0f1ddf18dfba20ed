// The rank enrichment study as commands (../shared/MODEL.md, "Metrics" and "Follow-ups"):
// rank trajectories logged in training, `mtc run eval` with the T-sweep (--vary) and the
// rank-projection ablation (--project-rank), `mtc run sweep` over seeds, and `mtc report`.
// Oracles: the float64 interpreter (--backend reference), a direct erank over every position,
// and the identities the ablation must satisfy (k ≥ d changes nothing; k = 1 gives erank 1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from './helpers/models.ts';
import { buildGraph } from '../compiler/pipeline.ts';
import { interpret, interpretFrom } from '../compiler/interp.ts';
import { initParams } from '../runtime/init.ts';
import { erank, tokenCollapseRatio } from '../runtime/rank.ts';
import { rankObservation, TrajectoryMeter } from '../runtime/trajectory.ts';

const mtc = (args: string[]) =>
  spawnSync(process.execPath, [path.join(repoRoot, 'bin/mtc.js'), ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 600_000 });

// A Matrix Thinker small enough for CI: d 4, 2 heads, 1 block, T 2, 4 probes, ctx 16.
const small = ['--set', 'd=4', '--set', 'heads=2', '--set', 'n_blocks=1', '--set', 'T=2', '--set', 'probes=4', '--set', 'ctx=16', '--set', 'pos_rows=16', '--set', 'batch=4'];
const smallSets = Object.fromEntries(small.filter((_, i) => i % 2 === 1).map((kv) => kv.split('=')).map(([k, v]) => [k, v]));

function smallModel() {
  const built = buildGraph(path.join(repoRoot, 'models/matrix_thinker.mt'), { sets: smallSets });
  const params = initParams(built.graph.params, 3);
  const tokens = Float64Array.from({ length: 4 * 16 }, (_, i) => (i * 37 + 11) % 256);
  const env = { params, inputs: { tokens, targets: tokens }, training: false, seed: 0, step: 0 };
  return { g: built.graph, env };
}

test('interpretFrom: the rest of the graph from a cut equals the whole graph, and follows the given values', () => {
  const { g, env } = smallModel();
  const obs = rankObservation(g)!;
  const cut = g.observations[obs.name][obs.iterations - 1];
  const all = interpret(g, env, g.outputs.logits);
  const [same] = interpretFrom(g, env, new Map([[cut, all[cut]]]), [g.outputs.logits]);
  assert.deepEqual(Array.from(same), Array.from(all[g.outputs.logits]));
  const [changed] = interpretFrom(g, env, new Map([[cut, all[cut].map((x) => 2 * x)]]), [g.outputs.logits]);
  // RMSNorm makes the head blind to the scale of its input (up to the 1e-6 of the norm)
  const rel = Math.max(...Array.from(changed, (x, i) => Math.abs(x - same[i]) / (Math.abs(same[i]) + 1e-3)));
  assert.ok(rel < 1e-4, `scaled cut: rel ${rel}`);
  const [zeroed] = interpretFrom(g, env, new Map([[cut, new Float64Array(all[cut].length)]]), [g.outputs.logits]);
  assert.ok(Array.from(zeroed).every((x) => x === 0), 'zero token matrices give zero logits through norm and head');
});

test('TrajectoryMeter: every-position mean equals a direct erank and collapse over the observations; draws are fresh per iteration and seeded', () => {
  const { g, env } = smallModel();
  const obs = rankObservation(g)!;
  assert.deepEqual(obs.shape, [4, 16, 4, 4]);
  assert.equal(obs.iterations, 2);
  const values = interpret(g, env, g.outputs.logits);
  const perIter = g.observations.residual.map((id) => values[id]);
  const meter = new TrajectoryMeter(obs.shape, 2, 'all', 0);
  meter.add(perIter);
  const r = meter.result();
  for (let t = 0; t < 2; t++) {
    let e = 0;
    for (let p = 0; p < 64; p++) e += erank(perIter[t], 4, 4, p * 16);
    assert.ok(Math.abs(r.erank[t] - e / 64) < 1e-12, `erank t=${t + 1}`);
    let c = 0;
    for (let s = 0; s < 4; s++) c += tokenCollapseRatio(perIter[t], 16, 16, s * 256);
    assert.ok(Math.abs(r.collapse[t] - c / 4) < 1e-12, `collapse t=${t + 1}`);
    assert.ok(r.erank[t] >= 1 && r.erank[t] <= 4);
  }
  // 10 of 64 positions: deterministic for a seed, different for another seed
  const sampled = (seed: number) => {
    const m = new TrajectoryMeter(obs.shape, 2, 10, seed);
    m.add(perIter);
    return m.result().erank;
  };
  assert.deepEqual(sampled(1), sampled(1));
  assert.notDeepEqual(sampled(1), sampled(2));
  // a padded batch: only the first `sequences` rows count
  const two = new TrajectoryMeter(obs.shape, 2, 'all', 0);
  two.add(perIter, 2);
  let e0 = 0;
  for (let p = 0; p < 32; p++) e0 += erank(perIter[0], 4, 4, p * 16);
  assert.ok(Math.abs(two.result().erank[0] - e0 / 32) < 1e-12);
});

test('training logs the val-time rank trajectory and, apart, the training-batch one; eval gives the T-sweep and the ablation', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-study-'));
  const r = mtc(['run', 'train', 'models/matrix_thinker.mt', ...small, '--steps', '12', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  const evals = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((x) => 'val_loss' in x);
  assert.deepEqual(evals.map((x) => x.step), [0, 12]);
  for (const x of evals) {
    for (const k of ['val_erank', 'val_collapse', 'train_erank', 'train_collapse']) {
      assert.equal(x[k].length, 2, k);
      for (const v of x[k]) assert.ok(Number.isFinite(v) && v > 0, `${k} ${v}`);
    }
    for (const v of [...x.val_erank, ...x.train_erank]) assert.ok(v >= 1 && v <= 4);
    assert.ok(Math.abs(x.val_ppl - Math.exp(x.val_loss)) < 1e-9 * x.val_ppl);
  }
  assert.match(r.stderr, /val_erank \S+ \S+/);

  // mtc run eval --run: the run's own model, sets, newest checkpoint and held-out split
  const base = ['run', 'eval', '--run', out, '--windows', '6', '--json'];
  const ev = mtc([...base, '--vary', 'T=1,2,3', '--project-rank', '1,2,4', '--rank-positions', 'all']);
  assert.equal(ev.status, 0, ev.stderr);
  const res = JSON.parse(ev.stdout);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'eval.json'), 'utf8')), res, 'eval --run saves eval.json');
  assert.equal(res.step, 12);
  assert.equal(res.erank.length, 2);
  assert.deepEqual(res.variants.map((v: { hypers: { T: number } }) => v.hypers.T), [1, 2, 3]);
  assert.deepEqual(res.variants.map((v: { erank: number[] }) => v.erank.length), [1, 2, 3]);
  const t2 = res.variants[1];
  assert.equal(t2.loss, res.loss, 'the trained T is the base evaluation');
  // the first iterations do not depend on how many follow
  assert.ok(Math.abs(res.variants[0].erank[0] - res.erank[0]) < 1e-6 && Math.abs(res.variants[2].erank[1] - res.erank[1]) < 1e-6);
  const ab = res.ablation;
  assert.deepEqual(ab.map((a: { k: number | null }) => a.k), [null, 1, 2, 4]);
  // unprojected through the host path = the device's loss (f32 device vs f64 host head)
  assert.ok(Math.abs(ab[0].loss - res.loss) / res.loss < 1e-4, `host ${ab[0].loss} vs device ${res.loss}`);
  assert.ok(Math.abs(ab[0].erank - res.erank[1]) < 1e-4, 'unprojected erank = the last iteration\'s');
  // k = d = 4 is the identity up to float64 rounding; k = 1 leaves rank one
  assert.ok(Math.abs(ab[3].loss - ab[0].loss) < 1e-9 && Math.abs(ab[3].erank - ab[0].erank) < 1e-9);
  assert.ok(Math.abs(ab[1].erank - 1) < 1e-6, `k=1 erank ${ab[1].erank}`);
  assert.ok(ab[1].erank <= ab[2].erank && ab[2].erank <= ab[3].erank + 1e-12);

  // the device's trajectory against the float64 interpreter's on the same windows
  const ref = JSON.parse(mtc([...base, '--backend', 'reference', '--rank-positions', 'all', '--save', path.join(out, 'ref.json')]).stdout);
  for (let t = 0; t < 2; t++) {
    assert.ok(Math.abs(ref.erank[t] - res.erank[t]) / ref.erank[t] < 1e-4, `erank t=${t + 1}: gpu ${res.erank[t]} vs reference ${ref.erank[t]}`);
    assert.ok(Math.abs(ref.collapse[t] - res.collapse[t]) / ref.collapse[t] < 1e-4, `collapse t=${t + 1}`);
  }
  // a varied hyperparameter that changes the parameters' shapes is refused clearly
  const bad = mtc([...base, '--vary', 'd=8']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--vary d=8 changes embed\.u_tok from \[256, 4\] to \[256, 8\]/);
  assert.doesNotMatch(bad.stderr, /\n\s+at /);
});

test('mtc run sweep trains every (model, seed), resumes when rerun, aggregates over seeds; mtc report renders it', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-sweep-'));
  const args = ['run', 'sweep', 'models/matrix_thinker.mt', '--seeds', '0-1', ...small, '--steps', '4', '--out', out, '--vary', 'T=1,2', '--project-rank', '1,2', '--windows', '4'];
  const r = mtc(args);
  assert.equal(r.status, 0, r.stderr);
  for (const s of [0, 1]) {
    const e = JSON.parse(fs.readFileSync(path.join(out, 'matrix_thinker', `seed-${s}`, 'eval.json'), 'utf8'));
    assert.equal(e.step, 4);
  }
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')).matrix_thinker;
  assert.equal(summary.seeds, 2);
  assert.equal(summary.erank.length, 2);
  assert.ok(summary.bpb.lo <= summary.bpb.mean && summary.bpb.mean <= summary.bpb.hi);
  assert.ok(summary.bpb.hi > summary.bpb.lo, 'two different seeds give a confidence interval');
  const again = mtc(args);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /matrix_thinker seed 0: done already/);
  assert.match(again.stderr, /matrix_thinker seed 1: done already/);

  const rep = path.join(out, 'report');
  const rr = mtc(['report', out, '-o', rep]);
  assert.equal(rr.status, 0, rr.stderr);
  const md = fs.readFileSync(path.join(rep, 'report.md'), 'utf8');
  assert.match(md, /MatrixThinker/);
  const svgs = fs.readdirSync(rep).filter((f) => f.endsWith('.svg'));
  assert.ok(svgs.length >= 3, `figures: ${svgs}`);
  for (const f of svgs) assert.match(fs.readFileSync(path.join(rep, f), 'utf8'), /^<svg[\s\S]*<\/svg>\s*$/);
});

test('the study commands refuse a bad request in one sentence before any training: seeds, model file, --vary, --project-rank, --windows, a run without checkpoint', () => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-refuse-')), 'sweep');
  const sweep = (...extra: string[]) => mtc(['run', 'sweep', 'models/matrix_thinker.mt', '--seeds', '0', ...small, '--steps', '2', '--out', out, ...extra]);
  const refused = (r: ReturnType<typeof mtc>, status: number, re: RegExp) => {
    assert.equal(r.status, status, `exit ${r.status}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stderr, /\n\s+at |internal error/);
  };
  // usage errors (exit 2): the option's value is malformed
  for (const seeds of ['abc', '3-1', '-1', '0,,1', '']) refused(mtc(['run', 'sweep', 'models/matrix_thinker.mt', '--seeds', seeds, '--out', out]), 2, /--seeds/);
  refused(sweep('--project-rank', '0'), 2, /--project-rank takes positive whole numbers/);
  refused(sweep('--vary', 'T='), 2, /the values of --vary must be numbers/);
  refused(sweep('--vary', 'T=1,,2'), 2, /the values of --vary must be numbers/);
  refused(sweep('--windows', '0'), 2, /--windows must be a positive whole number/);
  // user errors (exit 1), found by compiling each model before the first run trains
  refused(mtc(['run', 'sweep', 'models/nope.mt', '--seeds', '0', '--out', out]), 1, /model file models\/nope\.mt does not exist/);
  refused(sweep('--vary', 'foo=1,2'), 1, /--vary foo: 'foo' is not a hyperparameter of models\/matrix_thinker\.mt; known: d, /);
  refused(sweep('--vary', 'd=8'), 1, /--vary d=8 changes embed\.u_tok from \[256, 4\] to \[256, 8\]/);
  refused(sweep('--vary', 'micro_batch=1,2'), 1, /--vary micro_batch=1 changes the train section \(micro_batch \d+ -> 1\); an evaluation sets its own windows/);
  refused(sweep('--vary', 'ctx=8'), 1, /--vary ctx=8 changes the train section \(ctx \d+ -> 8/);
  for (const [opt, v] of [['--vary', 'T=0x2'], ['--windows', '0x10'], ['--project-rank', '1e0,0x2'], ['--steps', 'Infinity']]) refused(sweep(opt, v), 2, new RegExp(opt));
  refused(sweep('--project-rank', '1,8'), 1, /--project-rank 8: the token matrices of MatrixThinker are 4×4, so the rank k can be at most 4/);
  refused(sweep('--preset', 'huge'), 1, /unknown preset 'huge'/);
  refused(sweep('--tokenizer', 'gpt2'), 1, /the model's logits have 256 classes, but gpt2 tokens take 50257 values: set vocab to at least 50257/);
  refused(sweep('--tokenizer', 'words'), 2, /--tokenizer/);
  assert.ok(!fs.existsSync(out), 'nothing was trained');

  // mtc run eval: a missing run folder, a run folder without checkpoint, the same study checks
  refused(mtc(['run', 'eval', '--run', path.join(out, 'missing')]), 1, /--run \S+missing: no such folder/);
  const noCk = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-nock-'));
  fs.writeFileSync(path.join(noCk, 'config.json'), JSON.stringify({ file: 'models/matrix_thinker.mt', preset: null, sets: smallSets, data: 'sotu', val: null, steps: 2, seed: 0, train: { valFraction: 0.1 } }));
  refused(mtc(['run', 'eval', '--run', noCk]), 1, /the run folder \S+ holds no checkpoint/);
  const evalArgs = ['run', 'eval', 'models/matrix_thinker.mt', ...small, '--checkpoint', path.join(noCk, 'none.safetensors'), '--data', 'models/matrix_thinker.mt'];
  refused(mtc([...evalArgs, '--vary', 'foo=1']), 1, /--vary foo: 'foo' is not a hyperparameter/);
  refused(mtc([...evalArgs, '--vary', 'batch=1,2']), 1, /--vary batch=1 changes the train section \(batch \d+ -> 1, micro_batch \d+ -> 1\)/);
  refused(mtc([...evalArgs, '--project-rank', '5']), 1, /--project-rank 5: the token matrices of MatrixThinker are 4×4/);
  refused(mtc([...evalArgs, '--project-rank', '0']), 2, /--project-rank takes positive whole numbers/);
  refused(mtc(evalArgs), 1, /cannot read checkpoint/);
});

test('mtc run sweep --tokenizer gpt2: every run trains and evaluates on GPT-2 BPE tokens', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-sweep-bpe-'));
  const r = mtc(['run', 'sweep', 'models/matrix_thinker.mt', '--seeds', '0', ...small, '--set', 'vocab=50257', '--tokenizer', 'gpt2', '--steps', '1', '--windows', '2', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  const run = path.join(out, 'matrix_thinker', 'seed-0');
  assert.equal(JSON.parse(fs.readFileSync(path.join(run, 'config.json'), 'utf8')).train.tokenizer, 'gpt2');
  const e = JSON.parse(fs.readFileSync(path.join(run, 'eval.json'), 'utf8'));
  assert.equal(e.tokenizer, 'gpt2');
  assert.ok(e.bytes > e.tokens, `BPE tokens cover more than a byte each: ${e.tokens} tokens, ${e.bytes} bytes`);
  assert.match(r.stdout, /matrix_thinker \(1 seed\): bpb /);
});
