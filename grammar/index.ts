// The front end's entry points: source text -> AST, or one MtcError listing every syntax error.
// Imports are not resolved here; the compiler does that.
import { readFileSync } from 'node:fs';
import type { IRecognitionException, IToken } from 'chevrotain';
import { MtcError, registerSource, type Diagnostic, type SrcLoc } from '../compiler/diagnostics.ts';
import type { Program } from './ast.ts';
import { LCurly, LParen, LSquare, Minus, RCurly, RParen, RSquare, tokenize } from './lexer.ts';
import { parser } from './parser.ts';
import { buildAst } from './visitor.ts';

export type { Program } from './ast.ts';

/** Chevrotain's recognition errors also carry the token before the offending one (untyped in its .d.ts). */
type ParseError = IRecognitionException & { previousToken?: IToken };

/** Parse the text of one .mt file. Throws an MtcError (and only that) on any syntax error. */
export function parseSource(text: string, file: string): Program {
  registerSource(file, text);
  try {
    return parseUnguarded(text, file);
  } catch (e) {
    if (e instanceof MtcError) throw e;
    // Last resort: never let an internal exception or a stack trace reach the user.
    const loc: SrcLoc = { file, line: 1, col: 1, length: 1 };
    if (e instanceof RangeError) throw new MtcError('the source is nested too deeply to parse', loc);
    throw new MtcError(`internal error while parsing: ${e instanceof Error ? e.message : String(e)}`, loc);
  }
}

/** Read and parse a .mt file; a file that cannot be read is an MtcError naming the path. */
export function parseFile(path: string): Program {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (code ?? 'read error');
    throw new MtcError(`cannot read '${path}': ${why}`);
  }
  return parseSource(text, path);
}

/**
 * The deepest nesting of brackets (and runs of unary minus) a source may have. Far beyond what
 * anyone writes by hand; it keeps the recursive parser (and its error recovery, which slows down
 * with depth) well inside the stack, whatever thread it runs on.
 */
export const MAX_NESTING = 200;

function parseUnguarded(text: string, file: string): Program {
  const { tokens, problems } = tokenize(text);
  const deep = tooDeep(tokens);
  if (deep) throw new MtcError('the source is nested too deeply to parse', { file, line: deep.startLine ?? 1, col: deep.startColumn ?? 1, length: 1 });
  parser.input = tokens;
  const cst = parser.program();

  const diagnostics: Diagnostic[] = problems.map((p) => ({
    loc: { file, line: p.line, col: p.col, length: p.length },
    message: p.message,
  }));
  diagnostics.push(...parserDiagnostics(parser.errors, tokens, file, new Set(problems.map((p) => p.line))));

  if (diagnostics.length > 0) {
    diagnostics.sort((a, b) => a.loc!.line - b.loc!.line || a.loc!.col - b.loc!.col);
    throw new MtcError(diagnostics);
  }
  return buildAst(cst, file);
}

/** The first token nested deeper than MAX_NESTING, if any. */
function tooDeep(tokens: IToken[]): IToken | undefined {
  let depth = 0;
  let minuses = 0;
  for (const t of tokens) {
    const type = t.tokenType;
    if (type === LParen || type === LSquare || type === LCurly) depth++;
    else if (type === RParen || type === RSquare || type === RCurly) depth = Math.max(0, depth - 1);
    minuses = type === Minus ? minuses + 1 : 0;
    if (depth + minuses > MAX_NESTING) return t;
  }
  return undefined;
}

/**
 * Turn Chevrotain's recognition errors into diagnostics (their messages already are sentences,
 * see parser.ts), dropping likely follow-up errors: after an error, recovery skips or invents
 * tokens, and an error whose token or preceding token lies on a line that already has an error
 * is almost always a consequence of the first one rather than a new mistake.
 */
function parserDiagnostics(
  errors: ParseError[],
  tokens: IToken[],
  file: string,
  errorLines: Set<number>,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const err of errors) {
    const loc = errorLoc(err, tokens, file);
    const prevLine = err.previousToken?.startLine;
    if (errorLines.has(loc.line) || (prevLine !== undefined && errorLines.has(prevLine))) continue;
    errorLines.add(loc.line);
    out.push({ loc, message: err.message });
  }
  return out;
}

/** The error's token; at the end of the input (or for an inserted token), the last real token. */
function errorLoc(err: ParseError, tokens: IToken[], file: string): SrcLoc {
  const positioned = (t: IToken | undefined): t is IToken =>
    t !== undefined && Number.isFinite(t.startLine) && Number.isFinite(t.startColumn);
  const tok = [err.token, err.previousToken, tokens[tokens.length - 1]].find(positioned);
  if (!tok) return { file, line: 1, col: 1, length: 1 };
  return { file, line: tok.startLine!, col: tok.startColumn!, length: Math.max(1, tok.image.length) };
}
