#!/usr/bin/python3
"""PyTorch reference of the Matrix Thinker (see /work/shared/MODEL.md), trained on GSM8K bytes.

An independent implementation of the math in MODEL.md, used as a speed/quality baseline and
to size presets. Runs with Debian's python3-torch (1.13): attention is written out.

    /usr/bin/python3 bench/torch_matrix_thinker.py --count-only --d 32 --heads 8 --blocks 8 --K 32 --pos-rows 512
    /usr/bin/python3 bench/torch_matrix_thinker.py --d 8 --heads 2 --blocks 2 --T 2 --K 16 --ctx 64 --batch 16 --steps 300

Prints one line per log step (step, lr, loss, val bpb, tokens/s) and a final JSON line.

With --bench it measures training speed only (what `npm run bench` compares mtc against):
no data files and no evaluation, byte windows drawn at random, a constant learning rate,
--warmup-steps untimed steps, then --rounds rounds of wall-clock time over --steps steps
(synchronised with the device at both ends, losses read back once per round; the fastest round
counts), and one JSON line:

    /usr/bin/python3 bench/torch_matrix_thinker.py --bench --d 8 --heads 2 --blocks 2 --T 2 --K 32 --ctx 64 --batch 16 --steps 10
"""
import argparse
import json
import math
import os
import resource
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede `import torch` (see gpu.md)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

DATA_DIR = "/work/shared/data/gsm8k"


# ----------------------------------------------------------------------------- model pieces
class MatrixRMSNorm(nn.Module):
    """norm(M) = M / sqrt(mean_ij M_ij^2 + 1e-6) * g, g in R^{d x d} init ones."""

    def __init__(self, d):
        super().__init__()
        self.g = nn.Parameter(torch.ones(d, d))

    def forward(self, M):
        ms = M.pow(2).mean(dim=(-2, -1), keepdim=True)
        return M * torch.rsqrt(ms + 1e-6) * self.g


class RowThenCol(nn.Module):
    """P(X) = silu(A @ X) @ B, A, B init I + 0.02 N(0,1), no bias."""

    def __init__(self, d):
        super().__init__()
        self.A = nn.Parameter(torch.eye(d) + 0.02 * torch.randn(d, d))
        self.B = nn.Parameter(torch.eye(d) + 0.02 * torch.randn(d, d))

    def forward(self, X):
        return F.silu(torch.matmul(self.A, X)) @ self.B


def _multi_rowthencol(projs, X):
    """Apply several RowThenCol projections to the same X at once: returns [..., n, d, d]."""
    A = torch.stack([p.A for p in projs])  # [n, d, d]
    B = torch.stack([p.B for p in projs])
    return torch.matmul(F.silu(torch.matmul(A, X.unsqueeze(-3))), B)


class FrobeniusAttention(nn.Module):
    def __init__(self, d, heads, dropout):
        super().__init__()
        assert d % heads == 0, "heads must divide d"
        self.d, self.H, self.hd = d, heads, d // heads
        self.norm = MatrixRMSNorm(d)
        self.q, self.k, self.v, self.o = (RowThenCol(d) for _ in range(4))
        self.dropout = dropout

    def forward(self, M):
        Bsz, L, d, _ = M.shape
        H, hd = self.H, self.hd
        Mn = self.norm(M)
        qkv = _multi_rowthencol([self.q, self.k, self.v], Mn)  # [B, L, 3, d, d]
        # head h owns rows h*hd .. h*hd+hd-1; flatten that hd x d block row-major
        qkv = qkv.reshape(Bsz, L, 3, H, hd * d).permute(2, 0, 3, 1, 4)  # [3, B, H, L, hd*d]
        Q, K, V = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(Q, K.transpose(-2, -1)) / math.sqrt(hd * d)  # [B, H, L, L]
        causal = torch.ones(L, L, dtype=torch.bool, device=M.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        a = torch.softmax(scores, dim=-1)
        a = F.dropout(a, self.dropout, self.training)  # inverted dropout
        out = torch.matmul(a, V)  # [B, H, L, hd*d]
        out = out.permute(0, 2, 1, 3).reshape(Bsz, L, d, d)  # reassemble heads into rows
        return M + self.o(out)


class ThinkingLayer(nn.Module):
    def __init__(self, d, dropout):
        super().__init__()
        self.d = d
        self.norm = MatrixRMSNorm(d)
        self.d_gate, self.d_value, self.d_up = (RowThenCol(d) for _ in range(3))  # Delta
        self.g_gate, self.g_value, self.g_up = (RowThenCol(d) for _ in range(3))  # Gamma
        self.scale = nn.Parameter(torch.tensor(0.1))
        self.key_col = nn.Parameter(0.02 * torch.randn(d, 1))
        self.val_col = nn.Parameter(0.02 * torch.randn(d, 1))
        self.W_m = nn.Parameter(0.02 * torch.randn(d, d))
        self.b_m = nn.Parameter(torch.tensor(-2.0))
        self.W_w = nn.Parameter(0.02 * torch.randn(d, d))
        self.b_w = nn.Parameter(torch.tensor(-2.0))
        self.dropout = dropout

    def forward(self, M):
        Mn = self.norm(M)
        s = torch.clamp(self.scale, 0.01, 0.5)
        gv = _multi_rowthencol([self.d_gate, self.d_value, self.g_gate, self.g_value], Mn)
        hD = F.silu(gv[..., 0, :, :]) * gv[..., 1, :, :]
        hG = F.silu(gv[..., 2, :, :]) * gv[..., 3, :, :]
        Delta = self.d_up(hD) * s
        Gamma = self.g_up(hG) * s
        # M_mult = (I + Delta) @ Mn @ (I + Gamma); M_mult - Mn = Delta Mn + (Mn + Delta Mn) Gamma
        DMn = Delta @ Mn
        mult_minus = DMn + (Mn + DMn) @ Gamma
        kk = Mn @ self.key_col  # [B, L, d, 1]
        vv = Mn @ self.val_col
        M_write = vv @ kk.transpose(-2, -1)  # v k^T
        g_m = torch.sigmoid((Mn * self.W_m).sum(dim=(-2, -1), keepdim=True) + self.b_m)
        g_w = torch.sigmoid((Mn * self.W_w).sum(dim=(-2, -1), keepdim=True) + self.b_w)
        upd = g_m * mult_minus + g_w * M_write
        return M + F.dropout(upd, self.dropout, self.training)


class ThinkingBlock(nn.Module):
    def __init__(self, d, heads, dropout):
        super().__init__()
        self.attn = FrobeniusAttention(d, heads, dropout)
        self.think = ThinkingLayer(d, dropout)

    def forward(self, M):
        return self.think(self.attn(M))


class MultiProbeHead(nn.Module):
    def __init__(self, d, K, vocab):
        super().__init__()
        self.U = nn.Parameter(torch.randn(K, d) / math.sqrt(d))
        self.V = nn.Parameter(torch.randn(K, d) / math.sqrt(d))
        self.W_out = nn.Parameter(torch.empty(vocab, K).uniform_(-1 / math.sqrt(K), 1 / math.sqrt(K)))

    def forward(self, M):
        # p_k = u_k^T M v_k
        MV = torch.matmul(M, self.V.t())  # [B, L, d, K]: column k is M v_k
        p = (MV * self.U.t()).sum(dim=-2)  # [B, L, K]
        return p @ self.W_out.t()


class VectorCollapseHead(nn.Module):
    def __init__(self, d, vocab):
        super().__init__()
        self.W = nn.Parameter(0.02 * torch.randn(d, d))
        self.W_out = nn.Parameter(torch.empty(vocab, d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))

    def forward(self, M):
        vec = (M * self.W).sum(dim=-1)  # vec_i = sum_j W_ij M_ij
        return vec @ self.W_out.t()


class MatrixThinker(nn.Module):
    def __init__(self, vocab=256, d=32, heads=8, blocks=8, T=8, K=32, pos_rows=512,
                 dropout=0.1, head="multiprobe"):
        super().__init__()
        self.d, self.T, self.pos_rows = d, T, pos_rows
        self.tok_u = nn.Parameter(torch.randn(vocab, d))
        self.tok_v = nn.Parameter(torch.randn(vocab, d))
        self.pos_p = nn.Parameter(torch.randn(pos_rows, d))
        self.pos_q = nn.Parameter(torch.randn(pos_rows, d))
        self.blocks = nn.ModuleList(ThinkingBlock(d, heads, dropout) for _ in range(blocks))
        self.norm_final = MatrixRMSNorm(d)
        self.head = MultiProbeHead(d, K, vocab) if head == "multiprobe" else VectorCollapseHead(d, vocab)

    def embed(self, idx):
        L = idx.shape[1]
        assert L <= self.pos_rows
        u, v = self.tok_u[idx], self.tok_v[idx]  # [B, L, d]
        p, q = self.pos_p[:L], self.pos_q[:L]  # [L, d]
        return u.unsqueeze(-1) * v.unsqueeze(-2) + 0.1 * (p.unsqueeze(-1) * q.unsqueeze(-2))

    def forward(self, idx, T=None, collect=False):
        M = self.embed(idx)
        states = []
        for _ in range(self.T if T is None else T):
            for blk in self.blocks:
                M = blk(M)
            if collect:
                states.append(M)
        logits = self.head(self.norm_final(M))
        return (logits, states) if collect else logits


def effective_rank(M):
    """Roy & Vetterli erank of each d x d matrix: [..., d, d] -> [...]."""
    s = torch.linalg.svdvals(M.double()).clamp_min(1e-10)
    p = s / s.sum(-1, keepdim=True)
    return torch.exp(-(p * p.log()).sum(-1))


def flops_per_token_fwd(d, heads, blocks, T, K, ctx, vocab):
    """Approximate forward multiply-add FLOPs (2 per MAC) per token, matmuls only."""
    d3 = 2 * d ** 3
    per_block = (4 * 2 * d3          # attention q,k,v,o: 2 products each
                 + 2 * d * d * ctx   # scores + weighted sum (causal average ~ctx/2, 2 products)
                 + 6 * 2 * d3        # 6 thinking projections
                 + 2 * d3)           # (I+Delta) Mn (I+Gamma)
    head = 2 * K * d * d + 2 * vocab * K
    return blocks * T * per_block + head


# ----------------------------------------------------------------------------- data
def load_bytes(path):
    recs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            recs.append("\n".join(v for v in obj.values() if isinstance(v, str)))
    return torch.tensor(list("\n\n".join(recs).encode("utf-8")), dtype=torch.long)


def windows(stream, ctx):
    n = stream.numel() // (ctx + 1)
    return stream[: n * (ctx + 1)].view(n, ctx + 1)


@torch.no_grad()
def evaluate(model, test_windows, n_windows, batch, with_rank=False):
    model.eval()
    W = test_windows[:n_windows]
    tot, cnt = 0.0, 0
    ranks = None
    for i in range(0, W.shape[0], batch):
        x, y = W[i:i + batch, :-1], W[i:i + batch, 1:]
        if with_rank:
            logits, states = model(x, collect=True)
            r = torch.stack([effective_rank(S).mean() for S in states]) * x.shape[0]
            ranks = r if ranks is None else ranks + r
        else:
            logits = model(x)
        tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        cnt += y.numel()
    model.train()
    ce = tot / cnt
    out = {"ce": ce, "bpb": ce / math.log(2)}
    if with_rank:
        out["rank"] = [round(float(v), 4) for v in ranks / W.shape[0]]
    return out


def lr_at(step, peak, warmup, total):
    if step < warmup:
        return peak * step / warmup  # lr = 0 on the very first step
    prog = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * prog))


# ----------------------------------------------------------------------------- speed benchmark
def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    return torch.device(name)


def peak_rss_bytes():
    """This process's peak resident memory. /proc's VmHWM starts afresh at exec; getrusage's
    ru_maxrss does not (a child of a large process inherits its parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def bench(args, pos_rows):
    """Training steps/s of the model on random byte windows: the protocol of `npm run bench`."""
    dev = pick_device(args.device)
    rss0 = peak_rss_bytes()
    torch.manual_seed(args.seed)
    model = MatrixThinker(args.vocab, args.d, args.heads, args.blocks, args.T, args.K, pos_rows,
                          args.dropout, args.head).to(dev)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=args.wd)
    g = torch.Generator().manual_seed(args.seed + 1)
    total = args.warmup_steps + args.rounds * args.steps
    data = torch.randint(0, args.vocab, (total, args.batch, args.ctx + 1), generator=g).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def step(i):
        x, y = data[i, :, :-1], data[i, :, 1:]
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        return loss.detach()

    losses = [step(i) for i in range(args.warmup_steps)]
    sync()
    kernels = None
    if dev.type == "cuda" and args.count_kernels:
        # CUDA kernels (and memcpy/memset) launched by one training step, outside the timed steps
        try:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                losses.append(step(0))
                sync()
            kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA) or None
        except Exception as e:  # the profiler is a nicety: the timing does not depend on it
            print(f"kernel count unavailable: {e}", file=sys.stderr)
    round_s, cpu_s = [], []
    for r in range(args.rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        base = args.warmup_steps + r * args.steps
        timed = [step(base + i) for i in range(args.steps)]
        losses += [float(v) for v in torch.stack(timed).cpu()]  # reads back: synchronises
        sync()
        round_s.append((time.perf_counter() - t0) / args.steps)
        cpu_s.append((time.process_time() - c0) / args.steps)  # every thread of the process
    step_s = min(round_s)
    vals = [float(v) for v in losses]
    if dev.type == "cuda":
        peak, peak_kind = torch.cuda.max_memory_allocated(dev), "cuda max_memory_allocated"
    else:
        peak, peak_kind = peak_rss_bytes() - rss0, "growth of the process's peak RSS (CPU: no device memory)"
    tokens = args.batch * args.ctx
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "threads": torch.get_num_threads(), "params": n_params,
        "config": {k: getattr(args, k) for k in ("d", "heads", "blocks", "T", "K", "ctx", "batch", "vocab", "dropout",
                                                  "lr", "wd", "clip", "seed", "head")} | {"pos_rows": pos_rows},
        "warmup_steps": args.warmup_steps, "steps": args.steps, "rounds": args.rounds,
        "step_s": step_s, "round_step_s": round_s, "cpu_step_s": min(cpu_s), "tokens_per_step": tokens, "tokens_per_s": tokens / step_s,
        "kernels_per_step": kernels, "peak_bytes": peak, "peak_kind": peak_kind,
        "loss_first": vals[0], "loss_last": vals[-1], "finite": all(math.isfinite(v) for v in vals),
    }), flush=True)


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--T", type=int, default=2)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--pos-rows", type=int, default=None, help="rows of the position tables (default: ctx)")
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--head", choices=["multiprobe", "vector"], default="multiprobe")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-windows", type=int, default=64, help="first N non-overlapping test windows")
    ap.add_argument("--eval-batch", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=100, help="0: only at init and at the end")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", action="store_true", help="report val-time erank per iteration at evals")
    ap.add_argument("--count-only", action="store_true")
    ap.add_argument("--save", default=None, help="save the final state_dict here (.pt)")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--bench", action="store_true", help="measure training speed only (see above)")
    ap.add_argument("--warmup-steps", type=int, default=2, help="--bench: untimed steps first")
    ap.add_argument("--rounds", type=int, default=1, help="--bench: timed rounds of --steps steps; the fastest counts")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="--bench: where to run")
    ap.add_argument("--count-kernels", action=argparse.BooleanOptionalAction, default=True,
                    help="--bench on CUDA: count the kernels of one step with the profiler")
    args = ap.parse_args()
    pos_rows = args.pos_rows or args.ctx

    torch.set_num_threads(args.threads)
    if args.bench:
        return bench(args, pos_rows)
    torch.manual_seed(args.seed)
    model = MatrixThinker(args.vocab, args.d, args.heads, args.blocks, args.T, args.K, pos_rows,
                          args.dropout, args.head)
    n_params = sum(p.numel() for p in model.parameters())
    if args.count_only:
        print(json.dumps({"params": n_params, "d": args.d, "heads": args.heads, "blocks": args.blocks,
                          "K": args.K, "vocab": args.vocab, "pos_rows": pos_rows, "head": args.head}))
        return

    train_w = windows(load_bytes(os.path.join(args.data_dir, "train.jsonl")), args.ctx)
    test_w = windows(load_bytes(os.path.join(args.data_dir, "test.jsonl")), args.ctx)
    fpt = flops_per_token_fwd(args.d, args.heads, args.blocks, args.T, args.K, args.ctx, args.vocab)
    print(f"params {n_params}  train windows {train_w.shape[0]}  test windows {test_w.shape[0]}  "
          f"~train GFLOP/step {3 * fpt * args.batch * args.ctx / 1e9:.4f}", flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-8,
                            weight_decay=args.wd)
    g = torch.Generator().manual_seed(args.seed + 1)
    perm, pos = torch.randperm(train_w.shape[0], generator=g), 0

    ev0 = evaluate(model, test_w, args.eval_windows, args.eval_batch, args.rank)
    print(f"step 0 val bpb {ev0['bpb']:.4f}" + (f" rank {ev0['rank']}" if args.rank else ""), flush=True)
    history = [{"step": 0, **ev0}]

    train_time, t_log, tok_log, tok_total = 0.0, 0.0, 0, 0
    loss_acc, loss_n = 0.0, 0
    t_wall = time.time()
    for step in range(args.steps):
        if pos + args.batch > perm.numel():
            perm, pos = torch.randperm(train_w.shape[0], generator=g), 0
        b = train_w[perm[pos:pos + args.batch]]
        pos += args.batch
        x, y = b[:, :-1], b[:, 1:]
        lr = lr_at(step, args.lr, args.warmup, args.steps)
        for pg in opt.param_groups:
            pg["lr"] = lr
        t0 = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        lv = loss.item()
        dt = time.perf_counter() - t0
        train_time += dt
        t_log += dt
        tok_log += x.numel()
        tok_total += x.numel()
        loss_acc += lv
        loss_n += 1
        if not math.isfinite(lv):
            print(f"step {step + 1} non-finite loss", flush=True)
            break
        done = step + 1
        do_eval = done == args.steps or (args.eval_every and done % args.eval_every == 0)
        if done % args.log_every == 0 or do_eval:
            msg = (f"step {done} lr {lr:.2e} loss {loss_acc / loss_n:.4f} gnorm {float(gn):.3f} "
                   f"tok/s {tok_log / t_log:.0f}")
            if do_eval:
                ev = evaluate(model, test_w, args.eval_windows, args.eval_batch, args.rank)
                history.append({"step": done, **ev})
                msg += f" val bpb {ev['bpb']:.4f}" + (f" rank {ev['rank']}" if args.rank else "")
            print(msg, flush=True)
            loss_acc, loss_n, t_log, tok_log = 0.0, 0, 0.0, 0

    if args.save:
        torch.save(model.state_dict(), args.save)
    final = history[-1]
    print(json.dumps({
        "config": {k: getattr(args, k) for k in ("d", "heads", "blocks", "T", "K", "ctx", "batch", "steps",
                                                  "lr", "warmup", "dropout", "seed", "eval_windows", "head")},
        "params": n_params, "init_bpb": round(ev0["bpb"], 4), "final_bpb": round(final["bpb"], 4),
        "final_step": final["step"], "train_tokens_per_s": round(tok_total / max(train_time, 1e-9), 1),
        "train_s": round(train_time, 2), "wall_s": round(time.time() - t_wall, 2),
        "train_gflop_per_step": round(3 * fpt * args.batch * args.ctx / 1e9, 5),
        "history": [{"step": h["step"], "bpb": round(h["bpb"], 4), **({"rank": h["rank"]} if "rank" in h else {})}
                    for h in history],
    }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
