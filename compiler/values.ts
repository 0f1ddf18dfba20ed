// Compile-time values of the .mt evaluator. Numbers, strings and lists are folded at compile
// time; tensors are IR nodes; layers are instances with their own parameters.
import type { Decl, Member } from '../grammar/ast.ts';

export type LayerDecl = Extract<Decl, { kind: 'layer' }>;

export interface LayerInst {
  decl: LayerDecl;
  /** Dotted source path of this instance, e.g. "blocks.0.attn". */
  path: string;
  /** Layer arguments bound by name. */
  args: Map<string, Value>;
  /** Members: params (tensors) and sub-layers, by name. */
  members: Map<string, Value>;
  forward?: Extract<Member, { kind: 'forward' }>;
}

export type Value =
  | { t: 'num'; v: number }
  | { t: 'str'; v: string }
  | { t: 'tensor'; id: number }
  | { t: 'list'; items: Value[] }
  | { t: 'ellipsis' }
  | { t: 'layer'; inst: LayerInst }
  | { t: 'layers'; items: LayerInst[] }
  /** A call left symbolic: configuration such as `adamw(lr = 3e-4)` in the train section. */
  | { t: 'config'; name: string; args: Map<string, Value> };

export const num = (v: number): Value => ({ t: 'num', v });
export const tensor = (id: number): Value => ({ t: 'tensor', id });

export function describe(v: Value): string {
  switch (v.t) {
    case 'num':
      return `the number ${v.v}`;
    case 'str':
      return `the string "${v.v}"`;
    case 'tensor':
      return 'a tensor';
    case 'list':
      return 'a list';
    case 'ellipsis':
      return "'...'";
    case 'layer':
      return `the layer ${v.inst.decl.name}`;
    case 'layers':
      return `an array of ${v.items.length} layers`;
    case 'config':
      return `${v.name}(...)`;
  }
}
