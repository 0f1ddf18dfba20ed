// WGSL emission: one kernel per graph node, following the ABI of compiler/kernel.ts. The
// table below has a rule for every op kind, so a new primitive does not compile until it has
// one. A kernel depends only on its op (with attributes) and the shapes and dtypes of its
// operands, never on node names or ids: equal (op, shapes) give byte-identical code and name.
import type { Graph, Node, OpKind } from '../ir.ts';
import type { Kernel } from '../kernel.ts';
import { elementwiseEmitters } from './elementwise.ts';
import { layoutEmitters } from './layout.ts';
import { emitAttention } from './attention.ts';
import { emitMatmul } from './matmul.ts';
import { reduceEmitters } from './reduce.ts';

export type Emitter = (node: Node, graph: Graph) => Kernel | null;

const none: Emitter = () => null;

const emitters: { [K in OpKind]: Emitter } = {
  // Values provided by the host, no kernel.
  input: none,
  param: none,
  // Same elements row-major: the scheduler binds the input's buffer.
  reshape: none,
  ...elementwiseEmitters,
  ...layoutEmitters,
  ...reduceEmitters,
  matmul: (node, graph) => emitMatmul(node, graph),
  attention: (node, graph) => emitAttention(node, graph),
};

/** The kernel computing `node`, or null when the node needs none (input, param, reshape). */
export function emitKernel(graph: Graph, node: Node): Kernel | null {
  return emitters[node.op.kind](node, graph);
}

export { PCG_WGSL } from './common.ts';
export { canonicalMatmul, chooseMatmulPlan, emitMatmul, type MatmulCanon, type MatmulPlan } from './matmul.ts';
export { chooseSoftmaxVariant, chooseSumVariant, emitCrossEntropy, emitSoftmax, emitSum, type ReduceVariant } from './reduce.ts';
