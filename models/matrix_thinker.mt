# The Matrix Thinker (../shared/MODEL.md): Frobenius attention + MultiProbeHead.
import "stdlib.mt"

# The defaults are the `tiny` configuration: every piece of the architecture, at a size that
# trains in minutes on two CPU cores under software Vulkan. `--preset full` is the study's.
hyper {
  d = 8             # matrix side
  heads = 2         # attention heads; hd = d / heads rows per head
  n_blocks = 2      # distinct thinking blocks, each with its own weights
  T = 2             # iterations of the whole block stack, shared weights
  probes = 32       # K of the MultiProbeHead
  dropout = 0.1     # attention probabilities and thinking-layer update; off at eval
  vocab = 256       # byte tokens
  ctx = 64          # sequence length
  pos_rows = ctx    # rows of the position tables (>= ctx)
  batch = 16        # sequences per step
  micro_batch = batch  # sequences per device step: a smaller divisor of batch accumulates gradients
  steps = 600
  lr = 3e-2         # peak learning rate
  warmup = 30       # linear warmup steps, then cosine to 0
  checkpoint = 0    # 1: recompute each block in the backward pass (less memory, more compute)
}

preset tiny {
  # the defaults above
}

# The study's configuration, exactly (MODEL.md, "the full preset").
preset full {
  d = 32
  heads = 8
  n_blocks = 8
  T = 8
  probes = 32
  ctx = 512
  pos_rows = 2048
  batch = 768
  micro_batch = 16  # 48 micro-batches of 16 a step, gradients accumulated (fits one device step)
  steps = 3000
  lr = 3e-4
  warmup = 300
  checkpoint = 1    # per-block gradient checkpointing, as the study trained
}

model MatrixThinker {
  embed = MatrixEmbedding(vocab, pos_rows, ctx, d)
  blocks = [ThinkingBlock(d, heads, dropout); n_blocks]
  norm_final = RMSNorm(d)
  head = MultiProbeHead(d, probes, vocab)
  forward(tokens) {
    M = embed(tokens)
    repeat T {
      for blk in blocks {
        M = blk(M)
      }
      observe residual = M
    }
    return head(norm_final(M))
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
  checkpoint = checkpoint
}
