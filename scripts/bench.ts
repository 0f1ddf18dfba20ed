// `npm run bench`: training speed of the Matrix Thinker compiled by mtc, with kernel fusion on
// and off, beside the same model in PyTorch (bench/torch_matrix_thinker.py), all measured in
// one run. For each configuration it prints training tokens/s, kernels dispatched per step,
// the device memory the program allocates, and achieved GFLOP/s against the FLOP count of the
// model's IR (compiler/flops.ts); then the ratio mtc / PyTorch in tokens/s.
//
//   npm run bench                                  # tiny and reduced full, table + JSON
//   npm run bench -- --json                        # one JSON object only
//   npm run bench -- --configs tiny --steps 20 --rounds 1 --skip-torch
//   npm run bench -- --skip-profile                # no per-kernel device times
//
// Protocol, the same for both implementations: random byte windows (the speed does not depend
// on the data; nothing to download), a constant learning rate (the preset's peak), dropout on,
// AdamW + global-norm clipping as in the train section; `warmup` untimed steps, then `rounds`
// rounds of wall-clock time over `steps` steps, from a synchronised device to a synchronised
// device (mtc: losses are read back once per round, as in training), tokens = batch · ctx per
// step. The figures are those of the fastest round: on a shared machine, other work only ever
// slows a round down (every round's time is in the JSON).
//
// Where the time goes: where the device has timestamp queries, PROFILE_STEPS more steps run
// with every dispatch in a pass of its own between two timestamps (Session.profileStep); each
// dispatch's fastest time is summed by kernel family (fused regions, attention parts,
// contractions, tiled matmuls, ...) and printed beside the step.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { buildGraph, compile, type CompileOptions, type Compiled } from '../compiler/pipeline.ts';
import { countFlops, type FlopCount } from '../compiler/flops.ts';
import { dropoutKeyRecords } from '../compiler/hostgen.ts';
import { STEP_UNIFORM_BYTES } from '../compiler/kernel.ts';
import { ACCUM_UNIFORM_BYTES, OPT_UNIFORM_BYTES, partialCount } from '../compiler/wgsl/optimizer.ts';
import { acquireDevice, type Gpu } from '../runtime/device.ts';
import { WindowSampler, type Batch } from '../runtime/data.ts';
import { Session, writeModule } from '../runtime/session.ts';
import { byFamily, type Profile } from '../runtime/profile.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = path.join(root, 'models', 'matrix_thinker.mt');
const TORCH_SCRIPT = path.join(root, 'bench', 'torch_matrix_thinker.py');
/** Session's loss log and its readback buffer (runtime/session.ts, LOG_SLOTS floats per micro-batch of a step each). */
const sessionLogBytes = (c: Compiled): number => 2 * 1024 * 4 * (c.train.batch / c.train.microBatch);

interface BenchConfig {
  preset: string;
  sets: Record<string, string>;
  steps: number;
  warmup: number;
  rounds: number;
  note: string;
}
const CONFIGS: Record<string, BenchConfig> = {
  tiny: { preset: 'tiny', sets: {}, steps: 5, warmup: 2, rounds: 5, note: 'the model file defaults' },
  // The study's model (d 32, 8 heads, 8 blocks, T 8, K 32, 2048 position rows) on one short
  // sequence: about 6 s a step on two CPU cores under software Vulkan (the first run on a machine
  // takes a minute or two more: Mesa compiles the pipelines and caches them on disk).
  full: { preset: 'full', sets: { batch: '1', ctx: '32' }, steps: 2, warmup: 1, rounds: 3, note: 'the study model, one sequence of 32 bytes' },
};

export interface Result {
  config: string;
  impl: 'mtc' | 'pytorch';
  /** kernel fusion of the mtc compiler; null for PyTorch (eager mode) */
  fused: boolean | null;
  tokens_per_s: number;
  /** seconds per step of the fastest round */
  step_s: number;
  /** seconds per step of every round */
  round_step_s: number[];
  /**
   * CPU seconds per step of the round with the least (every thread of the process: under
   * lavapipe the kernels run in it; PyTorch on the CPU likewise). Steadier than wall time on a
   * shared machine, where other tenants take cores; null where not measured. On a GPU it is
   * host time only, and not comparable across implementations (PyTorch busy-waits on CUDA).
   */
  cpu_step_s: number | null;
  kernels_per_step: number | null;
  /** mtc: every device buffer the program allocates; PyTorch: see peak_kind */
  peak_bytes: number | null;
  peak_kind: string;
  gflops: number;
  /** this entry's tokens/s over PyTorch's for the same config (mtc entries) */
  vs_pytorch?: number | null;
  flops_per_step: number;
  tokens_per_step: number;
  steps: number;
  rounds: number;
  warmup_steps: number;
  device: string;
  loss_first: number;
  loss_last: number;
  /** mtc: seconds to compile, to load onto the device, and of the untimed steps */
  compile_s?: number;
  load_s?: number;
  warmup_s?: number;
  [more: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Device memory, from the plan

/**
 * Bytes of every device buffer a compiled program allocates (program.ts of compiler/hostgen.ts
 * plus the Session's loss log): the four arenas (params, grads, Adam m and v), the activation
 * buffers of the plan (already shared between values whose lifetimes do not overlap), tokens
 * and targets, and the small uniforms. All are created up front and live for the whole run,
 * so their total is the program's peak: an allocated total, not a measured high-water mark.
 */
export function allocatedBytes(c: Compiled): { total: number; arenas: number; activations: number; io: number; small: number } {
  const buf = (bytes: number): number => Math.max(16, bytes); // hostgen's minimum buffer size
  // params, grads, Adam m and v; and with gradient accumulation the running sum (acc)
  const accumulates = c.train.microBatch < c.train.batch;
  const arenas = (accumulates ? 5 : 4) * buf(c.plan.arenaFloats * 4);
  const activations = c.plan.buffers.reduce((a, b) => a + buf(b.bytes), 0);
  const io = 2 * buf(c.train.microBatch * c.train.ctx * 4);
  const keys = buf(dropoutKeyRecords(c.plan).bytes);
  const small = buf(STEP_UNIFORM_BYTES) + buf(OPT_UNIFORM_BYTES) + keys + buf(partialCount(c.plan.arenaFloats) * 4) + buf(16) + (accumulates ? buf(ACCUM_UNIFORM_BYTES) : 0) + sessionLogBytes(c);
  return { total: arenas + activations + io + small, arenas, activations, io, small };
}

/** The GPUBuffers a loaded program holds (fields and arrays of its instance). */
function programBuffers(s: Session): GPUBuffer[] {
  return Object.values(s.prog as object)
    .flat()
    .filter((b: unknown): b is GPUBuffer => b instanceof GPUBuffer);
}

// ---------------------------------------------------------------------------------------------
// mtc

function randomBytes(n: number, seed: number): Uint8Array {
  let x = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

/** Profiled steps per mtc measurement (each dispatch's fastest counts). */
const PROFILE_STEPS = 2;

async function benchMtc(gpu: Gpu, name: string, cfg: BenchConfig, fused: boolean, sets: Record<string, string>, log: (s: string) => void, profile: boolean) {
  const t0 = performance.now();
  // `fuse` is the compiler's switch for kernel fusion (default on).
  // the device's limits, as `mtc run train` compiles: its largest binding and its storage buffers per kernel
  const opts = { preset: cfg.preset, sets, fuse: fused, maxBindingBytes: gpu.device.limits.maxStorageBufferBindingSize, maxStorageBuffers: gpu.device.limits.maxStorageBuffersPerShaderStage } as CompileOptions;
  const compiled = compile(MODEL, opts);
  // the model's FLOPs, from its primitives: the same work for every row (the attention pass
  // skips the masked half of the scores and recomputes them backward; those are the kernels' choices)
  const perMicro = countFlops(fused ? buildGraph(MODEL, { ...opts, fuse: false }).graph : compiled.graph);
  // the graph runs one micro-batch: a step is batch / micro_batch of them and one optimizer update
  const n = compiled.train.batch / compiled.train.microBatch;
  const flops: FlopCount = {
    ...perMicro,
    forward: n * perMicro.forward,
    backward: n * perMicro.backward,
    total: n * (perMicro.forward + perMicro.backward) + perMicro.optimizer,
    byKind: Object.fromEntries(Object.entries(perMicro.byKind).map(([k, v]) => [k, n * v])),
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `mtc-bench-${name}-`));
  try {
    writeModule(compiled, dir);
    const compileS = (performance.now() - t0) / 1000;
    const session = await Session.open(dir, gpu);
    const loadS = (performance.now() - t0) / 1000 - compileS;
    const tr = compiled.train;
    const seed = tr.seed;
    session.initialise(seed);
    const disp = session.mod.layout.dispatches;
    // with accumulation, each micro-batch runs forward, backward and the accumulate kernel
    const kernels = n * (disp.forward + disp.backward + (n > 1 ? 1 : 0)) + disp.optimizer;
    const mem = allocatedBytes(compiled);
    const held = programBuffers(session).reduce((a, b) => a + b.size, 0) + sessionLogBytes(compiled);
    const warnings: string[] = [];
    if (held !== mem.total) warnings.push(`${name}, fusion ${fused ? 'on' : 'off'}: the program holds ${held} bytes of device buffers, the plan says ${mem.total}`);
    const total = cfg.warmup + cfg.rounds * cfg.steps + (profile ? PROFILE_STEPS : 0);
    // a step's micro-batches (one unless micro_batch < batch: gradients accumulate over them)
    const sampler = new WindowSampler(randomBytes(Math.max(total * tr.batch, 64) * (tr.ctx + 1), 12345), tr.ctx, tr.microBatch, seed, 'random bytes');
    const batches: Batch[][] = Array.from({ length: total }, (_, i) => Array.from({ length: n }, (_, k) => sampler.batchAt(i * n + k)));
    const lr = tr.lr;
    const tw = performance.now();
    for (let i = 0; i < cfg.warmup; i++) session.trainStep(batches[i], i, lr, seed);
    const warm = await session.readLosses();
    const t1 = performance.now();
    const warmupS = (t1 - tw) / 1000;
    const timed: number[] = [];
    const roundS: number[] = [];
    const cpuS: number[] = [];
    for (let r = 0, i = cfg.warmup; r < cfg.rounds; r++) {
      const tr0 = performance.now();
      const c0 = process.cpuUsage();
      for (let k = 0; k < cfg.steps; k++, i++) session.trainStep(batches[i], i, lr, seed);
      timed.push(...(await session.readLosses()));
      const c = process.cpuUsage(c0);
      roundS.push((performance.now() - tr0) / 1000 / cfg.steps);
      cpuS.push((c.user + c.system) / 1e6 / cfg.steps);
    }
    const stepS = Math.min(...roundS);
    let prof: Profile | undefined;
    if (profile && n > 1) warnings.push(`${name}: not profiled: profiling times one device step, and this configuration accumulates ${n} micro-batches a step`);
    if (profile && n === 1) {
      const best: Array<{ kernel: string; ms: number }> = [];
      for (let k = 0, i = cfg.warmup + cfg.rounds * cfg.steps; k < PROFILE_STEPS; k++, i++) {
        (await session.profileStep(batches[i][0], i, lr, seed)).forEach((d, j) => (best[j] = !best[j] || d.ms < best[j].ms ? d : best[j]));
      }
      const profiled = await session.readLosses(); // two steps more: not in the losses reported
      if (!profiled.every(Number.isFinite)) warnings.push(`${name}, fusion ${fused ? 'on' : 'off'}: a non-finite loss in a profiled step (${profiled.join(', ')})`);
      prof = byFamily(best);
    }
    for (const b of programBuffers(session)) b.destroy();
    const losses = [...warm, ...timed];
    if (!losses.every(Number.isFinite)) warnings.push(`${name}, fusion ${fused ? 'on' : 'off'}: a non-finite training loss (${losses.join(', ')})`);
    for (const w of warnings) log(`bench: warning: ${w}`);
    const tokens = tr.batch * tr.ctx;
    const result: Result = {
      config: name,
      impl: 'mtc',
      fused,
      tokens_per_s: tokens / stepS,
      step_s: stepS,
      round_step_s: roundS,
      cpu_step_s: Math.min(...cpuS),
      kernels_per_step: kernels,
      peak_bytes: mem.total,
      peak_kind: 'allocated total of the plan (activation buffers reused by liveness)',
      gflops: flops.total / stepS / 1e9,
      flops_per_step: flops.total,
      tokens_per_step: tokens,
      steps: cfg.steps,
      rounds: cfg.rounds,
      warmup_steps: cfg.warmup,
      device: gpu.description,
      loss_first: losses[0],
      loss_last: losses[losses.length - 1],
      dispatches: disp,
      memory: mem,
      flops: { forward: flops.forward, backward: flops.backward, optimizer: flops.optimizer },
      compile_s: compileS,
      load_s: loadS,
      warmup_s: warmupS,
      ...(prof ? { profile: prof } : {}),
    };
    return { result, compiled, flops, warnings };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// PyTorch

/** A python3 that imports torch, or why there is none. */
function findTorch(): { python: string; version: string } | { missing: string } {
  const tried: string[] = [];
  const candidates = [process.env.MTC_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p);
  for (const py of [...new Set(candidates)]) {
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python: py, version: r.stdout.trim() };
    tried.push(`${py}: ${r.error ? (r.error as NodeJS.ErrnoException).code : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`);
  }
  return {
    missing: `no python3 here imports torch (${tried.join('; ')}); install Debian's PyTorch with \`apt-get install -y --no-install-recommends python3-torch\`, or point MTC_PYTHON at a python that has it`,
  };
}

function torchArgs(c: Compiled, cfg: BenchConfig, threads: number): string[] {
  const h = c.hypers;
  const t = c.train;
  // The baseline script fixes AdamW's betas and eps to the study's; refuse to compare otherwise.
  if (t.betas[0] !== 0.9 || t.betas[1] !== 0.98 || t.eps !== 1e-8) throw new Error(`bench: the train section's AdamW (betas ${t.betas}, eps ${t.eps}) is not the baseline's (0.9, 0.98, 1e-8)`);
  const vocab = c.graph.nodes[c.graph.outputs.logits].shape[2];
  const a: Record<string, number> = {
    d: h.d, heads: h.heads, blocks: h.n_blocks, T: h.T, K: h.probes, ctx: t.ctx, 'pos-rows': h.pos_rows, vocab,
    batch: t.batch, dropout: h.dropout, lr: t.lr, wd: t.weightDecay, clip: t.clip, seed: t.seed,
    steps: cfg.steps, rounds: cfg.rounds, 'warmup-steps': cfg.warmup, threads,
  };
  return ['--bench', ...Object.entries(a).flatMap(([k, v]) => [`--${k}`, String(v)])];
}

function benchTorch(py: string, name: string, c: Compiled, flops: FlopCount, cfg: BenchConfig, log: (s: string) => void, notes: string[]): Result | { error: string } {
  const threads = os.availableParallelism();
  const args = [TORCH_SCRIPT, ...torchArgs(c, cfg, threads)];
  log(`bench: ${name}: pytorch: ${path.basename(py)} ${args.map((s) => path.relative(root, s) === 'bench/torch_matrix_thinker.py' ? 'bench/torch_matrix_thinker.py' : s).join(' ')}`);
  const r = spawnSync(py, args, { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' } });
  if (r.status !== 0) return { error: `the PyTorch baseline failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const o = JSON.parse(line) as Record<string, unknown> & { tokens_per_s: number; step_s: number; round_step_s: number[]; kernels_per_step: number | null; peak_bytes: number; peak_kind: string; device: string; loss_first: number; loss_last: number; params: number; torch: string };
  const params = flops.parameters;
  const warn = (w: string): void => {
    notes.push(w);
    log(`bench: warning: ${w}`);
  };
  if (o.params !== params) warn(`${name}: PyTorch's model has ${o.params} parameters, mtc's ${params}`);
  if (o.finite === false) warn(`${name}: PyTorch gave a non-finite training loss`);
  return {
    config: name,
    impl: 'pytorch',
    fused: null,
    tokens_per_s: o.tokens_per_s,
    step_s: o.step_s,
    round_step_s: o.round_step_s,
    cpu_step_s: typeof o.cpu_step_s === 'number' ? o.cpu_step_s : null,
    kernels_per_step: o.kernels_per_step,
    peak_bytes: o.peak_bytes,
    peak_kind: o.peak_kind,
    gflops: flops.total / o.step_s / 1e9,
    flops_per_step: flops.total,
    tokens_per_step: c.train.batch * c.train.ctx,
    steps: cfg.steps,
    rounds: cfg.rounds,
    warmup_steps: cfg.warmup,
    device: `${o.device}, torch ${o.torch}`,
    loss_first: o.loss_first,
    loss_last: o.loss_last,
    params: o.params,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (x: number | null | undefined, digits = 0): string => (x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
const mib = (b: number | null): string => (b === null ? '—' : fmt(b / 2 ** 20, 1));

function table(results: Result[]): string {
  const head = ['config', 'impl', 'fusion', 'tokens/s', 'ms/step', 'CPU ms/step', 'kernels/step', 'peak MiB', 'GFLOP/s', 'GFLOP/step', '× PyTorch'];
  const rows = results.map((r) => [
    r.config,
    r.impl,
    r.fused === null ? '—' : r.fused ? 'on' : 'off',
    fmt(r.tokens_per_s, r.tokens_per_s < 100 ? 2 : 0),
    fmt(r.step_s * 1000, 1),
    fmt(r.cpu_step_s === null ? null : r.cpu_step_s * 1000, 1),
    fmt(r.kernels_per_step),
    mib(r.peak_bytes) + (r.impl === 'pytorch' && !/cuda/.test(r.peak_kind) ? ' (RSS)' : ''),
    fmt(r.gflops, 2),
    fmt(r.flops_per_step / 1e9, 3),
    r.vs_pytorch === undefined || r.vs_pytorch === null ? '—' : fmt(r.vs_pytorch, 2),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i < 3 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ') + ' |';
  return [line(head), '|' + w.map((n, i) => (i < 3 ? '-'.repeat(n + 2) : '-'.repeat(n + 1) + ':')).join('|') + '|', ...rows.map(line)].join('\n');
}

/** Per mtc row, where a step's device time goes: the families that make up 95% of it. */
function profileTable(results: Result[]): string {
  const out: string[] = [];
  for (const r of results) {
    const p = r.profile as Profile | undefined;
    if (!p) continue;
    out.push(`${r.config}, fusion ${r.fused ? 'on' : 'off'}: ${fmt(p.device_ms, 1)} ms of device time in ${r.kernels_per_step} dispatches (each dispatch alone between timestamps; step ${fmt(r.step_s * 1000, 1)} ms)`);
    let acc = 0;
    for (const f of p.families) {
      if (acc >= 0.95 * p.device_ms) break;
      acc += f.ms;
      out.push(`  ${fmt(f.ms, 1).padStart(9)} ms ${fmt((100 * f.ms) / p.device_ms, 0).padStart(3)}%  ${String(f.dispatches).padStart(5)} × ${f.family}`);
    }
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      configs: { type: 'string', default: 'tiny,full' },
      steps: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      fusion: { type: 'string', default: 'on,off' },
      set: { type: 'string', multiple: true, default: [] },
      'skip-torch': { type: 'boolean', default: false },
      'skip-profile': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(`usage: npm run bench -- [options]
  --configs tiny,full   which configurations (${Object.entries(CONFIGS).map(([k, c]) => `${k}: --preset ${c.preset}${Object.entries(c.sets).map(([a, b]) => ` --set ${a}=${b}`).join('')}`).join('; ')})
  --steps N             timed steps per measurement (default: tiny ${CONFIGS.tiny.steps}, full ${CONFIGS.full.steps})
  --warmup N            untimed steps first (default: tiny ${CONFIGS.tiny.warmup}, full ${CONFIGS.full.warmup})
  --rounds N            timed rounds of --steps steps; the fastest counts (default: tiny ${CONFIGS.tiny.rounds}, full ${CONFIGS.full.rounds})
  --fusion on,off       mtc with kernel fusion on and/or off
  --set name=value      override a hyperparameter of every configuration (repeatable)
  --skip-torch          no PyTorch baseline
  --skip-profile        no per-kernel device times (timestamp queries)
  --json                print one JSON object only (else a table, then the JSON)`);
    return;
  }
  const names = values.configs.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) if (!Object.hasOwn(CONFIGS, n)) throw new Error(`bench: unknown config '${n}' (known: ${Object.keys(CONFIGS).join(', ')})`);
  const int = (v: string | undefined, what: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    const min = what === '--warmup' ? 0 : 1;
    if (!Number.isInteger(n) || n < min) throw new Error(`bench: ${what} wants a whole number ≥ ${min}, got '${v}'`);
    return n;
  };
  const steps = int(values.steps, '--steps');
  const warmup = int(values.warmup, '--warmup');
  const rounds = int(values.rounds, '--rounds');
  const fusion = values.fusion.split(',').map((s) => s.trim());
  for (const f of fusion) if (f !== 'on' && f !== 'off') throw new Error(`bench: --fusion takes on, off or on,off; got '${values.fusion}'`);
  const extra: Record<string, string> = {};
  for (const kv of values.set) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`bench: --set wants name=value, got '${kv}'`);
    extra[kv.slice(0, eq).trim()] = kv.slice(eq + 1).trim();
  }
  const log = (s: string): void => void process.stderr.write(s + '\n');

  const torch = values['skip-torch'] ? { missing: 'skipped (--skip-torch)' } : findTorch();
  if ('missing' in torch) log(`bench: PyTorch baseline: ${torch.missing}`);
  const gpu = await acquireDevice({ timestamps: !values['skip-profile'] });
  if (!values['skip-profile'] && !gpu.hasTimestamps) log(`bench: ${gpu.description} has no timestamp queries: no per-kernel profile`);
  const results: Result[] = [];
  const notes: string[] = [];
  const configs: Record<string, unknown> = {};
  try {
    for (const name of names) {
      const base = CONFIGS[name];
      const cfg: BenchConfig = { ...base, steps: steps ?? base.steps, warmup: warmup ?? base.warmup, rounds: rounds ?? base.rounds };
      const sets = { ...base.sets, ...extra };
      let last: { compiled: Compiled; flops: FlopCount } | undefined;
      const mine: Result[] = [];
      for (const f of fusion) {
        const fused = f === 'on';
        log(`bench: ${name} (--preset ${cfg.preset}${Object.entries(sets).map(([k, v]) => ` --set ${k}=${v}`).join('')}): mtc, fusion ${f}: ${cfg.warmup} + ${cfg.rounds} × ${cfg.steps} steps`);
        let m: Awaited<ReturnType<typeof benchMtc>>;
        try {
          m = await benchMtc(gpu, name, cfg, fused, sets, log, gpu.hasTimestamps);
        } catch (e) {
          // one failed measurement (e.g. a compiler error with fusion on) does not stop the others
          const msg = `${name}: mtc with fusion ${f} failed: ${e instanceof Error ? e.message : String(e)}`;
          notes.push(msg);
          log(`bench: ${msg}`);
          continue;
        }
        log(`bench:   ${fmt(m.result.tokens_per_s, 2)} tokens/s, ${fmt(m.result.step_s * 1000, 1)} ms/step, ${m.result.kernels_per_step} kernels/step (compiled in ${fmt(m.result.compile_s, 1)} s, loaded in ${fmt(m.result.load_s, 1)} s, warm-up ${fmt(m.result.warmup_s, 1)} s)`);
        mine.push(m.result);
        notes.push(...m.warnings);
        last = m;
      }
      if (mine.length === 2 && mine[0].kernels_per_step === mine[1].kernels_per_step) {
        notes.push(`${name}: fusion on and off dispatch the same ${mine[0].kernels_per_step} kernels per step (the compiler fused nothing, or does not take the fuse option yet)`);
      }
      results.push(...mine);
      if (!last) continue;
      const { compiled, flops } = last;
      configs[name] = { preset: cfg.preset, sets, note: cfg.note, hypers: compiled.hypers, batch: compiled.train.batch, ctx: compiled.train.ctx, params: flops.parameters, flops_per_step: { forward: flops.forward, backward: flops.backward, optimizer: flops.optimizer, total: flops.total }, flops_by_kind: flops.byKind };
      if ('python' in torch) {
        const t = benchTorch(torch.python, name, compiled, flops, cfg, log, notes);
        if ('error' in t) {
          notes.push(`${name}: ${t.error}`);
          log(`bench: ${t.error}`);
        } else {
          log(`bench:   ${fmt(t.tokens_per_s, 2)} tokens/s, ${fmt(t.step_s * 1000, 1)} ms/step`);
          for (const r of mine) r.vs_pytorch = r.tokens_per_s / t.tokens_per_s;
          results.push(t);
        }
      } else {
        for (const r of mine) r.vs_pytorch = null;
      }
    }
  } finally {
    gpu.close();
  }
  const report = {
    bench: 'mtc training throughput',
    model: path.relative(root, MODEL),
    date: new Date().toISOString(),
    host: { cpus: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, webgpu: gpu.description },
    pytorch: 'python' in torch ? { available: true, python: torch.python, version: torch.version } : { available: false, reason: torch.missing },
    protocol:
      'random byte windows, constant lr, dropout on, AdamW + clipping; warm-up steps untimed, then rounds of wall-clock time over the timed steps between synchronised devices, the fastest round counting; tokens = batch*ctx per step; ' +
      'GFLOP/s = FLOPs of one training step from the IR (compiler/flops.ts: forward + backward + optimizer) / seconds per step; ' +
      'mtc peak_bytes = every device buffer the program allocates (arenas, activation buffers reused by liveness, tokens/targets, uniforms); ' +
      'PyTorch peak_bytes = CUDA max_memory_allocated, or on the CPU the growth of the process peak RSS; ' +
      'mtc profile = after the timed rounds, steps with every dispatch in its own pass between timestamps, each dispatch at its fastest, summed by kernel family',
    configs,
    notes,
    results,
  };
  if (!values.json) {
    console.log(table(results));
    for (const n of notes) console.log(`note: ${n}`);
    const prof = profileTable(results);
    if (prof) console.log(`\nwhere the device time goes:\n${prof}`);
    console.log();
  }
  console.log(JSON.stringify(report, null, values.json ? undefined : 2));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench: error: ${e instanceof Error ? (process.env.MTC_DEBUG ? e.stack : e.message) : String(e)}\n`);
    process.exit(1);
  },
);
