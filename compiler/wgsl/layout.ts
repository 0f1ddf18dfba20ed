// Data-movement kernels: permute, slice, pad, gather, scatter_add, onehot. Each thread owns
// output elements (scatter_add loops over the indices instead of using float atomics).
import { numel, strides, type Graph, type Node, type OpOf } from '../ir.ts';
import type { Kernel } from '../kernel.ts';
import { assemble, count, digits, grid, inShapes, kernelName, loadF32, nodeBindings, offsetLines, shapeName, simplifyView, u32Lit } from './common.ts';
import { mapKernel } from './elementwise.ts';

const chunks = <T>(xs: T[], n: number): T[][] => Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, (i + 1) * n));

/** Output elements per scatter_add thread (accumulators held in registers). */
const SCATTER_COLS = 64;
const SCATTER_WG = 64;

export const layoutEmitters = {
  // out[c] = a[c permuted]: a strided view of the input.
  permute: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'permute'>;
    const { ins, out } = nodeBindings(node, graph, ['a']);
    const inStrides = strides(ins[0].shape);
    const view = simplifyView(node.shape, [op.perm.map((p) => inStrides[p])]);
    return mapKernel({
      name: kernelName('permute', digits(op.perm), ...inShapes(node, graph)),
      summary: `out = a permuted by [${op.perm.join(', ')}] (out axis i is a's axis perm[i])`,
      ins,
      out,
      broadcast: false,
      body: [...offsetLines(view, 'i', ['a_at']), 'out[i] = a[a_at];'],
    });
  },

  // A strided view with a base offset.
  slice: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'slice'>;
    const { ins, out } = nodeBindings(node, graph, ['a']);
    const inStrides = strides(ins[0].shape);
    const view = simplifyView(node.shape, [inStrides]);
    return mapKernel({
      name: kernelName('slice', `ax${op.axis}`, `at${op.start}`, ...inShapes(node, graph), 'to', shapeName(node.shape)),
      summary: `out = a[${op.start} : ${op.start + node.shape[op.axis]}] along axis ${op.axis}`,
      ins,
      out,
      broadcast: false,
      body: [...offsetLines(view, 'i', ['a_at'], [op.start * inStrides[op.axis]]), 'out[i] = a[a_at];'],
    });
  },

  // out viewed as [outer, size, inner]; positions start .. start + a's size along axis read a.
  pad: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'pad'>;
    const { ins, out } = nodeBindings(node, graph, ['a']);
    const inner = numel(node.shape.slice(op.axis + 1));
    const size = node.shape[op.axis];
    const inSize = ins[0].shape[op.axis];
    return mapKernel({
      name: kernelName('pad', `ax${op.axis}`, `at${op.start}`, ...inShapes(node, graph), 'to', shapeName(node.shape)),
      summary: `out = zeros with a placed at ${op.start} along axis ${op.axis}`,
      ins,
      out,
      broadcast: false,
      body: [
        `let inner = i % ${u32Lit(inner)};`,
        `let pos = (i / ${u32Lit(inner)}) % ${u32Lit(size)};`,
        `let outer = i / ${u32Lit(inner * size)};`,
        `let inside = pos >= ${u32Lit(op.start)} && pos < ${u32Lit(op.start + inSize)};`,
        `let a_at = (outer * ${u32Lit(inSize)} + select(0u, pos - ${u32Lit(op.start)}, inside)) * ${u32Lit(inner)} + inner;`,
        `out[i] = select(0.0, ${loadF32(ins[0], 'a_at')}, inside);`,
      ],
    });
  },

  // out[r, j] = table[idx[r], j] (rows of `rest` elements); out-of-range rows give zeros.
  gather: (node: Node, graph: Graph): Kernel => {
    const { ins, out } = nodeBindings(node, graph, ['table', 'idx']);
    const rows = ins[0].shape[0];
    const rest = numel(ins[0].shape.slice(1));
    const load = loadF32(ins[0], 't_at');
    return mapKernel({
      name: kernelName('gather', ...inShapes(node, graph)),
      summary: `out[..., :] = table[idx[...], :]; indices outside [0, ${rows}) give zeros`,
      ins,
      out,
      broadcast: false,
      body: [
        `let v = idx[i / ${u32Lit(rest)}];`,
        `let inside = v >= 0i && v < ${rows}i;`,
        `let t_at = u32(select(0i, v, inside)) * ${u32Lit(rest)} + i % ${u32Lit(rest)};`,
        `out[i] = select(0.0, ${load}, inside);`,
      ],
    });
  },

  // Thread (v, block of SCATTER_COLS columns) loops over all indices and accumulates the rows
  // of g whose index is v, in index order (the interpreter's order).
  scatter_add: (node: Node, graph: Graph): Kernel => {
    const { ins, out } = nodeBindings(node, graph, ['g', 'idx']);
    const rows = node.shape[0];
    const rest = numel(node.shape.slice(1));
    const n = count(ins[1].shape);
    const cols = Math.min(SCATTER_COLS, rest);
    const blocks = Math.ceil(rest / cols);
    const threads = rows * blocks;
    const g = grid(Math.ceil(threads / SCATTER_WG));
    const acc = [...Array(cols).keys()];
    const ragged = rest % cols !== 0;
    const col = (q: number) => (ragged ? `min(j0 + ${u32Lit(q)}, ${u32Lit(rest - 1)})` : q ? `j0 + ${u32Lit(q)}` : 'j0');
    return assemble({
      name: kernelName('scatter_add', ...inShapes(node, graph), 'to', shapeName(node.shape)),
      summary: `out[v, :] = sum of g[r, :] over r with idx[r] == v, v in [0, ${rows})`,
      notes: [`each thread owns ${cols} consecutive columns of one output row and scans all ${n} indices`],
      ins,
      out,
      workgroupSize: SCATTER_WG,
      grid: g,
      body: [
        g.groupLine,
        `let t = group * ${u32Lit(SCATTER_WG)} + lid;`,
        `if (t >= ${u32Lit(threads)}) {`,
        '  return;',
        '}',
        `let v = i32(t / ${u32Lit(blocks)});`,
        `let j0 = (t % ${u32Lit(blocks)}) * ${u32Lit(cols)};`,
        ...chunks(acc, 8).map((row) => row.map((q) => `var acc${q} = 0.0;`).join(' ')),
        `for (var r = 0u; r < ${u32Lit(n)}; r++) {`,
        '  if (idx[r] == v) {',
        `    let base = r * ${u32Lit(rest)};`,
        ...acc.map((q) => `    acc${q} += ${loadF32(ins[0], `base + ${col(q)}`)};`),
        '  }',
        '}',
        `let o = u32(v) * ${u32Lit(rest)} + j0;`,
        ...acc.flatMap((q) =>
          ragged && q > 0 ? [`if (j0 + ${u32Lit(q)} < ${u32Lit(rest)}) {`, `  out[o + ${u32Lit(q)}] = acc${q};`, '}'] : [`out[o${q ? ` + ${u32Lit(q)}` : ''}] = acc${q};`],
        ),
      ],
    });
  },

  onehot: (node: Node, graph: Graph): Kernel => {
    const { ins, out } = nodeBindings(node, graph, ['idx']);
    const v = node.shape[node.shape.length - 1];
    return mapKernel({
      name: kernelName('onehot', ...inShapes(node, graph), 'to', shapeName(node.shape)),
      summary: `out[..., c] = idx[...] == c ? 1 : 0 for c in [0, ${v})`,
      ins,
      out,
      broadcast: false,
      body: [`out[i] = select(0.0, 1.0, idx[i / ${u32Lit(v)}] == i32(i % ${u32Lit(v)}));`],
    });
  },
};
