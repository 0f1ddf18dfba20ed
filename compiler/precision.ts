// Pass `precision` (train setting `f16 = 1`, or `--f16`): f16 storage of the forward pass's
// activations. Every f32 value the forward pass computes is stored as f16 (half the bytes of
// the activations the backward pass reads); kernels load it into f32, compute in f32 and
// round once when they store (compiler/wgsl/common.ts, f16Storage). What stays f32:
//   - parameters (the master weights), the gradient arena and the optimizer's moments;
//   - the backward pass, gradients of activations included (f16's range, 6e-5 … 65504,
//     would flush small gradients to zero without loss scaling);
//   - what the host reads: the loss, the logits, the observed token matrices;
//   - constants and host inputs, and attention's row log-sum-exp (an error δ in it scales a
//     whole row of probabilities by exp(δ)).
// A reshape is a view of its input's buffer, so a reshape and its root share one dtype: a
// root stays f32 when any view of it must.
import { reshapeRoot, type Graph } from './ir.ts';

/** Marks the forward activations f16; returns how many nodes it marked. */
export function storeActivationsF16(g: Graph): number {
  const start = g.backwardStart ?? g.nodes.length;
  const root = (id: number): number => reshapeRoot(g, id);
  const kept = new Set([...Object.values(g.outputs), ...Object.values(g.observations).flat()].map(root));
  let marked = 0;
  for (const n of g.nodes) {
    if (n.id >= start || n.dtype !== 'f32' || n.op.kind === 'reshape') continue;
    if (['param', 'input', 'fill', 'eye'].includes(n.op.kind) || kept.has(n.id)) continue;
    if (n.op.kind === 'attention' && n.op.part === 'lse') continue; // a statistic every P_ij = exp(s - lse) is scaled by
    n.dtype = 'f16';
    marked++;
  }
  for (const n of g.nodes) if (n.op.kind === 'reshape') n.dtype = g.nodes[root(n.id)].dtype;
  return marked;
}
