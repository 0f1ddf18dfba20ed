// Central finite differences of a graph's loss on the float64 reference interpreter, against
// the gradients `differentiate` put in graph.grads. Shared by test/vjp.test.ts (one primitive
// per graph) and test/layers.test.ts (one stdlib layer per model).
import { interpret, type InterpEnv } from '../../compiler/interp.ts';
import type { Graph } from '../../compiler/ir.ts';

export interface FdOptions {
  /** The scalar loss node; its gradient seeds the backward graph. */
  loss: number;
  /** Parameter indices to check (others are held fixed). */
  params: number[];
  /** Step of the central difference. */
  h: number;
  /** An entry passes when |autodiff − fd| ≤ atol + rtol·|fd|. */
  atol: number;
  rtol: number;
  /** Entries of parameter `pi` to check; all of them when absent. */
  entries?: (pi: number, n: number) => Iterable<number>;
}

export interface FdResult {
  checked: number;
  /** max over entries of |autodiff − fd| / max(|fd|, 1e-3): relative, absolute for vanishing gradients. */
  worst: number;
  /** max over entries of |autodiff − fd|. */
  worstAbs: number;
  /** One line per failing entry. */
  failures: string[];
  /** Gradient of every parameter (index = parameter index), from the backward graph. */
  grads: Float64Array[];
}

/** Checks graph.grads of the chosen parameters; env.params must be Float64Arrays (perturbed in place, restored). */
export function fdCheck(graph: Graph, env: InterpEnv & { params: Float64Array[] }, o: FdOptions): FdResult {
  if (!graph.grads) throw new Error('fdCheck: the graph has not been differentiated');
  const values = interpret(graph, env);
  const grads = graph.grads.map((id) => values[id]);
  const lossAt = (): number => interpret(graph, env, o.loss)[o.loss][0];
  const base = lossAt();
  if (!Number.isFinite(base)) throw new Error(`fdCheck: loss is ${base}`);
  let checked = 0;
  let worst = 0;
  let worstAbs = 0;
  const failures: string[] = [];
  for (const pi of o.params) {
    const p = env.params[pi];
    for (const k of o.entries?.(pi, p.length) ?? p.keys()) {
      const old = p[k];
      p[k] = old + o.h;
      const up = lossAt();
      p[k] = old - o.h;
      const down = lossAt();
      p[k] = old;
      const fd = (up - down) / (2 * o.h);
      const ad = grads[pi][k];
      const err = Math.abs(ad - fd);
      worst = Math.max(worst, err / Math.max(Math.abs(fd), 1e-3));
      worstAbs = Math.max(worstAbs, err);
      // `!(err <= tol)` also catches NaN
      if (!(err <= o.atol + o.rtol * Math.abs(fd)))
        failures.push(`${graph.params[pi].path}[${k}]: autodiff ${ad} vs finite difference ${fd} (|diff| ${err.toExponential(2)})`);
      checked++;
    }
  }
  return { checked, worst, worstAbs, failures, grads };
}
