# A plain vector transformer (GPT-style: pre-norm, causal multi-head attention, SiLU MLP).
# The second model of mtc: every token is a vector, not a matrix, and it shares no layer with
# the Matrix Thinker; it compiles and trains through the same path, with no model-specific
# TypeScript anywhere.

hyper {
  width = 64        # model width
  heads = 4         # attention heads
  n_layers = 2
  mlp = 4           # MLP hidden width = mlp · width
  dropout = 0.1
  vocab = 256       # byte tokens
  ctx = 64
  batch = 16
  micro_batch = batch  # sequences per device step: a smaller divisor of batch accumulates gradients
  steps = 300
  lr = 3e-3
  warmup = 30
}

preset tiny {
  # the defaults above
}

preset full {
  width = 256
  heads = 8
  n_layers = 6
  ctx = 256
  batch = 64
  steps = 3000
  lr = 6e-4
  warmup = 300
}

# RMSNorm over the last axis: x / sqrt(mean x² + 1e-6) ⊙ g
layer VectorRMSNorm(n) {
  param g: [n] = ones
  forward(x) {
    return x * rsqrt(mean(x * x, [-1]) + 1e-6) * g
  }
}

layer Linear(n_in, n_out) {
  param W: [n_in, n_out] = normal(1 / sqrt(n_in))
  param b: [n_out] = zeros
  forward(x) {
    return x @ W + b
  }
}

layer CausalSelfAttention(n, heads, p) {
  q = Linear(n, n)
  k = Linear(n, n)
  v = Linear(n, n)
  o = Linear(n, n)
  forward(x) {
    # [B, L, n] -> [B, L, heads, n / heads] -> [B, heads, L, n / heads]
    Q = transpose(reshape(q(x), [..., heads, n / heads], 1), 1, 2)
    K = transpose(reshape(k(x), [..., heads, n / heads], 1), 1, 2)
    V = transpose(reshape(v(x), [..., heads, n / heads], 1), 1, 2)
    A = dropout(softmax(causal_mask((Q @ transpose(K)) / sqrt(n / heads))), p)
    return o(reshape(transpose(A @ V, 1, 2), [..., n], 2))
  }
}

layer Block(n, heads, mlp, p) {
  norm1 = VectorRMSNorm(n)
  attn = CausalSelfAttention(n, heads, p)
  norm2 = VectorRMSNorm(n)
  up = Linear(n, mlp * n)
  down = Linear(mlp * n, n)
  forward(x) {
    x = x + attn(norm1(x))
    return x + dropout(down(silu(up(norm2(x)))), p)
  }
}

model VectorTransformer {
  param wte: [vocab, width] = normal(0.02)
  param wpe: [ctx, width] = normal(0.02)
  blocks = [Block(width, heads, mlp, dropout); n_layers]
  norm_f = VectorRMSNorm(width)
  head = Linear(width, vocab)
  forward(tokens) {
    x = gather(wte, tokens) + wpe
    for blk in blocks {
      x = blk(x)
    }
    observe final = x
    return head(norm_f(x))
  }
}

train {
  data = "sotu"
  tokenizer = "bytes"
  ctx = ctx
  batch = batch
  micro_batch = micro_batch
  steps = steps
  loss = cross_entropy
  optimizer = adamw(lr = lr, betas = [0.9, 0.98], eps = 1e-8, weight_decay = 0.01)
  schedule = warmup_cosine(warmup = warmup)
  clip = 1.0
  log_every = 10
  eval_every = 50
  eval_batches = 4
  val_fraction = 0.05
  seed = 0
}
