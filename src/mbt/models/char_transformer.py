"""A nanoGPT-style character (byte) language model small enough for a CPU.

Pre-LayerNorm decoder blocks (causal self-attention through ``scaled_dot_product_attention``,
a 4x GELU MLP), learned position embeddings, a final LayerNorm and a linear head tied to the
token embedding, initialised N(0, 0.02) with the residual projections scaled by
1/sqrt(2 * layers) as in nanoGPT. No dropout: the line searches evaluate the same batch at
several step sizes and must see the same function each time.

``forward`` returns the logits flattened to (B*T, V): with the flattened targets of
:class:`mbt.data.text.TextLoader`, the image-classification loop, the MBT search and every
other closure compute per-character cross-entropy unchanged (``num_classes`` = V).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_CONTEXT", "CharTransformer", "char_transformer"]

MAX_CONTEXT = 256  # learned position embeddings: the longest context (data.block_size)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab: int = 256, *, layers: int = 4, heads: int = 4, dim: int = 128,
                 max_len: int = MAX_CONTEXT):
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight",
                                                                     "mlp.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.max_len:
            raise ValueError(f"context of {t} characters exceeds the model's {self.max_len}")
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x)).reshape(-1, self.head.out_features)


def char_transformer(num_classes: int = 256) -> CharTransformer:
    return CharTransformer(num_classes)
