// The text form of an evaluation (runtime/eval.ts) for the terminal: the loss line, the rank
// trajectory per iteration, and the tables of the --vary and --project-rank studies.
import type { EvalResult, Measured } from './eval.ts';

const f = (x: number, digits = 4): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const traj = (xs: number[] | undefined): string => (xs ? xs.map((x) => f(x, 3)).join(' ') : '-');

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

export function printEval(r: EvalResult): string {
  const out = [`loss ${r.loss.toFixed(6)} nats/token  bpb ${r.bpb.toFixed(6)}  ppl ${r.ppl.toFixed(4)}  (${r.windows} windows, ${r.tokens} tokens, ${r.backend})`];
  if (r.erank) {
    out.push(`val erank per iteration:           ${traj(r.erank)}`);
    out.push(`val token-collapse per iteration:  ${traj(r.collapse)}`);
  }
  if (r.variants?.length) {
    const name = Object.keys(r.variants[0].hypers)[0];
    out.push('', table([name, 'loss', 'bpb', 'ppl', 'erank per iteration'], r.variants.map((v: Measured & { hypers: Record<string, number> }) => [String(v.hypers[name]), f(v.loss), f(v.bpb), f(v.ppl, 2), traj(v.erank)])));
  }
  if (r.ablation?.length) {
    out.push('', table(['rank k', 'loss', 'bpb', 'ppl', 'erank'], r.ablation.map((a) => [a.k === null ? 'none' : String(a.k), f(a.loss), f(a.bpb), f(a.ppl, 2), f(a.erank, 3)])));
  }
  return out.join('\n');
}
