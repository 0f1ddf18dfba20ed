// The compiler, top to bottom. Each pass has a name; `mtc compile --dump-after=<name>` prints
// the program as that pass leaves it.
//   load      .mt file and its imports -> declarations            (compiler/program.ts)
//   config    hyperparameters, preset, --set; the train section    (compiler/config.ts)
//   lower     model -> tensor graph with static shapes             (compiler/lower.ts)
//   attention causal attention as one op, scores never stored      (compiler/attention.ts)
//   autodiff  reverse-mode gradients, one VJP rule per op          (compiler/autodiff.ts)
//             and, with `checkpoint = 1`, recomputation per block  (compiler/checkpoint.ts)
//             and, with `f16 = 1`, f16 storage of activations        (compiler/precision.ts)
//   fuse      per-token stretches into one kernel each             (compiler/fuse.ts)
//   plan      kernels, dispatch order, buffers                     (compiler/plan.ts)
//   emit      WGSL files and TypeScript host code                  (compiler/hostgen.ts)
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fuseAttention } from './attention.ts';
import { differentiate } from './autodiff.ts';
import { resolveHypers, resolveTrain, type TrainConfig } from './config.ts';
import { emitHost, safeComment } from './hostgen.ts';
import type { Graph } from './ir.ts';
import { lowerModel } from './lower.ts';
import { planProgram, type Plan } from './plan.ts';
import { describeGroups } from './fuse.ts';
import { checkpointCalls } from './checkpoint.ts';
import { storeActivationsF16 } from './precision.ts';
import { printGraph } from './printer.ts';
import { loadProgram, type Unit } from './program.ts';
import { accumulateKernel, optimizerKernels } from './wgsl/optimizer.ts';
import { makeDirs } from './files.ts';

export const MTC_VERSION = '0.1.0';
export const PASSES = ['load', 'config', 'lower', 'attention', 'autodiff', 'fuse', 'plan', 'emit'] as const;
export type PassName = (typeof PASSES)[number];

export interface CompileOptions {
  preset?: string;
  sets?: Record<string, string>;
  /** Print the program after this pass (to `dump`). */
  dumpAfter?: PassName;
  dump?: (text: string) => void;
  maxBindingBytes?: number;
  /** Fuse per-token stretches of the graph into regions (default true); false: one kernel per node. */
  fuse?: boolean;
  /** Storage buffers a fused kernel may bind: the device's maxStorageBuffersPerShaderStage (default 8, WebGPU's default limit). */
  maxStorageBuffers?: number;
  /** f16 storage of the forward activations, overriding the train section's `f16` setting. */
  f16?: boolean;
  /** Sequences per program run, replacing the train section's batch (evaluation programs). */
  batch?: number;
}

export interface Compiled {
  modelName: string;
  graph: Graph;
  plan: Plan;
  train: TrainConfig;
  hypers: Record<string, number>;
  /** relative path -> contents, the files of generated/<model>/ */
  files: Map<string, string>;
}

const posix = (p: string): string => p.split(path.sep).join('/');

export interface Built {
  unit: Unit;
  hypers: Map<string, number>;
  train: TrainConfig;
  /** forward and backward, with graph.grads set */
  graph: Graph;
}

/** The passes up to and including autodiff. */
export function buildGraph(file: string, opts: CompileOptions = {}): Built {
  const dump = (pass: PassName, text: () => string): void => {
    if (opts.dumpAfter === pass) (opts.dump ?? console.log)(text());
  };
  const unit = loadProgram(file);
  dump('load', () => unit.files.map((f) => `loaded ${f}`).join('\n'));

  const hypers = resolveHypers(unit, opts.preset, opts.sets ?? {});
  const train = resolveTrain(unit, hypers);
  if (opts.batch !== undefined) train.batch = train.microBatch = opts.batch;
  if (opts.f16 !== undefined) train.f16 = opts.f16;
  dump('config', () => JSON.stringify({ hypers: Object.fromEntries(hypers), train }, null, 2));

  const b = lowerModel(unit, hypers, train);
  dump('lower', () => printGraph(b.graph));

  if (opts.fuse !== false) fuseAttention(b.graph);
  dump('attention', () => printGraph(b.graph));

  differentiate(b, b.graph.outputs.loss);
  if (train.checkpoint) checkpointCalls(b.graph, b.graph.arrayItems ?? []);
  if (train.f16) storeActivationsF16(b.graph);
  dump('autodiff', () => printGraph(b.graph));
  return { unit, hypers, train, graph: b.graph };
}

/** The nearest folder above `file` with a package.json or .git; else the file's own folder. */
function projectRoot(file: string): string {
  const own = path.dirname(path.resolve(file));
  for (let at = own; ; at = path.dirname(at)) {
    if (fs.existsSync(path.join(at, 'package.json')) || fs.existsSync(path.join(at, '.git'))) return at;
    if (path.dirname(at) === at) return own;
  }
}

export function compile(file: string, opts: CompileOptions = {}): Compiled {
  const { unit, hypers, train, graph } = buildGraph(file, opts);
  const plan = planProgram(graph, { maxBindingBytes: opts.maxBindingBytes, fuse: opts.fuse === false ? false : { maxStorageBuffers: opts.maxStorageBuffers } });
  if (opts.dumpAfter === 'fuse') (opts.dump ?? console.log)(describeGroups(graph, plan.groups));
  if (opts.dumpAfter === 'plan') (opts.dump ?? console.log)(describePlan(graph, plan));

  // named from the project that holds the model (not the folder mtc ran in): the same bytes from anywhere
  const root = projectRoot(unit.files[0]);
  const sources = unit.files.map((f) => posix(path.relative(root, path.resolve(f))));
  const hash = createHash('sha256');
  for (const f of unit.files) hash.update(fs.readFileSync(f));
  const provenance = [
    `Generated by mtc ${MTC_VERSION} from ${sources.join(', ')}`,
    `preset: ${opts.preset ?? '(defaults)'}${Object.keys(opts.sets ?? {}).length ? `, --set ${Object.entries(opts.sets ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}`,
    `source sha256: ${hash.digest('hex').slice(0, 16)}`,
    'Do not edit: change the .mt source or the compiler and run `mtc compile`.',
  ].map(safeComment);
  const opt = { ...optimizerKernels(plan.arenaFloats), accumulate: train.microBatch < train.batch ? accumulateKernel(plan.arenaFloats) : undefined };
  const files = new Map<string, string>();
  const header = provenance.map((l) => `// ${l}`).join('\n');
  files.set(
    'program.ts',
    emitHost(
      graph,
      plan,
      {
        model: unit.model?.name ?? 'model',
        sources,
        preset: opts.preset ?? null,
        sets: opts.sets ?? {},
        hypers: Object.fromEntries(hypers),
        train,
        header,
      },
      opt,
    ),
  );
  files.set('graph.ir', provenance.map((l) => `# ${l}`).join('\n') + '\n' + printGraph(graph));
  for (const k of [...plan.kernels, opt.partial, opt.total, opt.adamw, ...(opt.accumulate ? [opt.accumulate] : [])]) {
    // A kernel depends on its op and shapes only, so its header names no source hash:
    // editing a model changes only the kernels whose code changes.
    const kernelHeader = `// Generated by mtc ${MTC_VERSION} (a kernel of ${safeComment(sources[0])}). Do not edit.`;
    files.set(`kernels/${k.name}.wgsl`, `${kernelHeader}\n${k.code.endsWith('\n') ? k.code : k.code + '\n'}`);
  }
  if (opts.dumpAfter === 'emit') (opts.dump ?? console.log)([...files.keys()].join('\n'));
  return { modelName: unit.model?.name ?? 'model', graph, plan, train, hypers: Object.fromEntries(hypers), files };
}

function describePlan(g: Graph, plan: Plan): string {
  const lines = [`arena: ${plan.arenaFloats} floats, ${plan.params.length} parameters`];
  lines.push(`buffers: ${plan.buffers.length} (${plan.buffers.reduce((a, b) => a + b.bytes, 0)} bytes)`);
  lines.push(`kernels: ${plan.kernels.length} distinct`);
  for (const [name, list] of [['setup', plan.setup], ['forward', plan.forward], ['backward', plan.backward]] as const) {
    lines.push(`${name}: ${list.length} dispatches`);
    for (const d of list) lines.push(`  ${d.kernel} <- %${d.node} ${g.nodes[d.node].name} [${d.bindings.map((s) => `${s.buffer}@${s.offset}`).join(', ')}]`);
  }
  return lines.join('\n');
}

/**
 * Writes the compiled files to a folder, removing kernels (`kernels/*.wgsl` files) that are no
 * longer produced; anything else there is left alone.
 */
export function writeCompiled(c: Compiled, outDir: string): void {
  makeDirs(path.join(outDir, 'kernels'));
  for (const f of fs.readdirSync(path.join(outDir, 'kernels'), { withFileTypes: true })) {
    if (f.isFile() && f.name.endsWith('.wgsl') && !c.files.has(`kernels/${f.name}`)) fs.rmSync(path.join(outDir, 'kernels', f.name));
  }
  for (const [rel, text] of c.files) fs.writeFileSync(path.join(outDir, rel), text);
}
