# The standard library of matrix-token layers: the pieces of ../shared/MODEL.md, written
# with the compiler's generic primitives. Every token is an n×n matrix; leading axes are
# batch and sequence.

# MatrixRMSNorm: M / sqrt(mean_ij M_ij² + 1e-6) ⊙ g
layer RMSNorm(n) {
  param g: [n, n] = ones
  forward(M) {
    return M * rsqrt(mean(M * M, [-2, -1]) + 1e-6) * g
  }
}

# RowThenCol projection: silu(A @ X) @ B
layer RowThenCol(n) {
  param A: [n, n] = eye + normal(0.02)
  param B: [n, n] = eye + normal(0.02)
  forward(X) {
    return silu(A @ X) @ B
  }
}

# Frobenius attention: heads own row blocks; score <Q_s^h, K_t^h>_F / sqrt(hd·n), causal.
layer FrobeniusAttention(n, heads, p) {
  norm = RMSNorm(n)
  q = RowThenCol(n)
  k = RowThenCol(n)
  v = RowThenCol(n)
  o = RowThenCol(n)
  forward(M) {
    Mn = norm(M)
    # [B, L, n, n] -> [B, L, heads, hd·n] -> [B, heads, L, hd·n]: the last 2 axes are split
    # into heads, each owning hd consecutive rows flattened row-major.
    Q = transpose(reshape(q(Mn), [..., heads, n * n / heads], 2), 1, 2)
    K = transpose(reshape(k(Mn), [..., heads, n * n / heads], 2), 1, 2)
    V = transpose(reshape(v(Mn), [..., heads, n * n / heads], 2), 1, 2)
    S = (Q @ transpose(K)) / sqrt(n * n / heads)
    A = dropout(softmax(causal_mask(S)), p)
    out = reshape(transpose(A @ V, 1, 2), [..., n, n], 2)
    return M + o(out)
  }
}

# silu(gate(X)) ⊙ value(X), projected up and scaled: the Δ and Γ of the thinking layer.
layer GatedUpdate(n) {
  gate = RowThenCol(n)
  value = RowThenCol(n)
  up = RowThenCol(n)
  forward(Mn, s) {
    return up(silu(gate(Mn)) * value(Mn)) * s
  }
}

# Multiplicative thinking layer: (I + Δ) Mn (I + Γ), a gated rank-1 write, both gated.
layer ThinkingLayer(n, p) {
  norm = RMSNorm(n)
  delta = GatedUpdate(n)
  gamma = GatedUpdate(n)
  param scale: [] = 0.1
  param key_col: [n, 1] = normal(0.02)
  param val_col: [n, 1] = normal(0.02)
  param W_m: [n, n] = normal(0.02)
  param b_m: [] = -2
  param W_w: [n, n] = normal(0.02)
  param b_w: [] = -2
  forward(M) {
    Mn = norm(M)
    s = clamp(scale, 0.01, 0.5)
    I = eye(n)
    M_mult = (I + delta(Mn, s)) @ Mn @ (I + gamma(Mn, s))
    M_write = (Mn @ val_col) @ transpose(Mn @ key_col)
    g_m = sigmoid(sum(W_m * Mn, [-2, -1]) + b_m)
    g_w = sigmoid(sum(W_w * Mn, [-2, -1]) + b_w)
    return M + dropout(g_m * (M_mult - Mn) + g_w * M_write, p)
  }
}

layer ThinkingBlock(n, heads, p) {
  attn = FrobeniusAttention(n, heads, p)
  think = ThinkingLayer(n, p)
  forward(M) {
    return think(attn(M))
  }
}

# Rank ≤ 2 start: u_tok v_tokᵀ + 0.1 · p_pos q_posᵀ
layer MatrixEmbedding(vocab, pos_rows, ctx, n) {
  param u_tok: [vocab, n] = normal(1)
  param v_tok: [vocab, n] = normal(1)
  param p_pos: [pos_rows, n] = normal(1)
  param q_pos: [pos_rows, n] = normal(1)
  forward(tokens) {
    u = reshape(gather(u_tok, tokens), [..., n, 1], 1)     # [B, L, n, 1]
    v = reshape(gather(v_tok, tokens), [..., 1, n], 1)     # [B, L, 1, n]
    pp = reshape(slice(p_pos, 0, 0, ctx), [..., n, 1], 1)  # [L, n, 1]
    qp = reshape(slice(q_pos, 0, 0, ctx), [..., 1, n], 1)  # [L, 1, n]
    return u @ v + 0.1 * (pp @ qp)
  }
}

# MultiProbeHead: p_k = u_kᵀ M v_k, logits = W_out p
layer MultiProbeHead(n, probes, vocab) {
  param U: [probes, n] = normal(1 / sqrt(n))
  param V: [probes, n] = normal(1 / sqrt(n))
  param W_out: [vocab, probes] = uniform(1 / sqrt(probes))
  forward(M) {
    pr = sum((U @ M) * V, [-1])
    return reshape(W_out @ pr, [..., vocab])
  }
}

# Vector-collapse head: vec_i = Σ_j W_ij M_ij, logits = W_out vec
layer VectorCollapseHead(n, vocab) {
  param W: [n, n] = normal(0.02)
  param W_out: [vocab, n] = uniform(1 / sqrt(n))
  forward(M) {
    vec = sum(W * M, [-1])
    return reshape(W_out @ vec, [..., vocab])
  }
}

# 3D matrix-product attention: per head, row blocks Q_s, K_t, V_t ∈ R^{hd×n} (hd = n / heads),
# S_st = Q_s K_tᵀ (hd×hd), score tr(S_st) / sqrt(hd), causal softmax, out_s = Σ_t a_st S_st V_t.
# Computed without the L²·hd² pair matrices (MODEL.md, Numerics): tr(Q_s K_tᵀ) = ⟨Q_s, K_t⟩_F,
# and Σ_t a_st Q_s K_tᵀ V_t = Q_s @ Σ_t a_st (K_tᵀ V_t). The largest tensors are the per-token
# products K_tᵀ V_t and their causal mixtures, [B, heads, L, n·n], and the scores [B, heads, L, L].
layer MatrixProductAttention(n, heads, p) {
  norm = RMSNorm(n)
  q = RowThenCol(n)
  k = RowThenCol(n)
  v = RowThenCol(n)
  o = RowThenCol(n)
  forward(M) {
    Mn = norm(M)
    # [B, L, n, n] -> [B, L, heads, hd, n] -> [B, heads, L, hd, n]: head h owns rows h·hd … h·hd+hd−1
    Q = transpose(reshape(q(Mn), [..., heads, n / heads, n], 2), 1, 2)
    K = transpose(reshape(k(Mn), [..., heads, n / heads, n], 2), 1, 2)
    V = transpose(reshape(v(Mn), [..., heads, n / heads, n], 2), 1, 2)
    # tr(Q_s K_tᵀ) = ⟨Q_s, K_t⟩_F: the blocks flattened to [B, heads, L, hd·n], then one product
    Qf = reshape(Q, [..., n * n / heads], 2)                 # [B, heads, L, hd·n]
    Kf = reshape(K, [..., n * n / heads], 2)                 # [B, heads, L, hd·n]
    S = (Qf @ transpose(Kf)) / sqrt(n / heads)               # [B, heads, L, L]
    A = dropout(softmax(causal_mask(S)), p)                  # [B, heads, L, L]
    KV = reshape(transpose(K) @ V, [..., n * n], 2)          # K_tᵀ V_t: [B, heads, L, n, n] -> [B, heads, L, n·n]
    W = reshape(A @ KV, [..., n, n], 1)                      # Σ_t a_st K_tᵀ V_t: [B, heads, L, n·n] -> [B, heads, L, n, n]
    out = reshape(transpose(Q @ W, 1, 2), [..., n, n], 3)    # [B, heads, L, hd, n] -> [B, L, heads, hd, n] -> [B, L, n, n]
    return M + o(out)
  }
}

# The thinking block of the 3D-attention configuration.
layer MatrixProductThinkingBlock(n, heads, p) {
  attn = MatrixProductAttention(n, heads, p)
  think = ThinkingLayer(n, p)
  forward(M) {
    return think(attn(M))
  }
}
