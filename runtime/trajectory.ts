// Rank trajectories (../shared/MODEL.md, "Metrics"): the effective rank of the token matrices
// and the token-collapse ratio after each iteration t = 1..T of the model, measured on the
// values of an `observe` point (one tensor [B, L, d, d] per iteration) read from the device.
//
// Effective rank: per batch and per iteration, `positions` random (sequence, position) pairs
// of the batch (a fresh draw for every iteration, every position when the batch has fewer),
// mean erank over them; then the mean over batches. `positions = 'all'` is the deterministic
// form. Token-collapse ratio (Dong et al. 2021): per sequence, the composite-norm residual of
// its L tokens (each flattened to d² values) around their mean; the mean over sequences.
import { MtcError } from '../compiler/diagnostics.ts';
import type { Graph } from '../compiler/ir.ts';
import { pcgHash, Rng } from '../compiler/rng.ts';
import { erank, tokenCollapseRatio } from './rank.ts';

/** One number per iteration t = 1..T. */
export interface Trajectory {
  erank: number[];
  collapse: number[];
}

export class TrajectoryMeter {
  private readonly L: number;
  private readonly rows: number;
  private readonly cols: number;
  private readonly erankSums: number[];
  private readonly collapseSums: number[];
  private batches = 0;
  private sequences = 0;

  /**
   * @param shape the observed tensor's shape, [B, L, rows, cols] (B and L may be one axis
   *   each; the last two are the token matrix)
   * @param iterations T, how many observations each batch brings
   * @param positions positions drawn per batch and iteration for the erank, or 'all'
   * @param seed the draw of positions (same seed, same positions)
   */
  constructor(
    readonly shape: readonly number[],
    readonly iterations: number,
    readonly positions: number | 'all',
    readonly seed: number,
  ) {
    if (shape.length !== 4) throw new MtcError(`rank metrics need token matrices observed as [batch, seq, rows, cols]; the observation has shape [${shape.join(', ')}]`);
    [, this.L, this.rows, this.cols] = shape;
    this.erankSums = new Array<number>(iterations).fill(0);
    this.collapseSums = new Array<number>(iterations).fill(0);
  }

  /**
   * Adds one batch: `values[t]` is the observation after iteration t+1, [B, L, rows, cols].
   * Only the first `sequences` sequences count (a padded last batch).
   */
  add(values: ArrayLike<number>[], sequences = this.shape[0]): void {
    if (values.length !== this.iterations) throw new Error(`internal: ${values.length} observations for ${this.iterations} iterations`);
    const { L, rows, cols } = this;
    const size = rows * cols;
    const total = sequences * L;
    for (let t = 0; t < this.iterations; t++) {
      const x = values[t];
      const picks = this.positions === 'all' || this.positions >= total ? null : this.draw(total, this.positions, t);
      let sum = 0;
      if (picks) for (const p of picks) sum += erank(x, rows, cols, p * size);
      else for (let p = 0; p < total; p++) sum += erank(x, rows, cols, p * size);
      this.erankSums[t] += sum / (picks ? picks.length : total);
      for (let s = 0; s < sequences; s++) this.collapseSums[t] += tokenCollapseRatio(x, L, size, s * L * size);
    }
    this.batches++;
    this.sequences += sequences;
  }

  result(): Trajectory {
    return {
      erank: this.erankSums.map((s) => s / this.batches),
      collapse: this.collapseSums.map((s) => s / this.sequences),
    };
  }

  /** `count` distinct positions of [0, total), drawn from (seed, batch, iteration). */
  private draw(total: number, count: number, t: number): Uint32Array {
    const rng = new Rng(pcgHash((pcgHash((this.seed >>> 0) + this.batches) + t) >>> 0));
    const perm = new Uint32Array(total);
    for (let i = 0; i < total; i++) perm[i] = i;
    for (let i = 0; i < count; i++) {
      const j = i + rng.int(total - i);
      const tmp = perm[i];
      perm[i] = perm[j];
      perm[j] = tmp;
    }
    return perm.subarray(0, count);
  }
}

/** Positions per eval batch and iteration for the erank (the study's protocol). */
export const RANK_POSITIONS = 512;

/** The observation point of the token matrices ("residual"), when the model has one. */
export function rankObservation(g: Graph, name = 'residual'): { name: string; shape: number[]; iterations: number } | undefined {
  const ids = Object.hasOwn(g.observations, name) ? g.observations[name] : undefined;
  if (!ids || ids.length === 0) return undefined;
  const shape = g.nodes[ids[0]].shape;
  if (shape.length !== 4) return undefined;
  return { name, shape, iterations: ids.length };
}
