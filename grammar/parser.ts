// The grammar of .mt files as a pure Chevrotain CstParser: rules and labels only, no actions.
// The CST is turned into the typed AST of ast.ts by visitor.ts.
//
// Rules that wrap a choice (`declaration`, `member`, `statement`, `argument`, `listItem`) exist
// so that the CST keeps the source order of mixed alternatives: Chevrotain groups a node's
// children by name, so siblings of one name stay ordered while different names would not.
//
// Error messages are written by `messages` (below), which turns Chevrotain's error callbacks
// into one-sentence, human messages. It looks at the parser's current token vector to say
// which call a missing ')' belongs to or which block a missing '}' should close.
import { CstParser, EOF, type IParserErrorMessageProvider, type IToken, type TokenType } from 'chevrotain';
import * as T from './lexer.ts';

export class MtParser extends CstParser {
  constructor() {
    super(T.allTokens, {
      recoveryEnabled: true,
      nodeLocationTracking: 'full',
      maxLookahead: 3,
      errorMessageProvider: messages,
    });
    this.performSelfAnalysis();
  }

  // ---- declarations --------------------------------------------------------------------------

  program = this.RULE('program', () => {
    this.MANY(() => {
      this.OR([{ ALT: () => this.SUBRULE(this.declaration) }, { ALT: () => this.CONSUME(T.Semicolon) }]);
    });
  });

  declaration = this.RULE('declaration', () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.importDecl) },
      { ALT: () => this.SUBRULE(this.hyperDecl) },
      { ALT: () => this.SUBRULE(this.presetDecl) },
      { ALT: () => this.SUBRULE(this.layerDecl) },
      { ALT: () => this.SUBRULE(this.fnDecl) },
      { ALT: () => this.SUBRULE(this.trainDecl) },
    ]);
  });

  importDecl = this.RULE('importDecl', () => {
    this.CONSUME(T.Import);
    this.CONSUME(T.StringLiteral);
  });

  hyperDecl = this.RULE('hyperDecl', () => {
    this.CONSUME(T.Hyper);
    this.SUBRULE(this.entryBlock);
  });

  presetDecl = this.RULE('presetDecl', () => {
    this.CONSUME(T.Preset);
    this.CONSUME(T.Identifier);
    this.SUBRULE(this.entryBlock);
  });

  trainDecl = this.RULE('trainDecl', () => {
    this.CONSUME(T.Train);
    this.SUBRULE(this.entryBlock);
  });

  /** `{ name = expr ... }` of hyper, preset and train. */
  entryBlock = this.RULE('entryBlock', () => {
    this.CONSUME(T.LCurly);
    this.MANY(() => {
      this.OR([{ ALT: () => this.SUBRULE(this.entry) }, { ALT: () => this.CONSUME(T.Semicolon) }]);
    });
    this.CONSUME(T.RCurly);
  });

  entry = this.RULE('entry', () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
  });

  /** `layer Name(a, b) { ... }` or `model Name { ... }`. */
  layerDecl = this.RULE('layerDecl', () => {
    this.OR([{ ALT: () => this.CONSUME(T.Layer) }, { ALT: () => this.CONSUME(T.Model) }]);
    this.CONSUME(T.Identifier);
    this.OPTION(() => this.SUBRULE(this.paramList));
    this.CONSUME(T.LCurly);
    this.MANY(() => {
      this.OR2([{ ALT: () => this.SUBRULE(this.member) }, { ALT: () => this.CONSUME(T.Semicolon) }]);
    });
    this.CONSUME(T.RCurly);
  });

  fnDecl = this.RULE('fnDecl', () => {
    this.CONSUME(T.Fn);
    this.CONSUME(T.Identifier);
    this.SUBRULE(this.paramList);
    this.SUBRULE(this.block);
  });

  /** `(a, b)`: the names of a layer's, fn's or forward's parameters. */
  paramList = this.RULE('paramList', () => {
    this.CONSUME(T.LParen);
    this.OPTION(() => {
      this.CONSUME(T.Identifier);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.CONSUME2(T.Identifier);
      });
    });
    this.CONSUME(T.RParen);
  });

  // ---- layer members -------------------------------------------------------------------------

  member = this.RULE('member', () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.paramMember) },
      { ALT: () => this.SUBRULE(this.forwardMember) },
      { ALT: () => this.SUBRULE(this.subMember) },
    ]);
  });

  /** `param g: [n, n] = ones` */
  paramMember = this.RULE('paramMember', () => {
    this.CONSUME(T.Param);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Colon);
    this.SUBRULE(this.shape);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression, { LABEL: 'init' });
  });

  shape = this.RULE('shape', () => {
    this.CONSUME(T.LSquare);
    this.OPTION(() => {
      this.SUBRULE(this.expression);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.expression);
      });
    });
    this.CONSUME(T.RSquare);
  });

  /** `forward(M, s) { ... }` */
  forwardMember = this.RULE('forwardMember', () => {
    this.CONSUME(T.Forward);
    this.SUBRULE(this.paramList);
    this.SUBRULE(this.block);
  });

  /** `norm = RMSNorm(n)` or `blocks = [ThinkingBlock(d, heads, p); n_blocks]` */
  subMember = this.RULE('subMember', () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    this.OR([
      { ALT: () => this.SUBRULE(this.layerCall) },
      {
        ALT: () => {
          this.CONSUME(T.LSquare);
          this.SUBRULE2(this.layerCall);
          this.CONSUME(T.Semicolon);
          this.SUBRULE(this.expression, { LABEL: 'count' });
          this.CONSUME(T.RSquare);
        },
      },
    ]);
  });

  layerCall = this.RULE('layerCall', () => {
    this.CONSUME(T.Identifier);
    this.SUBRULE(this.argumentList);
  });

  // ---- statements ----------------------------------------------------------------------------

  block = this.RULE('block', () => {
    this.CONSUME(T.LCurly);
    this.MANY(() => {
      this.OR([{ ALT: () => this.SUBRULE(this.statement) }, { ALT: () => this.CONSUME(T.Semicolon) }]);
    });
    this.CONSUME(T.RCurly);
  });

  statement = this.RULE('statement', () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.assignStmt) },
      { ALT: () => this.SUBRULE(this.returnStmt) },
      { ALT: () => this.SUBRULE(this.repeatStmt) },
      { ALT: () => this.SUBRULE(this.forStmt) },
      { ALT: () => this.SUBRULE(this.observeStmt) },
    ]);
  });

  assignStmt = this.RULE('assignStmt', () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
  });

  returnStmt = this.RULE('returnStmt', () => {
    this.CONSUME(T.Return);
    this.SUBRULE(this.expression);
  });

  repeatStmt = this.RULE('repeatStmt', () => {
    this.CONSUME(T.Repeat);
    this.SUBRULE(this.expression);
    this.SUBRULE(this.block);
  });

  forStmt = this.RULE('forStmt', () => {
    this.CONSUME(T.For);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.In);
    this.SUBRULE(this.expression);
    this.SUBRULE(this.block);
  });

  observeStmt = this.RULE('observeStmt', () => {
    this.CONSUME(T.Observe);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
  });

  // ---- expressions, lowest precedence first --------------------------------------------------

  expression = this.RULE('expression', () => {
    this.SUBRULE(this.additiveExpression);
  });

  /** `a + b - c`: `operator[i]` combines the value so far with `rhs[i]`. */
  additiveExpression = this.RULE('additiveExpression', () => {
    this.SUBRULE(this.multiplicativeExpression, { LABEL: 'lhs' });
    this.MANY(() => {
      this.CONSUME(T.AdditiveOperator, { LABEL: 'operator' });
      this.SUBRULE2(this.multiplicativeExpression, { LABEL: 'rhs' });
    });
  });

  multiplicativeExpression = this.RULE('multiplicativeExpression', () => {
    this.SUBRULE(this.unaryExpression, { LABEL: 'lhs' });
    this.MANY(() => {
      this.CONSUME(T.MultiplicativeOperator, { LABEL: 'operator' });
      this.SUBRULE2(this.unaryExpression, { LABEL: 'rhs' });
    });
  });

  unaryExpression = this.RULE('unaryExpression', () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Minus);
          this.SUBRULE(this.unaryExpression);
        },
      },
      { ALT: () => this.SUBRULE(this.postfixExpression) },
    ]);
  });

  /** `e[i][j]`: indexing binds tighter than unary minus. */
  postfixExpression = this.RULE('postfixExpression', () => {
    this.SUBRULE(this.primary);
    this.MANY(() => {
      this.CONSUME(T.LSquare);
      this.SUBRULE(this.expression, { LABEL: 'index' });
      this.CONSUME(T.RSquare);
    });
  });

  primary = this.RULE('primary', () => {
    this.OR([
      { ALT: () => this.CONSUME(T.NumberLiteral) },
      { ALT: () => this.CONSUME(T.StringLiteral) },
      { ALT: () => this.SUBRULE(this.nameOrCall) },
      { ALT: () => this.SUBRULE(this.listExpression) },
      { ALT: () => this.SUBRULE(this.parenExpression) },
    ]);
  });

  nameOrCall = this.RULE('nameOrCall', () => {
    this.CONSUME(T.Identifier);
    this.OPTION(() => this.SUBRULE(this.argumentList));
  });

  argumentList = this.RULE('argumentList', () => {
    this.CONSUME(T.LParen);
    this.OPTION(() => {
      this.SUBRULE(this.argument);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.argument);
      });
    });
    this.CONSUME(T.RParen);
  });

  /** `x` or `lr = 3e-4`; two tokens of lookahead tell them apart. */
  argument = this.RULE('argument', () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Identifier, { LABEL: 'name' });
          this.CONSUME(T.Equals);
          this.SUBRULE(this.expression);
        },
      },
      { ALT: () => this.SUBRULE2(this.expression) },
    ]);
  });

  listExpression = this.RULE('listExpression', () => {
    this.CONSUME(T.LSquare);
    this.OPTION(() => {
      this.SUBRULE(this.listItem);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.listItem);
      });
    });
    this.CONSUME(T.RSquare);
  });

  listItem = this.RULE('listItem', () => {
    this.OR([{ ALT: () => this.CONSUME(T.Ellipsis) }, { ALT: () => this.SUBRULE(this.expression) }]);
  });

  parenExpression = this.RULE('parenExpression', () => {
    this.CONSUME(T.LParen);
    this.SUBRULE(this.expression);
    this.CONSUME(T.RParen);
  });
}

// ==== error messages ===========================================================================

/** The token vector being parsed, for the context lookups below (set by the parser singleton). */
let currentInput = (): IToken[] => [];

const DECLARATION = "a declaration ('import', 'hyper', 'preset', 'layer', 'model', 'fn' or 'train')";
const MEMBER = "a layer member ('param', 'forward' or 'name = Layer(...)')";

const messages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage({ expected, actual, previous, ruleName }) {
    return mismatch(expected, actual, previous, ruleName);
  },
  buildNotAllInputParsedMessage({ firstRedundant }) {
    return `expected ${DECLARATION} but found ${describe(firstRedundant)}`;
  },
  buildNoViableAltMessage({ actual, previous, ruleName }) {
    return noViableAlt(actual[0], previous, ruleName);
  },
  buildEarlyExitMessage({ actual, ruleName }) {
    return `unexpected ${describe(actual[0])} in ${ruleName}`;
  },
};

function noViableAlt(actual: IToken, previous: IToken, ruleName: string): string {
  switch (ruleName) {
    case 'declaration':
      return `expected ${DECLARATION} but found ${describe(actual)}`;
    case 'member':
      return `expected ${MEMBER} but found ${describe(actual)}`;
    case 'subMember':
      // `previous` is the '=', the member's name is the token before it.
      return `expected a layer call such as 'RMSNorm(n)' or '[Block(args); count]' after '${tokenBefore(previous)?.image ?? ''} =' but found ${describe(actual)}`;
    case 'layerDecl':
      return `expected 'layer' or 'model' but found ${describe(actual)}`;
    default:
      // primary, unaryExpression, argument, listItem: all want an expression here.
      return `expected an expression but found ${describe(actual)}`;
  }
}

function mismatch(expected: TokenType, actual: IToken, previous: IToken, ruleName: string): string {
  const found = describe(actual);
  const after = previous && previous.tokenType !== EOF ? ` after ${describe(previous)}` : '';
  switch (expected) {
    case EOF:
      return `expected ${DECLARATION} but found ${found}`;
    case T.RParen: {
      const opener = innermostOpen(actual, T.LParen);
      if (ruleName === 'argumentList' && opener) {
        const callee = tokenBefore(opener);
        const what = callee?.tokenType === T.Identifier ? `the call to '${callee.image}'` : 'the call';
        return `expected ')' to close ${what} but found ${found}`;
      }
      if (ruleName === 'paramList') return `expected ',' or ')' in the parameter list but found ${found}`;
      return `expected ')' to close the parenthesised expression but found ${found}`;
    }
    case T.RSquare:
      if (ruleName === 'shape') return `expected ']' to close the parameter shape but found ${found}`;
      if (ruleName === 'subMember') return `expected ']' after the layer count but found ${found}`;
      if (ruleName === 'postfixExpression') return `expected ']' to close the index but found ${found}`;
      return `expected ']' to close the list but found ${found}`;
    case T.RCurly:
      return missingCloseCurly(actual, ruleName);
    case T.LCurly:
      return `expected '{'${after} but found ${found}`;
    case T.Equals:
      if (ruleName === 'paramMember') return `expected '=' after the parameter shape but found ${found}`;
      return `expected '='${after} but found ${found}`;
    case T.Colon:
      return `expected ':' and a shape such as '[n, n]' after 'param ${previous.image}' but found ${found}`;
    case T.LSquare:
      if (ruleName === 'shape') return `expected a shape such as '[n, n]' after ':' but found ${found}`;
      return `expected '['${after} but found ${found}`;
    case T.Semicolon:
      return `expected ';' between the layer call and the count in '[Layer(args); count]' but found ${found}`;
    case T.In:
      return `expected 'in' after the loop variable '${previous.image}' but found ${found}`;
    case T.StringLiteral:
      return `expected a file name in quotes${after} but found ${found}`;
    case T.LParen:
      if (ruleName === 'fnDecl' || ruleName === 'forwardMember') {
        return `expected '(' and a parameter list${after} but found ${found}`;
      }
      return `expected '('${after} but found ${found}`;
    case T.Identifier:
      return `expected ${nameRole(ruleName)}${after} but found ${found}`;
    default:
      return `expected ${expected.LABEL ?? expected.name}${after} but found ${found}`;
  }
}

function nameRole(ruleName: string): string {
  switch (ruleName) {
    case 'layerDecl': return 'a layer name';
    case 'fnDecl': return 'a function name';
    case 'presetDecl': return 'a preset name';
    case 'paramMember': return 'a parameter name';
    case 'paramList': return 'a parameter name';
    case 'forStmt': return 'a loop variable';
    case 'layerCall': return 'a layer name';
    default: return 'a name';
  }
}

/** A '}' is missing: say which block it should close when the file ended or a new declaration began. */
function missingCloseCurly(actual: IToken, ruleName: string): string {
  const opener = innermostOpen(actual, T.LCurly);
  const owner = opener ? blockOwner(opener) : undefined;
  const startsDecl = [T.Import, T.Hyper, T.Preset, T.Layer, T.Model, T.Fn, T.Train].includes(actual.tokenType);
  if (actual.tokenType === EOF || startsDecl) {
    const where = owner ? ` to close ${owner}` : '';
    const line = opener?.startLine !== undefined ? ` (opened on line ${opener.startLine})` : '';
    return `expected '}'${where}${line} but found ${describe(actual)}`;
  }
  if (ruleName === 'layerDecl') return `expected ${MEMBER} or '}' but found ${describe(actual)}`;
  if (ruleName === 'entryBlock') return `expected an entry 'name = value' or '}' but found ${describe(actual)}${valueless(actual)}`;
  return `expected a statement or '}' but found ${describe(actual)}`;
}

/**
 * `micro_batch =` ending its line swallows the next entry's name as its value, and the error lands
 * on that entry's '=': say which line lost its value.
 */
function valueless(actual: IToken): string {
  const ident = tokenBefore(actual);
  const eq = ident && tokenBefore(ident);
  const name = eq && tokenBefore(eq);
  if (actual.tokenType !== T.Equals || ident?.tokenType !== T.Identifier || eq?.tokenType !== T.Equals || !name) return '';
  if ((eq.startLine ?? 0) >= (ident.startLine ?? 0)) return '';
  return `: line ${eq.startLine} ends with '${T.printable(name.image)} =' and no value, so '${T.printable(ident.image)}' on line ${ident.startLine} was read as its value`;
}

/** Words for the construct a '{' belongs to: "layer 'RMSNorm'", "the 'repeat' block", ... */
function blockOwner(open: IToken): string | undefined {
  const tokens = currentInput();
  for (let i = tokens.indexOf(open) - 1; i >= 0; i--) {
    const t = tokens[i].tokenType;
    if (t === T.LCurly || t === T.RCurly || t === T.Semicolon) return undefined;
    const name = tokens[i + 1]?.image;
    if (t === T.Layer) return `layer '${name}'`;
    if (t === T.Model) return `model '${name}'`;
    if (t === T.Fn) return `fn '${name}'`;
    if (t === T.Preset) return `preset '${name}'`;
    if (t === T.Forward) return "the 'forward' block";
    if (t === T.Repeat) return "the 'repeat' block";
    if (t === T.For) return "the 'for' loop";
    if (t === T.Hyper) return "the 'hyper' section";
    if (t === T.Train) return "the 'train' section";
  }
  return undefined;
}

/** The innermost bracket of kind `open` still unclosed before token `at` (brackets matched by kind). */
function innermostOpen(at: IToken, open: TokenType): IToken | undefined {
  const tokens = currentInput();
  const end = at.tokenType === EOF ? tokens.length : tokens.indexOf(at);
  const close = open === T.LParen ? T.RParen : open === T.LSquare ? T.RSquare : T.RCurly;
  const stack: IToken[] = [];
  for (let i = 0; i < (end < 0 ? tokens.length : end); i++) {
    if (tokens[i].tokenType === open) stack.push(tokens[i]);
    else if (tokens[i].tokenType === close) stack.pop();
  }
  return stack[stack.length - 1];
}

function tokenBefore(tok: IToken): IToken | undefined {
  const tokens = currentInput();
  const i = tokens.indexOf(tok);
  return i > 0 ? tokens[i - 1] : undefined;
}

/** How a found token reads in a message: `'}'`, `'foo'`, `the string "x"`, `the end of the file`. */
export function describe(tok: IToken | undefined): string {
  if (!tok || tok.tokenType === EOF) return 'the end of the file';
  const image = T.printable(tok.image.length > 30 ? tok.image.slice(0, 30) + '...' : tok.image);
  if (tok.tokenType === T.StringLiteral || tok.tokenType === T.UnterminatedString) return `the string ${image}`;
  return `'${image}'`;
}

/** The one parser instance (Chevrotain parsers are reusable: set `input`, call `program()`). */
export const parser = new MtParser();
currentInput = () => parser.input;
