// Diagnostics: every user-facing error in mtc is a Diagnostic with a source position,
// printed as `file:line:col: error: sentence`, the source line, and a caret under the column.
// Errors raised as MtcError reach the user without a stack trace (see runtime/cli.ts).

export interface SrcLoc {
  file: string;
  line: number; // 1-based
  col: number; // 1-based
  length?: number; // characters to underline (at least 1)
}

export interface Diagnostic {
  loc?: SrcLoc;
  message: string;
}

/** An error meant for the user: one or more diagnostics, no stack trace shown. */
export class MtcError extends Error {
  readonly diagnostics: Diagnostic[];
  constructor(diagnostics: Diagnostic[] | Diagnostic | string, loc?: SrcLoc) {
    const list: Diagnostic[] =
      typeof diagnostics === 'string'
        ? [{ message: diagnostics, loc }]
        : Array.isArray(diagnostics)
          ? diagnostics
          : [diagnostics];
    super(list.map((d) => d.message).join('\n'));
    this.name = 'MtcError';
    this.diagnostics = list;
  }
}

/** Source texts by file name, so diagnostics can quote the offending line. */
const sources = new Map<string, string>();

export function registerSource(file: string, text: string): void {
  sources.set(file, text);
}

export function formatDiagnostic(d: Diagnostic): string {
  if (!d.loc) return `error: ${d.message}`;
  const { file, line, col } = d.loc;
  const head = `${file}:${line}:${col}: error: ${d.message}`;
  const text = sources.get(file);
  if (text === undefined) return head;
  const srcLine = text.split(/\r?\n/)[line - 1];
  if (srcLine === undefined) return head;
  const gutter = `${line} | `;
  // Columns count UTF-16 units; the caret line pads by what a terminal shows for them: tabs
  // kept as tabs, wide (East Asian, emoji) characters two columns, combining marks none.
  const length = Math.max(1, Math.min(d.loc.length ?? 1, srcLine.length - col + 1));
  const under = padding(srcLine.slice(col - 1, col - 1 + length)).replace(/\t/g, '    ').length;
  const caret = ' '.repeat(gutter.length) + padding(srcLine.slice(0, col - 1)) + '^' + '~'.repeat(Math.max(1, under) - 1);
  return `${head}\n${gutter}${srcLine}\n${caret}`;
}

const WIDE = /[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]|\p{Extended_Pictographic}/u;

/** Blanks as wide on screen as `text`. */
function padding(text: string): string {
  let out = '';
  for (const ch of text) out += ch === '\t' ? '\t' : /\p{M}/u.test(ch) ? '' : WIDE.test(ch) ? '  ' : ' ';
  return out;
}

export function formatError(e: MtcError): string {
  return e.diagnostics.map(formatDiagnostic).join('\n');
}

/** Throw a single-diagnostic MtcError. */
export function fail(message: string, loc?: SrcLoc): never {
  throw new MtcError(message, loc);
}
