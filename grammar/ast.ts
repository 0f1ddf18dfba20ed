// The typed AST of a .mt file, built from the Chevrotain CST by grammar/visitor.ts.
// Nothing here knows about tensors or models: it is the surface language only.
import type { SrcLoc } from '../compiler/diagnostics.ts';

export type Expr =
  | { kind: 'num'; value: number; text: string; loc: SrcLoc }
  | { kind: 'str'; value: string; loc: SrcLoc }
  | { kind: 'name'; name: string; loc: SrcLoc }
  | { kind: 'list'; items: Expr[]; loc: SrcLoc }
  /** `...` inside a shape list: the leading axes that are kept (reshape). */
  | { kind: 'ellipsis'; loc: SrcLoc }
  | { kind: 'unary'; op: '-'; arg: Expr; loc: SrcLoc }
  | { kind: 'binary'; op: '+' | '-' | '*' | '/' | '@'; left: Expr; right: Expr; loc: SrcLoc }
  | { kind: 'call'; callee: string; calleeLoc: SrcLoc; args: Arg[]; loc: SrcLoc }
  | { kind: 'index'; target: Expr; index: Expr; loc: SrcLoc };

/** A call argument: positional (`x`) or named (`lr = 3e-4`). */
export interface Arg {
  name?: string;
  value: Expr;
  loc: SrcLoc;
}

export type Stmt =
  | { kind: 'assign'; name: string; value: Expr; loc: SrcLoc }
  | { kind: 'return'; value: Expr; loc: SrcLoc }
  /** `repeat T { ... }`: the body is unrolled T times (T a compile-time number). */
  | { kind: 'repeat'; count: Expr; body: Stmt[]; loc: SrcLoc }
  /** `for blk in blocks { ... }`: iterates over a layer array member. */
  | { kind: 'for'; varName: string; iterable: Expr; body: Stmt[]; loc: SrcLoc }
  /** `observe residual = M`: exposes a value to metrics (once per enclosing repeat iteration). */
  | { kind: 'observe'; name: string; value: Expr; loc: SrcLoc };

export type Member =
  /** `param g: [n, n] = ones` */
  | { kind: 'param'; name: string; shape: Expr[]; init: Expr; loc: SrcLoc }
  /** `norm = RMSNorm(n)` or `blocks = [ThinkingBlock(d, heads, p); n_blocks]` */
  | { kind: 'sub'; name: string; call: Extract<Expr, { kind: 'call' }>; count?: Expr; loc: SrcLoc }
  /** `forward(M) { ... }` */
  | { kind: 'forward'; params: Ident[]; body: Stmt[]; loc: SrcLoc };

export interface Ident {
  name: string;
  loc: SrcLoc;
}

/** `name = expr` inside hyper, preset and train sections. */
export interface Entry {
  name: string;
  value: Expr;
  loc: SrcLoc;
}

export type Decl =
  | { kind: 'import'; path: string; loc: SrcLoc }
  | { kind: 'hyper'; entries: Entry[]; loc: SrcLoc }
  | { kind: 'preset'; name: string; entries: Entry[]; loc: SrcLoc }
  | { kind: 'layer'; isModel: boolean; name: string; params: Ident[]; members: Member[]; loc: SrcLoc }
  | { kind: 'fn'; name: string; params: Ident[]; body: Stmt[]; loc: SrcLoc }
  | { kind: 'train'; entries: Entry[]; loc: SrcLoc };

export interface Program {
  file: string;
  decls: Decl[];
}
