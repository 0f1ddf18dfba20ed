// Pieces shared by the WGSL emitters: names and literals, the binding block of the kernel ABI
// (compiler/kernel.ts), the dispatch grid (folded to stay within 65535 workgroups per
// dimension), index arithmetic for strided/broadcast views, and the PCG hash that must match
// compiler/rng.ts bit for bit.
import { numel, strides, type DType, type Graph, type Node, type Shape } from '../ir.ts';
import { dropoutKeysDecl, type Kernel } from '../kernel.ts';

/** WebGPU's limit on workgroups per dispatch dimension. */
export const MAX_GROUPS_PER_DIM = 65535;

// ---------------------------------------------------------------------------------------------
// Names and literals

/** `16x64x8x8`; a scalar is `s`. */
export const shapeName = (s: Shape): string => (s.length ? s.join('x') : 's');

/** A number as a name fragment: only [A-Za-z0-9], one spelling per value (0.125 -> 0p125, -1 -> m1). */
export function numName(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : 'minf';
  return String(x).replace(/-/g, 'm').replace('.', 'p').replace('+', '');
}

/** Axis numbers as a name fragment: `0213`, or `0x2x11` once some axis has two digits. */
export const digits = (axes: readonly number[]): string => axes.join(axes.some((a) => a > 9) ? 'x' : '');

/** The kernel name: parts joined by `_`, anything outside [A-Za-z0-9_] dropped. */
export const kernelName = (...parts: (string | number)[]): string =>
  parts
    .map(String)
    .join('_')
    .replace(/[^A-Za-z0-9_]/g, '');

/** An f32 literal for x, rounded to f32; infinities call pos_inf()/neg_inf() (see INF_HELPERS). */
export function f32Lit(x: number): string {
  const f = Math.fround(x);
  if (Number.isNaN(f)) return 'nan_f32()';
  if (!Number.isFinite(f)) return f > 0 ? 'pos_inf()' : 'neg_inf()';
  const s = String(Object.is(f, -0) ? 0 : f);
  return /[.e]/.test(s) ? `${s}f` : `${s}.0f`;
}

export const u32Lit = (x: number): string => `${x >>> 0}u`;

/** The smallest f32 >= x (so that `f32 v >= lo` decides like the double comparison). */
export function f32Up(x: number): number {
  const f = Math.fround(x);
  return f >= x ? f : nextF32(f, +1);
}
/** The largest f32 <= x. */
export function f32Down(x: number): number {
  const f = Math.fround(x);
  return f <= x ? f : nextF32(f, -1);
}
function nextF32(f: number, dir: 1 | -1): number {
  if (!Number.isFinite(f)) return f;
  const buf = new Float32Array([f]);
  const bits = new Int32Array(buf.buffer);
  if (f === 0) {
    buf[0] = dir * 1.401298464324817e-45;
    return buf[0];
  }
  bits[0] += (f > 0) === (dir > 0) ? 1 : -1;
  return buf[0];
}

/**
 * Infinities and NaN cannot be WGSL constants (Tint rejects them even through bitcast), so
 * they come from a bitcast of a variable.
 */
export const INF_HELPERS: Record<string, string> = {
  'pos_inf()': 'fn pos_inf() -> f32 {\n  var bits = 0x7f800000u;\n  return bitcast<f32>(bits);\n}',
  'neg_inf()': 'fn neg_inf() -> f32 {\n  var bits = 0xff800000u;\n  return bitcast<f32>(bits);\n}',
  'nan_f32()': 'fn nan_f32() -> f32 {\n  var bits = 0x7fc00000u;\n  return bitcast<f32>(bits);\n}',
};

/**
 * The PCG hash and the dropout draw in WGSL: twins of pcgHash and counterUniform in
 * compiler/rng.ts (u32 arithmetic wraps like the `>>> 0` there). counter_bits24 returns the
 * 24-bit integer whose value / 2^24 is counterUniform's result.
 */
export const PCG_WGSL = `// PCG-RXS-M-XS 32-bit hash (Jarzynski & Olano 2020); twin of pcgHash in compiler/rng.ts.
fn pcg_hash(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// counterUniform(seed, step, key, index) * 2^24 (compiler/rng.ts), an integer in [0, 2^24).
fn counter_bits24(seed: u32, step: u32, key: u32, index: u32) -> u32 {
  return pcg_hash(index + pcg_hash(key + pcg_hash(step + pcg_hash(seed)))) >> 8u;
}`;

// ---------------------------------------------------------------------------------------------
// Bindings (the kernel ABI)

export interface Binding {
  /** WGSL variable name. */
  name: string;
  dtype: DType;
  shape: Shape;
}

// `zero` is always 0: fused kernels add it to their loop bounds, so that the shader compiler
// cannot unroll them (lavapipe took 17x longer to compile a fused kernel with constant bounds).
export const STEP_STRUCT = 'struct StepParams {\n  seed: u32,\n  step: u32,\n  training: u32,\n  zero: u32,\n}';

/** Inputs at 0..n-1 (read), the output at n (read_write), StepParams at n+1 when usesStep, the dropout keys at n+2. */
function bindingBlock(ins: Binding[], out: Binding, usesStep: boolean, keys: number): string {
  const line = (i: number, access: string, b: Binding) =>
    `@group(0) @binding(${i}) var<storage, ${access}> ${b.name}: array<${b.dtype}>; // [${b.shape.join(', ')}]`;
  const lines = ins.map((b, i) => line(i, 'read', b));
  lines.push(line(ins.length, 'read_write', out));
  if (usesStep) lines.push('', STEP_STRUCT, `@group(0) @binding(${ins.length + 1}) var<uniform> step_params: StepParams;`);
  if (keys) lines.push(dropoutKeysDecl(ins.length + 2, keys));
  return lines.join('\n');
}

/** Bindings of a node's inputs named `names`, and its output `out`. */
export function nodeBindings(node: Node, graph: Graph, names: string[]): { ins: Binding[]; out: Binding } {
  return {
    ins: node.inputs.map((id, k) => ({ name: names[k], dtype: graph.nodes[id].dtype, shape: graph.nodes[id].shape })),
    out: { name: 'out', dtype: node.dtype, shape: node.shape },
  };
}

/** Name fragments of a node's input shapes (`16x64x8x8`, `16x64i` for i32). */
export const inShapes = (node: Node, graph: Graph): string[] =>
  node.inputs.map((id) => shapeName(graph.nodes[id].shape) + ({ f32: '', i32: 'i', f16: 'h' } as const)[graph.nodes[id].dtype]);

/** A load of `name[index]` converted to f32 when the binding holds i32. */
export const loadF32 = (b: Binding, index: string): string => (b.dtype === 'i32' ? `f32(${b.name}[${index}])` : `${b.name}[${index}]`); // f16: f16Storage converts

// ---------------------------------------------------------------------------------------------
// Dispatch grid

export interface Grid {
  workgroups: [number, number, number];
  /** WGSL statement defining `group`, the flat workgroup index. */
  groupLine: string;
}

/** `groups` workgroups, folded into (x, y) with x, y <= 65535 and x * y - groups minimal. */
export function grid(groups: number): Grid {
  const g = Math.max(1, groups);
  const y = Math.ceil(g / MAX_GROUPS_PER_DIM);
  const x = Math.ceil(g / y);
  if (y > MAX_GROUPS_PER_DIM) throw new Error(`internal: ${groups} workgroups do not fit one dispatch`);
  return {
    workgroups: [x, y, 1],
    groupLine: y === 1 ? 'let group = wid.x;' : `let group = wid.y * ${x}u + wid.x; // the grid is folded into ${x} x ${y}`,
  };
}

// ---------------------------------------------------------------------------------------------
// Assembling a kernel

export interface KernelSpec {
  name: string;
  summary: string;
  /** More comment lines for the header (the variant chosen, tile sizes). */
  notes?: string[];
  ins: Binding[];
  out: Binding;
  usesStep?: boolean;
  /** dropout keys bound at run time (kernel.ts); needs usesStep */
  keys?: number[];
  /** Module-scope declarations (constants, workgroup arrays, helper functions). */
  decls?: string[];
  workgroupSize: number;
  grid: Grid;
  /** Lines of the entry point's body, indented relative to it by two spaces per level. */
  body: string[];
}

/**
 * f16 storage (compiler/precision.ts): the bindings of `names` hold f16. Their declarations
 * already say array<f16> (from the node's dtype); this turns every store `x[i] = v;` into
 * `x[i] = f16(v);` and every read into `f32(x[i])`, so that kernels compute in f32 unchanged,
 * and enables the extension. Kernels index their bindings with bracket-free expressions, so a
 * binding's accesses are exactly the matches of `name[...]`.
 */
export function f16Storage(code: string, names: string[]): string {
  if (!names.length) return code;
  const rules = names.flatMap((n) => {
    const at = `\\b${n}\\[([^\\[\\]]*)\\]`;
    return [
      [new RegExp(`${at} = ([^;]*);`, 'g'), `${n}[$1] = f16($2);`],
      [new RegExp(`${at}(?! = )`, 'g'), `f32(${n}[$1])`],
    ] as Array<[RegExp, string]>;
  });
  const lines = code.split('\n').map((line) => {
    const cut = line.indexOf('//');
    let head = cut < 0 ? line : line.slice(0, cut);
    for (const [re, to] of rules) head = head.replace(re, to);
    return cut < 0 ? head : head + line.slice(cut);
  });
  const first = lines.findIndex((l) => l && !l.startsWith('//'));
  lines.splice(first, 0, 'enable f16;', '');
  return lines.join('\n');
}

export function assemble(k: KernelSpec): Kernel {
  // with f16 storage one op on the same shapes can read or write either dtype: the name says which
  const halves = [...k.ins, k.out].filter((b) => b.dtype === 'f16').map((b) => b.name);
  const name = halves.length ? `${k.name}_${[...k.ins, k.out].map((b) => ({ f32: 'f', f16: 'h', i32: 'i' })[b.dtype]).join('')}` : k.name;
  const usesStep = k.usesStep ?? false;
  const [x, y] = k.grid.workgroups;
  const header = [
    `// mtc kernel ${name}`,
    `// ${k.summary}`,
    ...(k.notes ?? []).map((n) => `// ${n}`),
    `// dispatch: ${x}${y > 1 ? ` x ${y}` : ''} workgroup${x * y > 1 ? 's' : ''} of ${k.workgroupSize} threads`,
  ];
  const main = [
    `@compute @workgroup_size(${k.workgroupSize})`,
    'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {',
    ...k.body.map((l) => (l ? `  ${l}` : '')),
    '}',
  ].join('\n');
  if (k.keys?.length && !usesStep) throw new Error(`internal: kernel ${k.name} binds dropout keys without the step uniform`);
  const sections = [header.join('\n'), bindingBlock(k.ins, k.out, usesStep, k.keys?.length ?? 0)];
  if (usesStep) sections.push(PCG_WGSL);
  if (k.decls?.length) sections.push(k.decls.join('\n'));
  const used = sections.join('\n') + main;
  for (const [call, def] of Object.entries(INF_HELPERS)) if (used.includes(call)) sections.push(def);
  sections.push(main);
  return { name, code: f16Storage(sections.join('\n\n') + '\n', halves), usesStep, workgroups: k.grid.workgroups, summary: k.summary, ...(k.keys?.length ? { keys: k.keys } : {}) };
}

// ---------------------------------------------------------------------------------------------
// Strided views: offsets of each operand from the flat index of the output

/**
 * The output's axes and, per operand, a stride per axis (0 where the operand is broadcast),
 * simplified: size-1 axes dropped, neighbouring axes merged where every operand allows it.
 */
export interface View {
  dims: number[];
  strides: number[][];
}

export function simplifyView(dims: Shape, operandStrides: number[][]): View {
  const out: View = { dims: [], strides: operandStrides.map(() => []) };
  for (let ax = 0; ax < dims.length; ax++) {
    if (dims[ax] === 1) continue;
    const last = out.dims.length - 1;
    const merges = last >= 0 && operandStrides.every((s, o) => out.strides[o][last] === s[ax] * dims[ax]);
    if (merges) {
      out.dims[last] *= dims[ax];
      operandStrides.forEach((s, o) => (out.strides[o][last] = s[ax]));
    } else {
      out.dims.push(dims[ax]);
      operandStrides.forEach((s, o) => out.strides[o].push(s[ax]));
    }
  }
  return out;
}

/** Strides of `shape` broadcast to `to` (aligned right, 0 on stretched axes). */
export function broadcastStrides(shape: Shape, to: Shape): number[] {
  const s = strides(shape);
  return to.map((_, i) => {
    const j = i - (to.length - shape.length);
    return j < 0 || shape[j] === 1 ? 0 : s[j];
  });
}

/**
 * WGSL lines computing, from the flat output index `flat`, one offset per operand named in
 * `names` (`let <name> = ...;`), plus a constant base per operand. Coordinates are computed
 * only when some operand is not a plain copy of the flat index.
 */
export function offsetLines(view: View, flat: string, names: string[], bases: number[] = [], coord = 'c'): string[] {
  const rowMajor = strides(view.dims);
  const lines: string[] = [];
  const plain = (o: number) => view.strides[o].every((s, ax) => s === rowMajor[ax]);
  // the coordinates some operand needs (a nonzero stride in a non-plain view)
  const used = (ax: number) => names.some((_, o) => !plain(o) && view.strides[o][ax] !== 0);
  if (view.dims.length > 1) {
    view.dims.forEach((d, ax) => {
      if (!used(ax)) return;
      const div = rowMajor[ax] === 1 ? flat : `(${flat} / ${u32Lit(rowMajor[ax])})`;
      lines.push(`let ${coord}${ax} = ${ax === 0 ? div : `${div} % ${u32Lit(d)}`};`);
    });
  }
  names.forEach((name, o) => {
    const base = bases[o] ?? 0;
    let terms: string[];
    if (view.dims.length === 0) terms = [];
    else if (plain(o)) terms = [flat];
    else
      terms = view.strides[o].flatMap((s, ax) => {
        const c = view.dims.length > 1 ? `${coord}${ax}` : flat;
        return s === 0 ? [] : [s === 1 ? c : `${c} * ${u32Lit(s)}`];
      });
    if (base) terms.push(u32Lit(base));
    lines.push(`let ${name} = ${terms.length ? terms.join(' + ') : '0u'};`);
  });
  return lines;
}

/**
 * The tree in workgroup memory that adds the register tiles of `wg` threads: each thread's
 * accumulators acc_r_q go to partial[cell * wg + lid], then halves are added until
 * partial[cell * wg] holds the sum of cell (r * tn + q). Needs `var<workgroup> partial`.
 */
export function tileTreeLines(tm: number, tn: number, wg: number): string[] {
  const cells = tm * tn;
  const lines: string[] = [];
  for (let r = 0; r < tm; r++) for (let q = 0; q < tn; q++) lines.push(`partial[${u32Lit((r * tn + q) * wg)} + lid] = acc_${r}_${q};`);
  return [
    ...lines,
    'workgroupBarrier();',
    `for (var width = ${u32Lit(wg / 2)}; width > 0u; width >>= 1u) {`,
    '  if (lid < width) {',
    `    for (var cell = 0u; cell < ${u32Lit(cells)}; cell++) {`,
    `      let at = cell * ${u32Lit(wg)} + lid;`,
    '      partial[at] += partial[at + width];',
    '    }',
    '  }',
    '  workgroupBarrier();',
    '}',
  ];
}

/** numel with the guard that WGSL u32 indexing can address it. */
export function count(shape: Shape): number {
  const n = numel(shape);
  if (n >= 2 ** 32) throw new Error(`internal: tensor of shape [${shape.join(', ')}] is too large for u32 indexing`);
  return n;
}
