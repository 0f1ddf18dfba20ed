// The optimizer step as three kernels over the whole parameter arena (all parameters in one
// buffer, see compiler/plan.ts): squared-gradient partial sums, their total (the global L2
// norm for clipping), and AdamW with the clip folded in. Bindings are listed per kernel.
import type { Kernel } from '../kernel.ts';

export const OPT_UNIFORM_BYTES = 32;
const WG = 256;
const CHUNK = WG * 16; // elements per workgroup in the partial sums

function grid(groups: number): [number, number, number] {
  const x = Math.min(groups, 65535);
  return [x, Math.ceil(groups / x), 1];
}

/** Number of partial sums for an arena of n floats. */
export const partialCount = (n: number): number => Math.ceil(n / CHUNK);

export function optimizerKernels(n: number): { partial: Kernel; total: Kernel; adamw: Kernel } {
  const parts = partialCount(n);
  const partial: Kernel = {
    name: `gradnorm_partial_${n}`,
    usesStep: false,
    workgroups: grid(parts),
    summary: `sum of squared gradients, ${CHUNK} per workgroup, ${parts} partial sums`,
    code: `// gradnorm_partial: sum of squared gradients over chunks of ${CHUNK} of the ${n}-float arena.
// bindings: 0 grads (read), 1 partial sums (write)
@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
var<workgroup> acc: array<f32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let group = wg.y * nwg.x + wg.x;
  var s = 0.0;
  if (group < ${parts}u) {
    let base = group * ${CHUNK}u;
    for (var i = lid; i < ${CHUNK}u; i += ${WG}u) {
      let j = base + i;
      if (j < ${n}u) {
        let g = grads[j];
        s += g * g;
      }
    }
  }
  acc[lid] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) {
      acc[lid] += acc[lid + w];
    }
    workgroupBarrier();
  }
  if (lid == 0u && group < ${parts}u) {
    partials[group] = acc[0];
  }
}
`,
  };
  const total: Kernel = {
    name: `gradnorm_total_${parts}`,
    usesStep: false,
    workgroups: [1, 1, 1],
    summary: `global gradient L2 norm from ${parts} partial sums`,
    code: `// gradnorm_total: the global L2 norm of the gradients from ${parts} partial sums.
// bindings: 0 partial sums (read), 1 norm (write, one float)
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> norm: array<f32>;
var<workgroup> acc: array<f32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < ${parts}u; i += ${WG}u) {
    s += partials[i];
  }
  acc[lid] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) {
      acc[lid] += acc[lid + w];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    norm[0] = sqrt(acc[0]);
  }
}
`,
  };
  const adamw: Kernel = {
    name: `adamw_${n}`,
    usesStep: false,
    workgroups: grid(Math.ceil(n / WG)),
    summary: `AdamW (decoupled weight decay) with global-norm clipping over ${n} floats`,
    code: `// adamw: clip by the global norm, then AdamW as PyTorch computes it:
//   p *= 1 - lr·wd;  m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;
//   p -= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - β_i^t
// bindings: 0 params, 1 grads (read), 2 m, 3 v, 4 norm (read), 5 OptParams (uniform)
struct OptParams {
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  weight_decay: f32,
  clip: f32,
  bc1: f32,
  bc2: f32,
}
@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> norm: array<f32>;
@group(0) @binding(5) var<uniform> opt: OptParams;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * ${WG}u + gid.x;
  if (i >= ${n}u) {
    return;
  }
  let scale = min(1.0, opt.clip / (norm[0] + 1e-6));
  let g = grads[i] * scale;
  let mi = opt.beta1 * m[i] + (1.0 - opt.beta1) * g;
  let vi = opt.beta2 * v[i] + (1.0 - opt.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  let p = params[i] * (1.0 - opt.lr * opt.weight_decay);
  params[i] = p - (opt.lr / opt.bc1) * mi / (sqrt(vi) / sqrt(opt.bc2) + opt.eps);
}
`,
  };
  return { partial, total, adamw };
}

/** Bytes of the AccumParams uniform: first, last, scale and padding. */
export const ACCUM_UNIFORM_BYTES = 16;

/**
 * Gradient accumulation over the micro-batches of one optimizer step (train setting
 * micro_batch): after micro-batch k's backward pass, a running sum of its gradients; after the
 * last one, their mean in the grads arena, where clipping and AdamW read it. Each micro-batch's
 * loss is a mean over its tokens, so the mean of the micro-batch gradients is the gradient of
 * the whole batch's mean loss.
 */
export function accumulateKernel(n: number): Kernel {
  return {
    name: `accumulate_${n}`,
    usesStep: false,
    workgroups: grid(Math.ceil(n / WG)),
    summary: `gradient accumulation over micro-batches, ${n} floats`,
    code: `// accumulate: the gradients of the micro-batches of one optimizer step, after each backward pass:
//   s = (first ? 0 : acc) + grads;  last: grads = s * scale (scale = 1 / micro-batches), else acc = s
// bindings: 0 grads, 1 acc (the running sum), 2 AccumParams (uniform)
struct AccumParams {
  first: u32,
  last: u32,
  scale: f32,
  pad: u32,
}
@group(0) @binding(0) var<storage, read_write> grads: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<uniform> accum: AccumParams;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * ${WG}u + gid.x;
  if (i >= ${n}u) {
    return;
  }
  let s = select(acc[i], 0.0, accum.first == 1u) + grads[i];
  if (accum.last == 1u) {
    grads[i] = s * accum.scale;
  } else {
    acc[i] = s;
  }
}
`,
  };
}
