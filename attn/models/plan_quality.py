"""What a plan costs in quality: the drift of a model's sentence embeddings against the
unmodified model, on the sentences attn ships (attn.models.sentences).

Embeddings are MiniLM's own: the mean of the last hidden state over the tokens the attention
mask keeps, L2-normalised (as sentence-transformers pools all-MiniLM-L6-v2). Drift is
- mean_cosine: the mean over sentences of cos(plan embedding, base embedding), 1 for no change;
- spearman: Spearman's rank correlation between the two models' pairwise cosine similarities
  (the upper triangles of the two similarity matrices): 1 when every ranking of neighbours that
  retrieval would produce survives, whatever the absolute similarities do.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from attn.models.sentences import SENTENCES
from attn.models.sources import LoadedModel

QUALITY_CONVENTION = ("sentence embeddings: mean of the last hidden state over unpadded tokens, "
                      "L2-normalised (sentence-transformers' pooling of all-MiniLM-L6-v2); mean_cosine: "
                      "mean over sentences of cos(plan, base); spearman: rank correlation of the "
                      "pairwise cosine similarities (upper triangles), ties averaged")


def sentence_embeddings(loaded: LoadedModel, sentences: Sequence[str] = SENTENCES,
                        max_tokens: int = 128) -> torch.Tensor:
    """(n, d) float32 embeddings, one row per sentence, unit length."""
    batch = loaded.tokenizer(list(sentences), padding=True, truncation=True, max_length=max_tokens,
                             return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if loaded.vocab_mod is not None:
        ids = ids % loaded.vocab_mod
    with loaded.lock, torch.no_grad():
        hidden = loaded.model(input_ids=ids.to(loaded.device),
                              attention_mask=mask.to(loaded.device)).last_hidden_state.float().cpu()
    weights = mask.unsqueeze(-1).float()
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; equal values share the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    result = np.empty(len(x))
    result[order] = np.repeat(first + (counts - 1) / 2 + 1, counts)
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's on the ranks. NaN when either side is constant."""
    ra, rb = ranks(a), ranks(b)
    if len(ra) != len(rb) or len(ra) < 2:
        raise ValueError(f"spearman needs two samples of the same length >= 2, got {len(ra)} and {len(rb)}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def embedding_drift(base: torch.Tensor, planned: torch.Tensor) -> dict:
    """Drift of `planned` (n, d) embeddings from `base` (n, d); both are normalised here."""
    if base.shape != planned.shape or base.ndim != 2 or base.shape[0] < 3:
        raise ValueError(f"drift needs two (n, d) embeddings with n >= 3, got {tuple(base.shape)} "
                         f"and {tuple(planned.shape)}")
    a = torch.nn.functional.normalize(base.double(), dim=-1)
    b = torch.nn.functional.normalize(planned.double(), dim=-1)
    cosines = (a * b).sum(-1)
    upper = torch.triu_indices(len(a), len(a), offset=1)
    sim_a, sim_b = (a @ a.T)[upper[0], upper[1]], (b @ b.T)[upper[0], upper[1]]
    return {"sentences": len(a), "pairs": int(upper.shape[1]),
            "mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min()),
            "spearman": spearman(sim_a.numpy(), sim_b.numpy()),
            "convention": QUALITY_CONVENTION}


def plan_drift(base: LoadedModel, planned: LoadedModel, sentences: Sequence[str] = SENTENCES,
               max_tokens: int = 128) -> dict:
    """embedding_drift of the planned model against the base model on `sentences`."""
    return embedding_drift(sentence_embeddings(base, sentences, max_tokens),
                           sentence_embeddings(planned, sentences, max_tokens))
