// GraphBuilder: the one way nodes are created. It infers and checks shapes (compiler/shapes.ts),
// names nodes after the source path they come from, and folds nothing: passes that simplify
// the graph are separate.
import { MtcError, type SrcLoc } from './diagnostics.ts';
import type { BinaryFn, Graph, Node, Op, ParamInfo, UnaryFn } from './ir.ts';
import { inferShape } from './shapes.ts';

export class GraphBuilder {
  readonly graph: Graph = { nodes: [], params: [], inputs: {}, outputs: {}, observations: {} };
  /** Name prefix for new nodes (the source path of the layer being lowered). */
  scope = '';
  /** Source position attached to new nodes. */
  loc: SrcLoc | undefined;
  private counters = new Map<string, number>();

  node(op: Op, inputs: number[], given?: readonly number[]): number {
    const g = this.graph;
    const res = inferShape(
      op,
      inputs.map((i) => g.nodes[i]),
      given,
    );
    if ('error' in res) throw new MtcError(res.error, this.loc);
    const base = (this.scope ? this.scope + '.' : '') + opLabel(op);
    const n = this.counters.get(base) ?? 0;
    this.counters.set(base, n + 1);
    const node: Node = { id: g.nodes.length, op, inputs, shape: res.shape, dtype: res.dtype, name: `${base}${n}`, loc: this.loc };
    g.nodes.push(node);
    return node.id;
  }

  shape(id: number): number[] {
    return this.graph.nodes[id].shape;
  }

  input(name: string, shape: number[]): number {
    const id = this.node({ kind: 'input', name }, [], shape);
    this.graph.inputs[name] = id;
    return id;
  }
  param(info: ParamInfo): number {
    this.graph.params.push(info);
    return this.node({ kind: 'param', index: this.graph.params.length - 1 }, [], info.shape);
  }
  fill(value: number, shape: number[]): number {
    return this.node({ kind: 'fill', value }, [], shape);
  }
  unary(fn: UnaryFn, x: number): number {
    return this.node({ kind: 'unary', fn }, [x]);
  }
  binary(fn: BinaryFn, a: number, b: number): number {
    return this.node({ kind: 'binary', fn }, [a, b]);
  }
  affine(x: number, scale: number, shift = 0): number {
    return this.node({ kind: 'affine', scale, shift }, [x]);
  }
  matmul(a: number, b: number): number {
    return this.node({ kind: 'matmul' }, [a, b]);
  }
  /**
   * `a @ b` as written in source. When b is one matrix and a a batch of them
   * ([..., m, k] @ [k, n]), the batch is folded into rows: one [N·m, k] @ [k, n] product
   * between two free reshapes. Its gradient for b is then one product over all rows instead of
   * a batch of products and a sum.
   */
  product(a: number, b: number): number {
    const sa = this.shape(a);
    const sb = this.shape(b);
    if (sb.length !== 2 || sa.length <= 2 || sa[sa.length - 1] !== sb[0]) return this.matmul(a, b);
    const lead = sa.slice(0, -1);
    const rows = lead.reduce((x, y) => x * y, 1);
    const flat = this.reshape(a, [rows, sa[sa.length - 1]]);
    return this.reshape(this.matmul(flat, b), [...lead, sb[1]]);
  }
  sum(x: number, axes: number[]): number {
    return this.node({ kind: 'sum', axes: [...axes].sort((p, q) => p - q) }, [x]);
  }
  reshape(x: number, shape: number[]): number {
    return this.node({ kind: 'reshape' }, [x], shape);
  }
  expand(x: number, shape: number[]): number {
    return this.node({ kind: 'expand' }, [x], shape);
  }
  permute(x: number, perm: number[]): number {
    return this.node({ kind: 'permute', perm }, [x]);
  }
  /** Swap two axes (negative counts from the end). */
  transpose(x: number, a = -2, b = -1): number {
    const r = this.shape(x).length;
    const ia = a < 0 ? r + a : a;
    const ib = b < 0 ? r + b : b;
    if (ia < 0 || ib < 0 || ia >= r || ib >= r)
      throw new MtcError(`transpose axes ${a} and ${b} are out of range for a tensor of rank ${r}`, this.loc);
    const perm = [...Array(r).keys()];
    perm[ia] = ib;
    perm[ib] = ia;
    return this.permute(x, perm);
  }
}

function opLabel(op: Op): string {
  switch (op.kind) {
    case 'unary':
    case 'binary':
      return op.fn;
    case 'input':
      return op.name;
    default:
      return op.kind;
  }
}
