// The TypeScript host code of a compiled model, written with ts-morph: a self-contained
// module (no imports, WebGPU globals only) that creates the buffers, pipelines and bind groups
// and records the setup, forward, backward and optimizer passes as plain dispatch calls.
// Everything that comes from .mt source reaches the file only through JSON.stringify or
// through sanitized line comments, so source names can never inject code.
import { Project, StructureKind, VariableDeclarationKind, type WriterFunction } from 'ts-morph';
import type { TrainConfig } from './config.ts';
import type { Graph, Node } from './ir.ts';
import type { Dispatch, Plan, Slot } from './plan.ts';
import { ACCUM_UNIFORM_BYTES, OPT_UNIFORM_BYTES, partialCount } from './wgsl/optimizer.ts';
import { keysUniformBytes, STEP_UNIFORM_BYTES, type Kernel } from './kernel.ts';

export interface HostMeta {
  model: string;
  sources: string[];
  preset: string | null;
  sets: Record<string, string>;
  hypers: Record<string, number>;
  train: TrainConfig;
  header: string;
}

/** Comment text: only characters that cannot end a comment or a line. */
export const safeComment = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?');

/** JSON as a TS object literal: a `__proto__` key is written computed so that it stays a key. */
const objectLiteral = (v: unknown): string => JSON.stringify(v, null, 2).replace(/^(\s*)"__proto__":/gm, '$1["__proto__"]:');

/** A dispatch's dropout keys sit at a multiple of this in the keys uniform (minUniformBufferOffsetAlignment). */
const KEY_RECORD_BYTES = 256;

/**
 * The contents of the program's `keys` uniform: the dropout keys of every dispatch that draws,
 * a record per distinct list of keys at a multiple of 256 bytes, written once when the program
 * is created. `offsets`: list (keys joined by commas) -> byte offset of its record.
 */
export function dropoutKeyRecords(plan: Plan): { offsets: Map<string, number>; bytes: number } {
  const offsets = new Map<string, number>();
  let bytes = 0;
  for (const d of [...plan.setup, ...plan.forward, ...plan.backward]) {
    if (!d.keys || offsets.has(d.keys.join(','))) continue;
    offsets.set(d.keys.join(','), bytes);
    bytes += Math.ceil(keysUniformBytes(d.keys.length) / KEY_RECORD_BYTES) * KEY_RECORD_BYTES;
  }
  return { offsets, bytes };
}

const slotExpr = (s: Slot): string => {
  const buf = s.buffer.startsWith('act') ? `this.act[${s.buffer.slice(3)}]` : `this.${s.buffer}`;
  return `[${buf}, ${s.offset}, ${s.bytes}]`;
};

export function emitHost(g: Graph, plan: Plan, meta: HostMeta, opt: { partial: Kernel; total: Kernel; adamw: Kernel; accumulate?: Kernel }): string {
  const project = new Project({ useInMemoryFileSystem: true });
  const sf = project.createSourceFile('program.ts', '', { overwrite: true });
  const parts = partialCount(plan.arenaFloats);
  const where = (d: Dispatch): string => {
    const n = g.nodes[d.node];
    const label = n.op.kind === 'param' ? g.params[n.op.index].path : n.name;
    const at = (x: Node): string => (x.loc ? ` ${x.loc.file.split(/[\\/]/).pop()}:${x.loc.line}` : '');
    if (d.last === undefined) return safeComment(`%${n.id} ${label}${at(n)}`);
    // the first and the last op, each with its own line (a region can span layers and files)
    const l = g.nodes[d.last];
    return safeComment(`fused %${n.id}..%${l.id} ${label}${at(n)} .. ${l.name}${at(l)}`);
  };

  sf.addStatements(meta.header);
  sf.addVariableStatement({
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    docs: ['What was compiled: the model, its resolved hyperparameters and train section.'],
    declarations: [{ name: 'model', initializer: objectLiteral({ name: meta.model, sources: meta.sources, preset: meta.preset, sets: meta.sets, hypers: meta.hypers, train: meta.train }) }],
  });
  sf.addVariableStatement({
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    docs: ['Parameters in the arena, in source order: dotted path, shape (row-major float32), offset in floats, initialiser.'],
    declarations: [
      {
        name: 'params',
        initializer: (w) => {
          w.write('[').newLine();
          plan.params.forEach((p, i) => w.writeLine(`  ${JSON.stringify({ path: p.path, shape: p.shape, offset: p.offset, init: g.params[i].init })},`));
          w.write(']');
        },
      },
    ],
  });
  sf.addVariableStatement({
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    docs: ['Sizes and kernel names the runtime needs.'],
    declarations: [
      {
        name: 'layout',
        initializer: JSON.stringify(
          {
            arenaFloats: plan.arenaFloats,
            partials: parts,
            tokens: [meta.train.microBatch, meta.train.ctx],
            accumulate: meta.train.batch / meta.train.microBatch,
            vocab: g.nodes[g.outputs.logits].shape.at(-1),
            kernels: [...plan.kernels.map((k) => k.name), opt.partial.name, opt.total.name, opt.adamw.name, ...(opt.accumulate ? [opt.accumulate.name] : [])].sort(),
            dispatches: { setup: plan.setup.length, forward: plan.forward.length, backward: plan.backward.length, optimizer: 3 },
          },
          null,
          2,
        ),
      },
    ],
  });

  const outSlot = (s: Slot) => slotExpr(s);
  const { offsets: keyRecords, bytes: keyBytes } = dropoutKeyRecords(plan);
  const groups: Array<{ kernel: string; bindings: string[]; note: string }> = [];
  // Bind groups are numbered in dispatch order (setup, forward, backward, optimizer); the
  // lines are built first because ts-morph writes the constructor before the methods.
  const record = (list: Dispatch[]): WriterFunction => {
    const lines = list.map((d) => {
      const idx = groups.length;
      const bindings = d.bindings.map(outSlot);
      if (d.usesStep) bindings.push(`[this.step, 0, ${STEP_UNIFORM_BYTES}]`);
      if (d.keys) bindings.push(`[this.keys, ${keyRecords.get(d.keys.join(','))}, ${keysUniformBytes(d.keys.length)}]`);
      groups.push({ kernel: d.kernel, bindings, note: where(d) });
      const [x, y, z] = d.workgroups;
      return `this.run(pass, ${JSON.stringify(d.kernel)}, ${idx}, ${x}, ${y}, ${z}); // ${where(d)}`;
    });
    return (w) => lines.forEach((l) => w.writeLine(l));
  };
  const setupW = record(plan.setup);
  const forwardW = record(plan.forward);
  const backwardW = record(plan.backward);
  const optStart = groups.length;
  groups.push({ kernel: opt.partial.name, bindings: ['[this.grads, 0, ARENA]', `[this.partials, 0, ${parts * 4}]`], note: 'gradient norm, partial sums' });
  groups.push({ kernel: opt.total.name, bindings: [`[this.partials, 0, ${parts * 4}]`, '[this.norm, 0, 16]'], note: 'gradient norm' });
  groups.push({
    kernel: opt.adamw.name,
    bindings: ['[this.params, 0, ARENA]', '[this.grads, 0, ARENA]', '[this.m, 0, ARENA]', '[this.v, 0, ARENA]', '[this.norm, 0, 16]', `[this.opt, 0, ${OPT_UNIFORM_BYTES}]`],
    note: 'AdamW update',
  });
  const acc = opt.accumulate;
  if (acc) groups.push({ kernel: acc.name, bindings: ['[this.grads, 0, ARENA]', '[this.acc, 0, ARENA]', `[this.accum, 0, ${ACCUM_UNIFORM_BYTES}]`], note: 'gradient accumulation' });

  sf.addStatements([`const ARENA = ${plan.arenaFloats * 4};`, `type Binding = [GPUBuffer, number, number];`]);
  sf.addClass({
    kind: StructureKind.Class,
    name: 'Program',
    isExported: true,
    docs: ['Device state of one compiled model and the passes that run it.'],
    properties: [
      { name: 'params', isReadonly: true, type: 'GPUBuffer' },
      { name: 'grads', isReadonly: true, type: 'GPUBuffer' },
      { name: 'm', isReadonly: true, type: 'GPUBuffer' },
      { name: 'v', isReadonly: true, type: 'GPUBuffer' },
      { name: 'tokens', isReadonly: true, type: 'GPUBuffer' },
      { name: 'targets', isReadonly: true, type: 'GPUBuffer' },
      { name: 'step', isReadonly: true, type: 'GPUBuffer', docs: ['StepParams uniform: seed, step, training'] },
      { name: 'opt', isReadonly: true, type: 'GPUBuffer', docs: ['OptParams uniform of the AdamW kernel'] },
      { name: 'keys', isReadonly: true, type: 'GPUBuffer', docs: ['the dropout keys of each dispatch that draws, a 256-byte record per distinct list'] },
      { name: 'partials', isReadonly: true, type: 'GPUBuffer' },
      { name: 'norm', isReadonly: true, type: 'GPUBuffer', docs: ['the global gradient norm of the last step'] },
      { name: 'act', isReadonly: true, type: 'GPUBuffer[]', docs: ['activation buffers, reused when lifetimes do not overlap'] },
      ...(acc
        ? [
            { name: 'acc', isReadonly: true, type: 'GPUBuffer', docs: ['the running sum of the micro-batch gradients of one optimizer step'] },
            { name: 'accum', isReadonly: true, type: 'GPUBuffer', docs: ['AccumParams uniform: first, last, 1 / micro-batches'] },
          ]
        : []),
      { name: 'pipelines', isReadonly: true, type: 'Record<string, GPUComputePipeline>', initializer: '{}' },
      { name: 'groups', isReadonly: true, type: 'GPUBindGroup[]', initializer: '[]' },
      { name: 'outputs', isReadonly: true, type: '{ loss: Binding; logits: Binding; observations: Record<string, Binding[]> }' },
    ],
    ctors: [
      {
        parameters: [
          { name: 'device', isReadonly: true, scope: undefined, type: 'GPUDevice' },
          { name: 'shaders', type: 'Record<string, GPUShaderModule>' },
        ],
        statements: (w) => {
          w.writeLine('const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;');
          w.writeLine('const U = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;');
          w.writeLine('const buf = (label: string, size: number, usage = S) => device.createBuffer({ label, size: Math.max(16, size), usage });');
          for (const b of ['params', 'grads', 'm', 'v']) w.writeLine(`this.${b} = buf(${JSON.stringify(b)}, ARENA);`);
          w.writeLine(`this.tokens = buf('tokens', ${meta.train.microBatch * meta.train.ctx * 4});`);
          w.writeLine(`this.targets = buf('targets', ${meta.train.microBatch * meta.train.ctx * 4});`);
          w.writeLine(`this.step = buf('step', ${STEP_UNIFORM_BYTES}, U);`);
          w.writeLine(`this.opt = buf('opt', ${OPT_UNIFORM_BYTES}, U);`);
          w.writeLine(`this.keys = buf('keys', ${keyBytes}, U);`);
          if (keyRecords.size) {
            w.writeLine('// the dropout keys of each list of sites, at its byte offset');
            w.writeLine(`const keyRecords: Array<[number, number[]]> = [${[...keyRecords].map(([list, at]) => `[${at}, [${list}]]`).join(', ')}];`);
            w.writeLine('for (const [offset, keys] of keyRecords) device.queue.writeBuffer(this.keys, offset, new Uint32Array(keys));');
          }
          w.writeLine(`this.partials = buf('partials', ${parts * 4});`);
          w.writeLine(`this.norm = buf('norm', 16);`);
          if (acc) {
            w.writeLine(`this.acc = buf('acc', ARENA);`);
            w.writeLine(`this.accum = buf('accum', ${ACCUM_UNIFORM_BYTES}, U);`);
          }
          w.writeLine('this.act = [');
          for (const b of plan.buffers) w.writeLine(`  buf(${JSON.stringify(b.name)}, ${b.bytes}),`);
          w.writeLine('];');
          w.writeLine('for (const name of layout.kernels) {');
          w.writeLine("  this.pipelines[name] = device.createComputePipeline({ label: name, layout: 'auto', compute: { module: shaders[name], entryPoint: 'main' } });");
          w.writeLine('}');
          w.writeLine('const group = (kernel: string, bindings: Binding[]) =>');
          w.writeLine('  this.groups.push(device.createBindGroup({ label: kernel, layout: this.pipelines[kernel].getBindGroupLayout(0),');
          w.writeLine('    entries: bindings.map(([buffer, offset, size], binding) => ({ binding, resource: { buffer, offset, size } })) }));');
          groups.forEach((gr, i) => {
            w.writeLine(`group(${JSON.stringify(gr.kernel)}, [${gr.bindings.join(', ')}]); // ${i}: ${gr.note}`);
          });
          const obs = Object.entries(plan.observations)
            .map(([k, v]) => `[${JSON.stringify(k)}]: [${v.map(slotExpr).join(', ')}]`)
            .join(', ');
          w.writeLine(`this.outputs = { loss: ${slotExpr(plan.loss)}, logits: ${slotExpr(plan.logits)}, observations: { ${obs} } };`);
        },
      },
    ],
    methods: [
      {
        name: 'run',
        scope: undefined,
        parameters: [
          { name: 'pass', type: 'GPUComputePassEncoder' },
          { name: 'kernel', type: 'string' },
          { name: 'group', type: 'number' },
          { name: 'x', type: 'number' },
          { name: 'y', type: 'number' },
          { name: 'z', type: 'number' },
        ],
        statements: ['pass.setPipeline(this.pipelines[kernel]);', 'pass.setBindGroup(0, this.groups[group]);', 'pass.dispatchWorkgroups(x, y, z);'],
      },
      { name: 'setup', docs: ['Constants (identity matrices, fills): once, after creation.'], parameters: [{ name: 'pass', type: 'GPUComputePassEncoder' }], statements: setupW },
      { name: 'forward', docs: ['The forward pass up to the loss.'], parameters: [{ name: 'pass', type: 'GPUComputePassEncoder' }], statements: forwardW },
      { name: 'backward', docs: ['Gradients of the loss into the grads arena.'], parameters: [{ name: 'pass', type: 'GPUComputePassEncoder' }], statements: backwardW },
      {
        name: 'optimizer',
        docs: ['Global-norm clipping and AdamW over the whole arena.'],
        parameters: [{ name: 'pass', type: 'GPUComputePassEncoder' }],
        statements: (w) => {
          const [p, t, a] = [optStart, optStart + 1, optStart + 2];
          for (const [k, i] of [[opt.partial, p], [opt.total, t], [opt.adamw, a]] as const) {
            w.writeLine(`this.run(pass, ${JSON.stringify(k.name)}, ${i}, ${k.workgroups.join(', ')}); // ${safeComment(k.summary)}`);
          }
        },
      },
      ...(acc
        ? [
            {
              name: 'accumulate',
              docs: ['After a micro-batch\'s backward pass: adds its gradients to the running sum; after the last, leaves their mean in grads.'],
              parameters: [{ name: 'pass', type: 'GPUComputePassEncoder' }],
              statements: [`this.run(pass, ${JSON.stringify(acc.name)}, ${groups.length - 1}, ${acc.workgroups.join(', ')}); // ${safeComment(acc.summary)}`],
            },
          ]
        : []),
    ],
  });
  sf.formatText({ indentSize: 2, convertTabsToSpaces: true });
  return sf.getFullText();
}
