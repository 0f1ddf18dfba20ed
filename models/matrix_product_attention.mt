# The 3D matrix-product attention configuration of the study (../shared/MODEL.md): the Matrix
# Thinker with Frobenius attention replaced by matrix-product attention, MultiProbeHead output.
# Hyperparameters, presets and the train section are inherited from matrix_thinker.mt (the
# defaults are its `tiny` size); only what the 3D run changes is set here.
import "matrix_thinker.mt"

# The study's 3D run: d 16, 12 blocks, 4 heads (hd = 4), K 16; the rest of matrix_thinker.mt's
# full preset (T 8, ctx 512, 2048 position rows, ...) is kept.
preset full {
  d = 16
  n_blocks = 12
  heads = 4
  probes = 16
}

model MatrixProductThinker {
  embed = MatrixEmbedding(vocab, pos_rows, ctx, d)
  blocks = [MatrixProductThinkingBlock(d, heads, dropout); n_blocks]
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
