# The vector-collapse configuration of the study (../shared/MODEL.md): the Matrix Thinker with
# its MultiProbeHead replaced by the vector-collapse head. Everything else — hyperparameters,
# the `tiny` and `full` presets, the train section — is inherited from matrix_thinker.mt
# (an imported file's sections are defaults; this file would override them by name). Only
# matrix_thinker.mt's model is not inherited: the model compiled is the one below.
import "matrix_thinker.mt"

model VectorCollapseThinker {
  embed = MatrixEmbedding(vocab, pos_rows, ctx, d)
  blocks = [ThinkingBlock(d, heads, dropout); n_blocks]
  norm_final = RMSNorm(d)
  head = VectorCollapseHead(d, vocab)
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
