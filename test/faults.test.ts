// Bad days: a loss that becomes infinite, Ctrl-C in the middle of a run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot, tempModel } from './helpers/models.ts';

const bin = path.join(repoRoot, 'bin/mtc.js');

// A bigram model trained with an absurd learning rate: the weights overflow float32 within
// two steps and the loss becomes NaN or infinite.
const exploding = `
hyper {
  lr = 1e38
}
model Bigram {
  param E: [256, 8] = normal(1)
  param W: [8, 256] = normal(0.1)
  forward(tokens) {
    return gather(E, tokens) @ W
  }
}
train {
  ctx = 8
  batch = 2
  steps = 20
  loss = cross_entropy
  optimizer = adamw(lr = lr, weight_decay = 0)
  schedule = warmup_cosine(warmup = 0)
  log_every = 1
  eval_every = 1
  eval_batches = 1
}
`;

test('a loss that becomes non-finite stops the run naming the step and the parameter, keeping the last checkpoint', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-nan-'));
  const r = spawnSync(process.execPath, [bin, 'run', 'train', tempModel(exploding), '--out', out], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /error: the training loss became (NaN|Infinity|-Infinity) at step (\d+); the first parameter with a non-finite gradient is (E|W)\. The last good checkpoint \(step \d+\) is kept in /);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const step = Number(/at step (\d+)/.exec(r.stderr)![1]);
  const kept = fs.readdirSync(path.join(out, 'checkpoints')).filter((f) => f.endsWith('.safetensors') && !f.includes('optimizer'));
  assert.ok(kept.length >= 1 && kept.every((f) => Number(/\d+/.exec(f)![0]) < step), `checkpoints ${kept} before step ${step}`);
});

test('Ctrl-C stops after the current step and writes a checkpoint that --resume continues from', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-int-'));
  const args = [bin, 'run', 'train', 'models/matrix_thinker.mt', '--out', out, '--steps', '400',
    '--set', 'd=4', '--set', 'n_blocks=1', '--set', 'T=1', '--set', 'probes=4', '--set', 'ctx=8', '--set', 'pos_rows=8', '--set', 'batch=2'];
  const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const metrics = path.join(out, 'metrics.jsonl');
  const t0 = Date.now();
  while (Date.now() - t0 < 300_000 && child.exitCode === null && !(fs.existsSync(metrics) && /"loss"/.test(fs.readFileSync(metrics, 'utf8')))) {
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGINT');
  const code = await new Promise((r) => child.once('exit', r));
  assert.equal(code, 0, stderr);
  const m = /interrupted after step (\d+); checkpoint (\S+); continue with --resume/.exec(stderr);
  assert.ok(m, stderr);
  assert.ok(Number(m[1]) >= 10 && Number(m[1]) < 400);
  assert.ok(fs.existsSync(m[2]));
});

test('no GPU adapter: a clear error and exit code 1, never a hang', () => {
  const env = { ...process.env, VK_DRIVER_FILES: '/nonexistent/icd.json', VK_ICD_FILENAMES: '/nonexistent/icd.json' };
  const r = spawnSync(process.execPath, [bin, 'run', 'train', 'models/matrix_thinker.mt', '--steps', '1', '--out', fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-noadapter-'))], { cwd: repoRoot, env, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /error: no WebGPU adapter found: install a Vulkan driver/);
});

test('a kernel that fails validation is a clear error, not a silent skip', async () => {
  const { acquireDevice, compileShader } = await import('../runtime/device.ts');
  const { MtcError } = await import('../compiler/diagnostics.ts');
  const gpu = await acquireDevice();
  try {
    await assert.rejects(
      compileShader(gpu.device, '@compute @workgroup_size(1) fn main() { let x: f32 = undefined_name; }', 'broken.wgsl'),
      (e: unknown) => e instanceof MtcError && /the WGSL kernel broken\.wgsl failed to compile on this device, so nothing was run/.test((e as Error).message) && /broken\.wgsl:1:/.test((e as Error).message),
    );
  } finally {
    gpu.close();
  }
});
