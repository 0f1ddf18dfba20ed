// The mtc command as a user runs it: exit codes, diagnostics without stack traces, and a short
// training run whose metrics.jsonl and safetensors checkpoint are read back independently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot, tempModel } from './helpers/models.ts';

const mtc = (args: string[]) =>
  spawnSync(process.execPath, [path.join(repoRoot, 'bin/mtc.js'), ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 600_000 });

test('help and usage errors', () => {
  const help = mtc(['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /compile \[options\] <model\.mt>/);
  const trainHelp = mtc(['run', 'train', '--help']);
  assert.equal(trainHelp.status, 0);
  for (const opt of ['--preset', '--set', '--data', '--val', '--steps', '--seed', '--out']) assert.ok(trainHelp.stdout.includes(opt), opt);
  assert.equal(mtc(['frobnicate']).status, 2);
  const bare = mtc([]);
  assert.equal(bare.status, 2, 'no command is a usage error');
  assert.match(bare.stderr, /Usage: mtc/);
  assert.equal(mtc(['run', 'train', 'models/matrix_thinker.mt', '--steps', 'many']).status, 2);
});

test('user errors exit 1 with a diagnostic and no stack trace', () => {
  const missing = mtc(['compile', 'models/nope.mt']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read 'models\/nope\.mt'/);
  const bad = tempModel('model M {\n  forward(t) {\n    return silu(t $ 2)\n  }\n}\n');
  const r = mtc(['compile', bad]);
  assert.equal(r.status, 1);
  assert.ok(r.stderr.includes(`${bad}:3:19: error: unexpected character '$'`), r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const preset = mtc(['compile', 'models/matrix_thinker.mt', '--preset', 'huge', '-o', os.tmpdir()]);
  assert.equal(preset.status, 1);
  assert.match(preset.stderr, /unknown preset 'huge'/);
});

test('mtc run train writes metrics.jsonl and a safetensors checkpoint with the .mt paths', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-run-'));
  const r = mtc([
    'run', 'train', 'models/matrix_thinker.mt',
    '--set', 'd=4', '--set', 'heads=2', '--set', 'n_blocks=1', '--set', 'T=2', '--set', 'probes=4',
    '--set', 'ctx=16', '--set', 'pos_rows=16', '--set', 'batch=4', '--steps', '12', '--out', out,
  ]);
  assert.equal(r.status, 0, r.stderr);
  const records = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const trainRecs = records.filter((x) => 'loss' in x);
  const evalRecs = records.filter((x) => 'val_loss' in x);
  assert.deepEqual(trainRecs.map((x) => x.step), [10, 12]);
  for (const x of trainRecs) {
    for (const k of ['step', 'loss', 'lr', 'tokens_per_s']) assert.equal(typeof x[k], 'number', k);
    assert.ok(x.loss > 0 && x.loss < 10);
  }
  assert.deepEqual(evalRecs.map((x) => x.step), [0, 12]);
  for (const x of evalRecs) assert.ok(Math.abs(x.val_bpb - x.val_loss / Math.LN2) < 1e-9);
  // at initialisation a byte model is near uniform: about 8 bits per byte
  assert.ok(evalRecs[0].val_bpb > 7 && evalRecs[0].val_bpb < 10, `initial bpb ${evalRecs[0].val_bpb}`);

  // An independent safetensors reader: u64 header length, JSON header, raw little-endian data.
  const buf = fs.readFileSync(path.join(out, 'checkpoints', 'step-000012.safetensors'));
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  assert.equal(header.__metadata__.model, 'MatrixThinker');
  assert.equal(JSON.parse(header.__metadata__.hypers).d, 4);
  assert.equal(header.__metadata__.step, '12');
  assert.deepEqual(header['blocks.0.attn.q.A'].shape, [4, 4]);
  assert.equal(header['blocks.0.attn.q.A'].dtype, 'F32');
  assert.deepEqual(header['embed.u_tok'].shape, [256, 4]);
  const g = header['blocks.0.attn.norm.g'];
  const vals = new Float32Array(buf.buffer.slice(buf.byteOffset + 8 + n + g.data_offsets[0], buf.byteOffset + 8 + n + g.data_offsets[1]));
  assert.equal(vals.length, 16);
  assert.ok(vals.every((v) => Number.isFinite(v) && Math.abs(v - 1) < 0.1), 'RMSNorm gains start at 1 and move a little');
  assert.ok(vals.some((v) => v !== 1), 'the gains were trained');

  // mtc run eval on that checkpoint: the device and the float64 interpreter agree, and a
  // short last batch (5 windows, batch 4) counts only its real windows.
  const evalArgs = [
    'run', 'eval', 'models/matrix_thinker.mt', '--checkpoint', path.join(out, 'checkpoints', 'step-000012.safetensors'),
    '--set', 'd=4', '--set', 'heads=2', '--set', 'n_blocks=1', '--set', 'T=2', '--set', 'probes=4',
    '--set', 'ctx=16', '--set', 'pos_rows=16', '--set', 'batch=4', '--data', path.join(repoRoot, 'README.md'), '--windows', '5', '--json',
  ];
  const onGpu = mtc(evalArgs);
  assert.equal(onGpu.status, 0, onGpu.stderr);
  const gpu = JSON.parse(onGpu.stdout);
  const ref = JSON.parse(mtc([...evalArgs, '--backend', 'reference']).stdout);
  const again = JSON.parse(mtc([...evalArgs, '--batch', '2']).stdout);
  assert.equal(gpu.windows, 5);
  assert.equal(gpu.tokens, 80);
  assert.ok(Math.abs(gpu.loss - ref.loss) / ref.loss < 1e-4, `gpu ${gpu.loss} vs reference ${ref.loss}`);
  assert.ok(Math.abs(gpu.loss - again.loss) / ref.loss < 1e-6, `batch 4 ${gpu.loss} vs batch 2 ${again.loss}`);
  assert.ok(Math.abs(gpu.bpb - gpu.loss / Math.LN2) < 1e-12 && Math.abs(gpu.ppl - Math.exp(gpu.loss)) < 1e-9);
});

test('a run killed with SIGKILL and resumed logs the same losses as an uninterrupted run', async () => {
  // the Matrix Thinker with checkpoints every 6 steps and a log every 2
  const src = fs
    .readFileSync(path.join(repoRoot, 'models/matrix_thinker.mt'), 'utf8')
    .replace('import "stdlib.mt"', `import "${path.join(repoRoot, 'models/stdlib.mt')}"`)
    .replace('eval_every = 50', 'eval_every = 6')
    .replace('log_every = 10', 'log_every = 2');
  const file = tempModel(src);
  const args = (out: string) => [
    path.join(repoRoot, 'bin/mtc.js'), 'run', 'train', file, '--steps', '12', '--out', out,
    '--set', 'd=4', '--set', 'n_blocks=1', '--set', 'T=2', '--set', 'probes=4', '--set', 'ctx=16', '--set', 'pos_rows=16', '--set', 'batch=4',
  ];
  const straight = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-straight-'));
  assert.equal(spawnSync(process.execPath, args(straight), { encoding: 'utf8' }).status, 0);

  const killed = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-killed-'));
  const child = spawn(process.execPath, args(killed), { stdio: 'ignore' });
  const ckpt = path.join(killed, 'checkpoints', 'step-000006.safetensors');
  const t0 = Date.now();
  while (!fs.existsSync(ckpt) && Date.now() - t0 < 300_000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(fs.existsSync(ckpt), 'the checkpoint at step 6 was written before the kill');
  const resumed = spawnSync(process.execPath, [...args(killed), '--resume'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, /resumed from .*step-000006\.safetensors \(step 6\)/);

  const losses = (dir: string) =>
    new Map(
      fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
        .filter((r) => 'loss' in r).map((r) => [r.step, r.loss]),
    );
  const a = losses(straight);
  const b = losses(killed);
  for (const step of [8, 10, 12]) assert.equal(b.get(step), a.get(step), `loss at step ${step}`);

  // resuming with other settings is refused before anything is written; more steps are fine
  const config = fs.readFileSync(path.join(killed, 'config.json'), 'utf8');
  const other = spawnSync(process.execPath, [...args(killed), '--resume', '--steps', '14', '--seed', '5', '--set', 'lr=1'], { encoding: 'utf8' });
  assert.equal(other.status, 1, other.stderr);
  assert.match(other.stderr, /--resume: the run in .* was trained with other settings \(seed 0 -> 5; lr 0\.03 -> 1\); resume with the settings it started with/);
  assert.equal(fs.readFileSync(path.join(killed, 'config.json'), 'utf8'), config);
});

test('a damaged checkpoint is refused with a clear error', async () => {
  const { readSafetensors } = await import('../runtime/checkpoint.ts');
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-bad-'));
  const f = path.join(out, 'x.safetensors');
  const { writeSafetensors } = await import('../runtime/checkpoint.ts');
  writeSafetensors(f, { names: ['a.b'], shapes: [[2, 2]], data: [new Float32Array([1, 2, 3, 4])] }, { step: '1' });
  assert.deepEqual(Array.from(readSafetensors(f).tensors.get('a.b')!.data), [1, 2, 3, 4]);
  const bytes = fs.readFileSync(f);
  bytes[bytes.length - 1] ^= 0x40;
  fs.writeFileSync(f, bytes);
  assert.throws(() => readSafetensors(f), /checkpoint .* is damaged: its checksum does not match its data/);
  fs.writeFileSync(f, bytes.subarray(0, bytes.length - 5));
  assert.throws(() => readSafetensors(f), /is damaged: tensor a\.b lies outside the file/);
});
