# The Matrix Thinker (../shared/MODEL.md): Frobenius attention + MultiProbeHead.
import "stdlib.mt"

hyper {
  d = 32            # matrix side
  heads = 8         # attention heads; hd = d / heads rows per head
  n_blocks = 8      # distinct thinking blocks, each with its own weights
  T = 8             # iterations of the whole block stack, shared weights
  probes = 32       # K of the MultiProbeHead
  dropout = 0.1
  vocab = 256       # byte tokens
  ctx = 512
  pos_rows = 512
  batch = 8
  steps = 3000
  lr = 3e-4
  warmup = 300
}

preset full {
  batch = 768       # sequences per step, as the study
  pos_rows = 2048   # the study's position tables
}

preset tiny {
  d = 8
  heads = 2
  n_blocks = 2
  T = 2
  probes = 16
  ctx = 64
  pos_rows = 64
  batch = 16
  steps = 300
  lr = 3e-3
  warmup = 30
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
