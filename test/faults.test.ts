// Bad days: a loss that becomes infinite, Ctrl-C in the middle of a run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
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
  assert.equal(code, 130, `an interrupted run exits 130 (128 + SIGINT), not 0: ${stderr}`);
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

// --- The device itself failing: lost mid-run, out of memory, a model too large for it. ---
// Dawn's Node binding offers no way to make a driver lose the device (no forceLoss), and
// lavapipe cannot be made to fail an allocation gracefully (past a host memory limit it maps
// nothing and crashes instead of reporting out-of-memory). So a loss is made the one way
// WebGPU allows, destroy() called from outside Gpu.close(): for mtc that is a device lost from
// under it, and it follows the same path as a driver's loss (device.lost resolves, pending
// mapAsync rejects with a bare AbortError). Out of memory is reported to Session.open through
// the error scope by a wrapped device; the size limits are real.

const tinyModel = `
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
  steps = 10
  loss = cross_entropy
  optimizer = adamw(lr = 1e-2)
  log_every = 1
  eval_every = 5
  eval_batches = 1
}
`;
const noStack = (s: string): void => assert.doesNotMatch(s, /\n\s+at |internal error/);
const lostMessage = (doing: string): RegExp =>
  new RegExp(`the WebGPU device was lost while ${doing} \\(destroyed: [^)]*\\), so the run stopped there\\. Checkpoints already written are kept: check the GPU driver .* and run again; a training run continues from its last checkpoint with --resume\\.`);

/** Compiles the tiny model for Session.open. */
async function tinySession() {
  const { compile } = await import('../compiler/pipeline.ts');
  const { writeModule } = await import('../runtime/session.ts');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-fault-'));
  writeModule(compile(tempModel(tinyModel)), dir);
  return dir;
}
const tinyBatch = () => ({ tokens: Int32Array.from({ length: 16 }, (_, i) => i), targets: Int32Array.from({ length: 16 }, (_, i) => i + 1) });

test('device lost with a read in flight: the read rejects at once with what happened and what to do', async () => {
  const { acquireDevice } = await import('../runtime/device.ts');
  const { Session } = await import('../runtime/session.ts');
  const { MtcError } = await import('../compiler/diagnostics.ts');
  const dir = await tinySession();
  const gpu = await acquireDevice();
  try {
    const s = await Session.open(dir, gpu);
    s.initialise(1);
    for (let step = 0; step < 3; step++) s.trainStep(tinyBatch(), step, 1e-2, 1);
    assert.equal((await s.readLosses()).length, 3);
    s.trainStep(tinyBatch(), 3, 1e-2, 1);
    const reading = s.readLosses(); // its mapAsync is pending when the device goes
    gpu.device.destroy();
    const t0 = Date.now();
    await assert.rejects(reading, (e: unknown) => e instanceof MtcError && lostMessage('reading the losses back from it').test((e as Error).message));
    assert.ok(Date.now() - t0 < 5000, 'rejected promptly');
    // Later work on the lost device fails the same way, never with zeros read back.
    s.trainStep(tinyBatch(), 4, 1e-2, 1);
    await assert.rejects(s.readLosses(), (e: unknown) => e instanceof MtcError && lostMessage('reading the losses back from it').test((e as Error).message));
    await assert.rejects(s.readParams(), (e: unknown) => e instanceof MtcError && lostMessage('reading results back from it').test((e as Error).message));
    await assert.rejects(Session.open(dir, gpu), (e: unknown) => e instanceof MtcError && lostMessage("creating the model's buffers").test((e as Error).message));
  } finally {
    gpu.close();
  }
});

test('device lost in the middle of `mtc run train`: exit 1 with the message, checkpoint kept, --resume continues', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-lost-'));
  // Loaded before mtc: once the checkpoint of step 5 is complete, the next read back (the
  // loss of step 6) starts and the device goes while it is pending.
  const preload = `${out}-lose.mjs`;
  fs.writeFileSync(
    preload,
    `import * as fs from 'node:fs';
import { globals } from ${JSON.stringify(pathToFileURL(path.join(repoRoot, 'node_modules/webgpu/index.js')).href)};
const { GPUDevice, GPUBuffer } = globals;
const checkpoint = ${JSON.stringify(path.join(out, 'checkpoints', 'step-000005.safetensors'))};
let device, lost = false;
const enc = GPUDevice.prototype.createCommandEncoder;
GPUDevice.prototype.createCommandEncoder = function (...a) { device = this; return enc.apply(this, a); };
const map = GPUBuffer.prototype.mapAsync;
GPUBuffer.prototype.mapAsync = function (...a) {
  const p = map.apply(this, a);
  if (!lost && fs.existsSync(checkpoint)) { lost = true; device.destroy(); }
  return p;
};
`,
  );
  const model = tempModel(tinyModel);
  const r = spawnSync(process.execPath, ['--import', pathToFileURL(preload).href, bin, 'run', 'train', model, '--out', out], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`(^|\\n)error: ${lostMessage('reading the losses back from it').source}`));
  noStack(r.stderr);
  const kept = fs.readdirSync(path.join(out, 'checkpoints'));
  assert.deepEqual(kept.sort(), ['step-000005.optimizer.safetensors', 'step-000005.safetensors']);
  // The log is whole (every line parses) and ends at step 5, before the loss.
  const records = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(Math.max(...records.map((m) => m.step ?? 0)), 5);
  // What the message advises works: the run continues from step 5 to the end.
  const again = spawnSync(process.execPath, [bin, 'run', 'train', model, '--out', out, '--resume'], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr + again.stdout, /resumed from \S+ \(step 5\)/);
  assert.ok(fs.existsSync(path.join(out, 'checkpoints', 'step-000010.safetensors')));
});

test('a device lost while mtc waits on something that never settles still ends the process with the message', () => {
  // Safety net for work awaited outside Gpu.settle: the loss is reported and the process
  // exits 1 rather than hang.
  const script = `
import { acquireDevice } from ${JSON.stringify(path.join(repoRoot, 'runtime/device.ts'))};
const gpu = await acquireDevice();
setInterval(() => {}, 1000); // something keeps the process alive
gpu.device.destroy();
await new Promise(() => {});
`;
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-hang-')), 'hang.mts');
  fs.writeFileSync(file, script);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.ok(Date.now() - t0 < 30_000);
  assert.match(r.stderr, new RegExp(`mtc: error: ${lostMessage('the run was waiting on it').source}`));
  noStack(r.stderr);
});

test('out of device memory creating the buffers: a clear error naming the size and what to reduce', async () => {
  const { acquireDevice } = await import('../runtime/device.ts');
  const { Session } = await import('../runtime/session.ts');
  const { MtcError } = await import('../compiler/diagnostics.ts');
  const dir = await tinySession();
  const gpu = await acquireDevice();
  try {
    // The real device, except that the out-of-memory error scope reports an error, as a
    // device out of memory does when createBuffer fails.
    const scopes: GPUErrorFilter[] = [];
    const device = new Proxy(gpu.device, {
      get(target, key) {
        if (key === 'pushErrorScope') return (f: GPUErrorFilter) => (scopes.push(f), target.pushErrorScope(f));
        if (key === 'popErrorScope')
          return async () => {
            const err = await target.popErrorScope();
            return scopes.pop() === 'out-of-memory' ? new GPUOutOfMemoryError('Allocation failed') : err;
          };
        const v = Reflect.get(target, key);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    await assert.rejects(Session.open(dir, { ...gpu, device }), (e: unknown) => {
      assert.ok(e instanceof MtcError, String(e));
      assert.match(e.message, /^the device ran out of memory creating the model's buffers \(\d+\.\d MiB in all; Allocation failed\), so nothing was run; reduce micro_batch \(the batch is then run as more micro-batches\), batch or ctx \(or the model size\) with --set, or use a device with more memory$/);
      return true;
    });
  } finally {
    gpu.close();
  }
});

/** The device's largest storage binding, as mtc requests it. */
async function maxBinding(): Promise<number> {
  const { acquireDevice } = await import('../runtime/device.ts');
  const gpu = await acquireDevice();
  try {
    return gpu.device.limits.maxStorageBufferBindingSize;
  } finally {
    gpu.close();
  }
}

test('a batch too large for the device: a compile-time error saying what to reduce, the run folder untouched', async (t) => {
  const limit = await maxBinding();
  // The largest activation of the Matrix Thinker at these sizes, unfused, is [batch, 64, 256, 32]
  // floats (fused, the head's weight gradient is a contraction and never writes it).
  const perSeq = 64 * 256 * 32 * 4;
  const batch = Math.ceil((2 * limit) / perSeq);
  if (batch * perSeq / 4 > 2 ** 31 - 1) return t.skip(`this device binds ${limit} bytes: past 32-bit indexing`);
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-bigbatch-')), 'run');
  const sets = { batch, ctx: 64, pos_rows: 64, probes: 32, vocab: 256 };
  const r = spawnSync(process.execPath, [bin, 'run', 'train', 'models/matrix_thinker.mt', '--no-fuse', '--steps', '1', '--out', out, ...Object.entries(sets).flatMap(([k, v]) => ['--set', `${k}=${v}`])], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`error: a tensor of \\d+ bytes exceeds the device's largest storage binding \\(${limit} bytes\\); reduce micro_batch \\(gradients then accumulate over more micro-batches\\), batch or ctx`));
  noStack(r.stderr);
  assert.ok(!fs.existsSync(out));
});

test('parameters too large for one storage binding: a clear error, not a "compiler bug"', async () => {
  const limit = await maxBinding();
  // Each parameter fits the binding, the arena of both does not.
  const h = Math.floor((0.7 * limit) / 1024);
  const wide = tinyModel.replace('[256, 8]', `[256, ${h}]`).replace('[8, 256]', `[${h}, 256]`);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-wide-'));
  const r = spawnSync(process.execPath, [bin, 'run', 'train', tempModel(wide), '--out', out], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(
    r.stderr,
    /error: the model's parameters take [\d.]+ MiB \(\d+ floats\), more than this device binds as one storage buffer \([\d.]+ MiB\); make the model smaller \(fewer or smaller parameters\), or use a device with a larger maxStorageBufferBindingSize/,
  );
  assert.doesNotMatch(r.stderr, /compiler bug/);
  noStack(r.stderr);
});
