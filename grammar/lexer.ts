// The tokens of the .mt language and the lexer that produces them.
//
// Besides Chevrotain's own lexing errors (characters no token matches), `tokenize` checks the
// spelling of number and string tokens. Malformed numbers (`1e`, `1.2.3`, `3x`) and unterminated
// strings are still lexed as one NumberLiteral / StringLiteral token each, so the parser sees a
// well-formed token stream and does not pile follow-up errors on top of the lexical one.
import { createToken, Lexer, type CustomPatternMatcherFunc, type IToken, type TokenType } from 'chevrotain';

// ---- skipped --------------------------------------------------------------------------------

export const WhiteSpace = createToken({
  name: 'WhiteSpace',
  pattern: /[ \t\r\n\f\v\uFEFF]+/,
  group: Lexer.SKIPPED,
  line_breaks: true,
});

export const Comment = createToken({ name: 'Comment', pattern: /#[^\n\r]*/, group: Lexer.SKIPPED });

// ---- names and keywords ---------------------------------------------------------------------

export const Identifier = createToken({ name: 'Identifier', pattern: /[A-Za-z_][A-Za-z0-9_]*/ });

// `longer_alt` makes `inputs` an Identifier rather than the keyword `in` followed by `puts`.
const keyword = (word: string, name: string): TokenType =>
  createToken({ name, pattern: new RegExp(word), longer_alt: Identifier, label: `'${word}'` });

export const Import = keyword('import', 'Import');
export const Hyper = keyword('hyper', 'Hyper');
export const Preset = keyword('preset', 'Preset');
export const Layer = keyword('layer', 'Layer');
export const Model = keyword('model', 'Model');
export const Fn = keyword('fn', 'Fn');
export const Train = keyword('train', 'Train');
export const Param = keyword('param', 'Param');
export const Forward = keyword('forward', 'Forward');
export const Return = keyword('return', 'Return');
export const Repeat = keyword('repeat', 'Repeat');
export const For = keyword('for', 'For');
export const In = keyword('in', 'In');
export const Observe = keyword('observe', 'Observe');

export const keywords = [
  Import, Hyper, Preset, Layer, Model, Fn, Train, Param, Forward, Return, Repeat, For, In, Observe,
];

// ---- literals -------------------------------------------------------------------------------

/**
 * Numbers are matched generously: a digit followed by any run of letters, digits, `_` and `.`,
 * plus a sign right after an `e`/`E` when a digit follows it (`3e-4`). The strict spelling
 * (NUMBER_SPELLING) is checked afterwards so that `1.2.3` is one "malformed number" error.
 */
const matchNumber: CustomPatternMatcherFunc = (text, offset) => {
  if (!isDigit(text.charCodeAt(offset))) return null;
  let end = offset + 1;
  for (;;) {
    const c = text[end];
    if (c !== undefined && /[A-Za-z0-9_.]/.test(c)) {
      // Do not swallow the `...` of a list such as `[2...]`: stop before a run of two dots.
      if (c === '.' && text[end + 1] === '.') break;
      end++;
    } else if ((c === '+' || c === '-') && /[eE]/.test(text[end - 1]) && isDigit(text.charCodeAt(end + 1))) {
      end++;
    } else break;
  }
  const result = [text.slice(offset, end)] as unknown as RegExpExecArray;
  result.index = offset;
  return result;
};

export const NumberLiteral = createToken({
  name: 'NumberLiteral',
  pattern: { exec: matchNumber },
  line_breaks: false,
  start_chars_hint: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  label: 'a number',
});

/** The accepted spelling of a number: `3`, `0.02`, `1e-6`, `2.5E+3`. */
export const NUMBER_SPELLING = /^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

export const StringLiteral = createToken({
  name: 'StringLiteral',
  pattern: /"(?:[^"\\\n\r]|\\[^\n\r])*"/,
  label: 'a string',
});

/** A string cut off by the end of its line; it counts as a StringLiteral for the parser. */
export const UnterminatedString = createToken({
  name: 'UnterminatedString',
  pattern: /"(?:[^"\\\n\r]|\\[^\n\r])*\\?/,
  categories: [StringLiteral],
  label: 'a string',
});

// ---- punctuation ----------------------------------------------------------------------------

const punct = (name: string, pattern: RegExp, text: string, categories?: TokenType[]): TokenType =>
  createToken({ name, pattern, label: `'${text}'`, ...(categories ? { categories } : {}) });

/** Categories used by the parser for binary operators of one precedence level. */
export const AdditiveOperator = createToken({ name: 'AdditiveOperator', pattern: Lexer.NA });
export const MultiplicativeOperator = createToken({ name: 'MultiplicativeOperator', pattern: Lexer.NA });

export const LCurly = punct('LCurly', /\{/, '{');
export const RCurly = punct('RCurly', /\}/, '}');
export const LParen = punct('LParen', /\(/, '(');
export const RParen = punct('RParen', /\)/, ')');
export const LSquare = punct('LSquare', /\[/, '[');
export const RSquare = punct('RSquare', /\]/, ']');
export const Comma = punct('Comma', /,/, ',');
export const Semicolon = punct('Semicolon', /;/, ';');
export const Colon = punct('Colon', /:/, ':');
export const Equals = punct('Equals', /=/, '=');
export const Ellipsis = punct('Ellipsis', /\.\.\./, '...');
export const Plus = punct('Plus', /\+/, '+', [AdditiveOperator]);
export const Minus = punct('Minus', /-/, '-', [AdditiveOperator]);
export const Star = punct('Star', /\*/, '*', [MultiplicativeOperator]);
export const Slash = punct('Slash', /\//, '/', [MultiplicativeOperator]);
export const At = punct('At', /@/, '@', [MultiplicativeOperator]);

/** All token types, in matching order: keywords before Identifier, StringLiteral before its unterminated form. */
export const allTokens: TokenType[] = [
  WhiteSpace,
  Comment,
  ...keywords,
  Identifier,
  NumberLiteral,
  StringLiteral,
  UnterminatedString,
  AdditiveOperator,
  MultiplicativeOperator,
  LCurly, RCurly, LParen, RParen, LSquare, RSquare,
  Comma, Semicolon, Colon, Equals, Ellipsis,
  Plus, Minus, Star, Slash, At,
];

export const mtLexer = new Lexer(allTokens, { positionTracking: 'full', ensureOptimizations: false });

// ---- tokenize: lexing plus spelling checks ---------------------------------------------------

/** A lexical problem, positioned 1-based; index.ts turns it into a Diagnostic. */
export interface LexProblem {
  line: number;
  col: number;
  length: number;
  message: string;
}

export function tokenize(text: string): { tokens: IToken[]; problems: LexProblem[] } {
  const result = mtLexer.tokenize(text);
  const problems: LexProblem[] = result.errors.map((e) => {
    const bad = text.substr(e.offset, e.length);
    return {
      line: e.line ?? 1,
      col: e.column ?? 1,
      length: Math.max(1, e.length),
      message: describeUnexpected(bad),
    };
  });
  for (const tok of result.tokens) {
    if (tok.tokenType === NumberLiteral) {
      if (!NUMBER_SPELLING.test(tok.image)) {
        problems.push(at(tok, `malformed number '${tok.image}'`));
      } else if (!Number.isFinite(Number(tok.image))) {
        problems.push(at(tok, `number '${tok.image}' is too large`));
      }
    } else if (tok.tokenType === UnterminatedString) {
      problems.push(at(tok, 'unterminated string'));
    } else if (tok.tokenType === StringLiteral) {
      // Escapes pair up left to right (`\\q` is a backslash and a q). Strings never span lines,
      // so a character's column is the token's column plus its index.
      for (const m of tok.image.matchAll(/\\(.)/g)) {
        if ('"\\nt'.includes(m[1])) continue;
        problems.push({
          line: tok.startLine ?? 1,
          col: (tok.startColumn ?? 1) + (m.index ?? 0),
          length: 2,
          message: `unknown escape sequence '${printable(m[0])}' in string`,
        });
        break;
      }
    }
  }
  return { tokens: result.tokens, problems };
}

/** The value of a (well-formed) string token: quotes removed, escapes resolved. */
export function unquote(image: string): string {
  const body = image.endsWith('"') && image.length >= 2 ? image.slice(1, -1) : image.slice(1);
  return body.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
}

function at(tok: IToken, message: string): LexProblem {
  return { line: tok.startLine ?? 1, col: tok.startColumn ?? 1, length: tok.image.length, message };
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** `unexpected character '$'`, with control and invisible characters spelled as U+XXXX. */
function describeUnexpected(bad: string): string {
  const chars = [...bad];
  if (chars.length <= 1) return `unexpected character ${quoteChar(bad)}`;
  const shown = chars.length > 20 ? chars.slice(0, 20).join('') + '...' : bad;
  return `unexpected characters '${printable(shown)}'`;
}

function quoteChar(c: string): string {
  const code = c.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f || (code >= 0x80 && code <= 0xa0) || code === 0xfffd) {
    return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return `'${c}'`;
}

/** Replace control characters so a message stays on one line. */
export function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
