// Parameter initialisation: each parameter is the sum of its InitTerms (`eye + normal(0.02)`).
// One Rng(seed) is drawn in parameter order, elements row-major, terms in source order, and
// only random terms draw; so the same seed gives the same weights on every machine (V8's
// Math.log/sin/cos are its own software implementations, identical across CPUs).
import type { InitTerm, ParamInfo } from '../compiler/ir.ts';
import { numel } from '../compiler/ir.ts';
import { MtcError } from '../compiler/diagnostics.ts';
import { Rng } from '../compiler/rng.ts';

export function initParams(params: ParamInfo[], seed: number): Float32Array[] {
  const rng = new Rng(seed);
  return params.map((p) => {
    // Accumulate the terms in float64 and round once to float32.
    const acc = new Float64Array(numel(p.shape));
    for (const term of p.init) addTerm(acc, p, term, rng);
    return Float32Array.from(acc);
  });
}

function addTerm(acc: Float64Array, p: ParamInfo, term: InitTerm, rng: Rng): void {
  switch (term.kind) {
    case 'const':
      for (let i = 0; i < acc.length; i++) acc[i] += term.value;
      return;
    case 'eye': {
      // Identity on the last two axes, repeated over the leading ones: element i sits at
      // row floor(i / cols) % rows, column i % cols.
      if (p.shape.length < 2) {
        throw new MtcError(`eye initialises a matrix, but ${p.path} has shape [${p.shape.join(', ')}]`, p.loc);
      }
      const rows = p.shape[p.shape.length - 2];
      const cols = p.shape[p.shape.length - 1];
      for (let i = 0; i < acc.length; i++) {
        if (Math.floor(i / cols) % rows === i % cols) acc[i] += 1;
      }
      return;
    }
    case 'normal':
      for (let i = 0; i < acc.length; i++) acc[i] += term.std * rng.normal();
      return;
    case 'uniform':
      for (let i = 0; i < acc.length; i++) acc[i] += term.bound * (2 * rng.next() - 1);
      return;
    default: {
      const never: never = term;
      throw new Error(`unknown init term ${JSON.stringify(never)}`);
    }
  }
}
