// CST -> AST: turns the Chevrotain CST of parser.ts into the typed AST of ast.ts.
//
// Only run on a CST parsed without errors (index.ts throws before visiting otherwise), so
// every child the grammar requires is present; `one()` guards the assumption anyway.
//
// Locations: each node's `loc` starts at its first token. Its `length` covers the whole
// construct when that fits on one line, and the first token otherwise.
import type { CstChildrenDictionary, CstElement, CstNode, IToken } from 'chevrotain';
import type { SrcLoc } from '../compiler/diagnostics.ts';
import type { Arg, Decl, Entry, Expr, Ident, Member, Program, Stmt } from './ast.ts';
import { parser } from './parser.ts';
import { unquote } from './lexer.ts';

type Ctx = CstChildrenDictionary;
type Call = Extract<Expr, { kind: 'call' }>;
type BinaryOp = Extract<Expr, { kind: 'binary' }>['op'];

/** Where a run of CST elements starts and ends in the source. */
interface Extent {
  startOffset: number;
  startLine: number;
  endOffset: number;
  endLine: number;
}

const BaseVisitor = parser.getBaseCstVisitorConstructor();

export class AstBuilder extends BaseVisitor {
  constructor(private readonly file: string) {
    super();
    this.validateVisitor();
  }

  // ---- helpers -------------------------------------------------------------------------------

  private expr(node: CstNode): Expr {
    return this.visit(node) as Expr;
  }

  /** The location of a single token. */
  private tokLoc(tok: IToken): SrcLoc {
    return { file: this.file, line: tok.startLine ?? 1, col: tok.startColumn ?? 1, length: Math.max(1, tok.image.length) };
  }

  /** A location starting where `start` starts, underlining `elements` when they share one line. */
  private spanLoc(start: SrcLoc, elements: CstElement[]): SrcLoc {
    const ext = extentOf(elements);
    const length = ext && ext.startLine === ext.endLine ? ext.endOffset - ext.startOffset + 1 : start.length;
    return { ...start, length };
  }

  private ident(tok: IToken): Ident {
    return { name: tok.image, loc: this.tokLoc(tok) };
  }

  // ---- declarations --------------------------------------------------------------------------

  program(ctx: Ctx): Program {
    return { file: this.file, decls: nodes(ctx, 'declaration').map((d) => this.visit(d) as Decl) };
  }

  declaration(ctx: Ctx): Decl {
    return this.visit(onlyNode(ctx)) as Decl;
  }

  importDecl(ctx: Ctx): Decl {
    const path = one(toks(ctx, 'StringLiteral'));
    return { kind: 'import', path: unquote(path.image), loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Import'))), all(ctx)) };
  }

  hyperDecl(ctx: Ctx): Decl {
    const entries = this.visit(one(nodes(ctx, 'entryBlock'))) as Entry[];
    return { kind: 'hyper', entries, loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Hyper'))), all(ctx)) };
  }

  presetDecl(ctx: Ctx): Decl {
    const entries = this.visit(one(nodes(ctx, 'entryBlock'))) as Entry[];
    const name = one(toks(ctx, 'Identifier')).image;
    return { kind: 'preset', name, entries, loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Preset'))), all(ctx)) };
  }

  trainDecl(ctx: Ctx): Decl {
    const entries = this.visit(one(nodes(ctx, 'entryBlock'))) as Entry[];
    return { kind: 'train', entries, loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Train'))), all(ctx)) };
  }

  entryBlock(ctx: Ctx): Entry[] {
    return nodes(ctx, 'entry').map((e) => this.visit(e) as Entry);
  }

  entry(ctx: Ctx): Entry {
    const name = one(toks(ctx, 'Identifier'));
    const value = this.expr(one(nodes(ctx, 'expression')));
    return { name: name.image, value, loc: this.spanLoc(this.tokLoc(name), all(ctx)) };
  }

  layerDecl(ctx: Ctx): Decl {
    const keyword = one([...toks(ctx, 'Layer'), ...toks(ctx, 'Model')]);
    const paramList = nodes(ctx, 'paramList');
    return {
      kind: 'layer',
      isModel: toks(ctx, 'Model').length > 0,
      name: one(toks(ctx, 'Identifier')).image,
      params: paramList.length > 0 ? (this.visit(paramList[0]) as Ident[]) : [],
      members: nodes(ctx, 'member').map((m) => this.visit(m) as Member),
      loc: this.spanLoc(this.tokLoc(keyword), all(ctx)),
    };
  }

  fnDecl(ctx: Ctx): Decl {
    return {
      kind: 'fn',
      name: one(toks(ctx, 'Identifier')).image,
      params: this.visit(one(nodes(ctx, 'paramList'))) as Ident[],
      body: this.visit(one(nodes(ctx, 'block'))) as Stmt[],
      loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Fn'))), all(ctx)),
    };
  }

  paramList(ctx: Ctx): Ident[] {
    return toks(ctx, 'Identifier').map((t) => this.ident(t));
  }

  // ---- layer members -------------------------------------------------------------------------

  member(ctx: Ctx): Member {
    return this.visit(onlyNode(ctx)) as Member;
  }

  paramMember(ctx: Ctx): Member {
    return {
      kind: 'param',
      name: one(toks(ctx, 'Identifier')).image,
      shape: this.visit(one(nodes(ctx, 'shape'))) as Expr[],
      init: this.expr(one(nodes(ctx, 'init'))),
      loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Param'))), all(ctx)),
    };
  }

  shape(ctx: Ctx): Expr[] {
    return nodes(ctx, 'expression').map((e) => this.expr(e));
  }

  forwardMember(ctx: Ctx): Member {
    return {
      kind: 'forward',
      params: this.visit(one(nodes(ctx, 'paramList'))) as Ident[],
      body: this.visit(one(nodes(ctx, 'block'))) as Stmt[],
      loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Forward'))), all(ctx)),
    };
  }

  subMember(ctx: Ctx): Member {
    const name = one(toks(ctx, 'Identifier'));
    const call = this.visit(one(nodes(ctx, 'layerCall'))) as Call;
    const count = nodes(ctx, 'count');
    const loc = this.spanLoc(this.tokLoc(name), all(ctx));
    return count.length > 0
      ? { kind: 'sub', name: name.image, call, count: this.expr(count[0]), loc }
      : { kind: 'sub', name: name.image, call, loc };
  }

  layerCall(ctx: Ctx): Call {
    return this.call(ctx);
  }

  // ---- statements ----------------------------------------------------------------------------

  block(ctx: Ctx): Stmt[] {
    return nodes(ctx, 'statement').map((s) => this.visit(s) as Stmt);
  }

  statement(ctx: Ctx): Stmt {
    return this.visit(onlyNode(ctx)) as Stmt;
  }

  assignStmt(ctx: Ctx): Stmt {
    const name = one(toks(ctx, 'Identifier'));
    const value = this.expr(one(nodes(ctx, 'expression')));
    return { kind: 'assign', name: name.image, value, loc: this.spanLoc(this.tokLoc(name), all(ctx)) };
  }

  returnStmt(ctx: Ctx): Stmt {
    const value = this.expr(one(nodes(ctx, 'expression')));
    return { kind: 'return', value, loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Return'))), all(ctx)) };
  }

  repeatStmt(ctx: Ctx): Stmt {
    return {
      kind: 'repeat',
      count: this.expr(one(nodes(ctx, 'expression'))),
      body: this.visit(one(nodes(ctx, 'block'))) as Stmt[],
      loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Repeat'))), all(ctx)),
    };
  }

  forStmt(ctx: Ctx): Stmt {
    return {
      kind: 'for',
      varName: one(toks(ctx, 'Identifier')).image,
      iterable: this.expr(one(nodes(ctx, 'expression'))),
      body: this.visit(one(nodes(ctx, 'block'))) as Stmt[],
      loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'For'))), all(ctx)),
    };
  }

  observeStmt(ctx: Ctx): Stmt {
    return {
      kind: 'observe',
      name: one(toks(ctx, 'Identifier')).image,
      value: this.expr(one(nodes(ctx, 'expression'))),
      loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'Observe'))), all(ctx)),
    };
  }

  // ---- expressions ---------------------------------------------------------------------------

  expression(ctx: Ctx): Expr {
    return this.expr(one(nodes(ctx, 'additiveExpression')));
  }

  additiveExpression(ctx: Ctx): Expr {
    return this.binaryChain(ctx);
  }

  multiplicativeExpression(ctx: Ctx): Expr {
    return this.binaryChain(ctx);
  }

  /** `lhs (operator rhs)*`, folded to the left: `a - b - c` is `(a - b) - c`. */
  private binaryChain(ctx: Ctx): Expr {
    const lhsNode = one(nodes(ctx, 'lhs'));
    const ops = toks(ctx, 'operator');
    const rhs = nodes(ctx, 'rhs');
    let acc = this.expr(lhsNode);
    ops.forEach((op, i) => {
      const right = this.expr(rhs[i]);
      const loc = this.spanLoc(acc.loc, [lhsNode, rhs[i]]);
      acc = { kind: 'binary', op: op.image as BinaryOp, left: acc, right, loc };
    });
    return acc;
  }

  unaryExpression(ctx: Ctx): Expr {
    const minus = toks(ctx, 'Minus');
    if (minus.length === 0) return this.expr(one(nodes(ctx, 'postfixExpression')));
    const arg = this.expr(one(nodes(ctx, 'unaryExpression')));
    return { kind: 'unary', op: '-', arg, loc: this.spanLoc(this.tokLoc(minus[0]), all(ctx)) };
  }

  postfixExpression(ctx: Ctx): Expr {
    const primaryNode = one(nodes(ctx, 'primary'));
    const closers = toks(ctx, 'RSquare');
    let acc = this.expr(primaryNode);
    nodes(ctx, 'index').forEach((indexNode, i) => {
      const loc = this.spanLoc(acc.loc, [primaryNode, closers[i] ?? indexNode]);
      acc = { kind: 'index', target: acc, index: this.expr(indexNode), loc };
    });
    return acc;
  }

  primary(ctx: Ctx): Expr {
    const num = toks(ctx, 'NumberLiteral');
    if (num.length > 0) return { kind: 'num', value: Number(num[0].image), text: num[0].image, loc: this.tokLoc(num[0]) };
    const str = toks(ctx, 'StringLiteral');
    if (str.length > 0) return { kind: 'str', value: unquote(str[0].image), loc: this.tokLoc(str[0]) };
    return this.expr(onlyNode(ctx));
  }

  nameOrCall(ctx: Ctx): Expr {
    if (nodes(ctx, 'argumentList').length > 0) return this.call(ctx);
    const name = one(toks(ctx, 'Identifier'));
    return { kind: 'name', name: name.image, loc: this.tokLoc(name) };
  }

  /** A call `callee(args)`, from a nameOrCall or layerCall context. */
  private call(ctx: Ctx): Call {
    const callee = one(toks(ctx, 'Identifier'));
    const calleeLoc = this.tokLoc(callee);
    const args = this.visit(one(nodes(ctx, 'argumentList'))) as Arg[];
    return { kind: 'call', callee: callee.image, calleeLoc, args, loc: this.spanLoc(calleeLoc, all(ctx)) };
  }

  argumentList(ctx: Ctx): Arg[] {
    return nodes(ctx, 'argument').map((a) => this.visit(a) as Arg);
  }

  argument(ctx: Ctx): Arg {
    const value = this.expr(one(nodes(ctx, 'expression')));
    const name = toks(ctx, 'name');
    if (name.length === 0) return { value, loc: value.loc };
    return { name: name[0].image, value, loc: this.spanLoc(this.tokLoc(name[0]), all(ctx)) };
  }

  listExpression(ctx: Ctx): Expr {
    const items = nodes(ctx, 'listItem').map((n) => this.expr(n));
    return { kind: 'list', items, loc: this.spanLoc(this.tokLoc(one(toks(ctx, 'LSquare'))), all(ctx)) };
  }

  listItem(ctx: Ctx): Expr {
    const dots = toks(ctx, 'Ellipsis');
    if (dots.length > 0) return { kind: 'ellipsis', loc: this.tokLoc(dots[0]) };
    return this.expr(one(nodes(ctx, 'expression')));
  }

  /** `(e)` is just `e`: parentheses leave no trace in the AST. */
  parenExpression(ctx: Ctx): Expr {
    return this.expr(one(nodes(ctx, 'expression')));
  }
}

// ---- CST access helpers ------------------------------------------------------------------------

function toks(ctx: Ctx, key: string): IToken[] {
  return (ctx[key] ?? []) as IToken[];
}

function nodes(ctx: Ctx, key: string): CstNode[] {
  return (ctx[key] ?? []) as CstNode[];
}

/** The single child node of a rule that is one choice among sub-rules. */
function onlyNode(ctx: Ctx): CstNode {
  for (const list of Object.values(ctx)) {
    for (const el of list) if (isNode(el)) return el;
  }
  throw new Error('internal: expected a child node in the syntax tree');
}

function one<T>(list: T[]): T {
  if (list.length === 0) throw new Error('internal: missing element in the syntax tree');
  return list[0];
}

function all(ctx: Ctx): CstElement[] {
  return Object.values(ctx).flat();
}

function isNode(el: CstElement): el is CstNode {
  return 'children' in el;
}

/** The source range covered by some tokens and nodes (undefined if none carry positions). */
function extentOf(elements: CstElement[]): Extent | undefined {
  let ext: Extent | undefined;
  for (const el of elements) {
    const e = isNode(el)
      ? el.location && {
          startOffset: el.location.startOffset,
          startLine: el.location.startLine ?? NaN,
          endOffset: el.location.endOffset ?? NaN,
          endLine: el.location.endLine ?? NaN,
        }
      : { startOffset: el.startOffset, startLine: el.startLine ?? NaN, endOffset: el.endOffset ?? NaN, endLine: el.endLine ?? NaN };
    if (!e || !Number.isFinite(e.startOffset) || !Number.isFinite(e.endOffset)) continue;
    if (!ext) ext = { ...e };
    else {
      if (e.startOffset < ext.startOffset) Object.assign(ext, { startOffset: e.startOffset, startLine: e.startLine });
      if (e.endOffset > ext.endOffset) Object.assign(ext, { endOffset: e.endOffset, endLine: e.endLine });
    }
  }
  return ext;
}

/** Build the AST of a CST produced by `parser.program()`. */
export function buildAst(cst: CstNode, file: string): Program {
  return new AstBuilder(file).visit(cst) as Program;
}
