// Gradient checkpointing, per block: the forward values computed inside one call of a layer
// of a layer array (`blocks = [ThinkingBlock(...); n]`, each call of blocks.i) are not kept for
// the backward pass; the backward pass recomputes the call from its inputs, just before the
// first gradient that needs one of them. Only what crosses a call boundary (the residual
// stream between blocks) and what is read outside (observations) stays alive through the
// step, so activation memory falls from every block's intermediates to one block's at a time,
// at the cost of running each block's forward twice.
//
// Dropout in a recomputed call draws the same masks: a mask is a function of (seed, step, the
// op's key, the element), never of the order kernels run in.
import { numel, type Graph, type Node } from './ir.ts';

/** Where a forward node belongs: the array item (e.g. "blocks.0") whose call computed it. */
function scopeOf(n: Node, scopes: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const s of scopes) if (n.name.startsWith(`${s}.`) && (!best || s.length > best.length)) best = s;
  return best;
}

/**
 * Rewrites a differentiated graph in place so that the backward pass recomputes the
 * intermediates of each call of `scopes` (layer array items, from lowering) instead of keeping
 * them. Returns the number of forward nodes the backward pass now recomputes.
 */
export function checkpointCalls(g: Graph, scopes: readonly string[]): number {
  const nFwd = g.backwardStart;
  if (nFwd === undefined || !g.grads) throw new Error('internal: checkpointing needs a differentiated graph');
  const nodes = g.nodes;
  // Segments: maximal runs of consecutive forward nodes computed by one call.
  const seg = new Array<number>(nodes.length).fill(-1);
  const segments: number[][] = [];
  let last: string | undefined;
  for (let i = 0; i < nFwd; i++) {
    const n = nodes[i];
    // parameters and constants are kept anyway: they neither join nor break a call's run
    if (n.op.kind === 'param' || n.op.kind === 'input' || n.inputs.length === 0) continue;
    const s = scopeOf(n, scopes);
    if (s === undefined) {
      last = undefined;
      continue;
    }
    if (s !== last) segments.push([]);
    last = s;
    seg[i] = segments.length - 1;
    segments[segments.length - 1].push(i);
  }
  // A node is recomputed when no forward node outside its segment reads it and it is not kept.
  const kept = new Set([g.outputs.loss, g.outputs.logits, ...Object.values(g.observations).flat()]);
  const recompute = new Array<boolean>(nodes.length).fill(false);
  // Attention's output and row statistics are saved, not recomputed (selective checkpointing):
  // the most expensive forward kernels, with outputs the size of one token matrix per head
  // slice; recomputing them made a full-shape step 51% slower, against 28% without them.
  for (let i = 0; i < nFwd; i++) recompute[i] = seg[i] >= 0 && !kept.has(i) && nodes[i].op.kind !== 'attention';
  for (let i = 0; i < nFwd; i++) for (const x of nodes[i].inputs) if (seg[x] >= 0 && seg[i] !== seg[x]) recompute[x] = false;

  const out: Node[] = nodes.slice(0, nFwd);
  const newId = new Map<number, number>(); // backward nodes and clones: old id -> new id
  const clones: Array<Map<number, number> | undefined> = segments.map(() => undefined);
  let count = 0;
  const push = (n: Node, inputs: number[], name: string): number => {
    const id = out.length;
    out.push({ ...n, id, inputs, name });
    return id;
  };
  const recomputed = (s: number): Map<number, number> => {
    let m = clones[s];
    if (m) return m;
    m = new Map();
    clones[s] = m;
    for (const i of segments[s]) {
      if (!recompute[i]) continue;
      const n = nodes[i];
      m.set(i, push(n, n.inputs.map((x) => m!.get(x) ?? x), `${n.name}.recomputed`));
      count++;
    }
    return m;
  };
  for (let i = nFwd; i < nodes.length; i++) {
    const n = nodes[i];
    const inputs = n.inputs.map((x) => {
      if (x >= nFwd) return newId.get(x) as number;
      return recompute[x] ? (recomputed(seg[x]).get(x) as number) : x;
    });
    newId.set(i, push(n, inputs, n.name));
  }
  g.nodes = out;
  g.grads = g.grads.map((id) => (id >= nFwd ? (newId.get(id) as number) : id));
  return count;
}

/** Floats of the forward values the backward pass reads, with and without recomputation (a rough gauge, for tests). */
export function savedFloats(g: Graph): number {
  const nFwd = g.backwardStart ?? g.nodes.length;
  const read = new Set<number>();
  for (const n of g.nodes.slice(nFwd)) for (const x of n.inputs) if (x < nFwd) read.add(x);
  let total = 0;
  for (const x of read) if (g.nodes[x].op.kind !== 'param') total += numel(g.nodes[x].shape);
  return total;
}
