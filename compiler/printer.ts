// The IR printer: one line per node, stable across runs, used by --dump-after and tests.
//   %12: f32[16, 64, 8, 8] = matmul %10, %11    # blocks.0.attn.q.matmul0  stdlib.mt:19:12
import { fmtShape, type Graph, type Node, type Op } from './ir.ts';

function attrs(op: Op): string {
  switch (op.kind) {
    case 'input':
      return ` "${op.name}"`;
    case 'param':
      return ` #${op.index}`;
    case 'fill':
      return ` ${op.value}`;
    case 'unary':
    case 'binary':
      return '';
    case 'affine':
      return ` scale=${op.scale} shift=${op.shift}`;
    case 'clamp':
    case 'inrange':
      return ` lo=${op.lo} hi=${op.hi}`;
    case 'sum':
      return ` axes=[${op.axes.join(', ')}]`;
    case 'permute':
      return ` perm=[${op.perm.join(', ')}]`;
    case 'slice':
    case 'pad':
      return ` axis=${op.axis} start=${op.start}`;
    case 'causal_mask':
      return ` fill=${op.fill}`;
    case 'dropout':
      return ` p=${op.p} key=${op.key}`;
    default:
      return '';
  }
}

export function opName(op: Op): string {
  return op.kind === 'unary' || op.kind === 'binary' ? op.fn : op.kind;
}

export function printNode(n: Node, g: Graph): string {
  const args = n.inputs.map((i) => `%${i}`).join(', ');
  const label = n.op.kind === 'param' ? g.params[n.op.index].path : n.name;
  const where = n.loc ? `  ${n.loc.file.split('/').pop()}:${n.loc.line}:${n.loc.col}` : '';
  return `%${n.id}: ${n.dtype}${fmtShape(n.shape)} = ${opName(n.op)}${attrs(n.op)}${args ? ' ' + args : ''}    # ${label}${where}`;
}

export function printGraph(g: Graph): string {
  const lines = g.nodes.map((n) => printNode(n, g));
  for (const [k, v] of Object.entries(g.outputs)) lines.push(`output ${k} = %${v}`);
  for (const [k, v] of Object.entries(g.observations)) lines.push(`observe ${k} = ${v.map((i) => `%${i}`).join(', ')}`);
  if (g.grads) g.grads.forEach((gid, i) => lines.push(`grad ${g.params[i].path} = %${gid}`));
  return lines.join('\n') + '\n';
}
