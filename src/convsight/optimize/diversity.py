"""Diversity (Olah et al. 2017, "Feature Visualization", section "Diversity"): several copies of a
target optimised together, penalised for looking alike at a layer.

Each copy's activations A (C channels x P positions) at the layer give a Gram matrix G = A A^T,
which describes *which features occur together* but not where; the penalty is the cosine
similarity of the copies' Gram matrices, so copies are pushed towards different feature mixtures
(different facets) rather than shifted versions of one picture. Images are grouped target-major:
copies ``0..K-1`` of target 0, then those of target 1, ...

>>> acts = torch.rand(6, 4, 5, 5)                        # 2 targets x 3 copies
>>> gram_similarity(acts, copies=3).shape                # one value per target
torch.Size([2])
"""

from __future__ import annotations

import torch


def normalized_grams(acts: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) activations -> (N, C*C) Gram matrices, each scaled to unit Frobenius norm."""
    flat = acts.flatten(2)                                    # (N, C, P)
    grams = flat @ flat.transpose(1, 2)                       # (N, C, C)
    grams = grams.flatten(1)
    return grams / grams.norm(dim=1, keepdim=True).clamp_min(1e-10)


def gram_similarity(acts: torch.Tensor, copies: int) -> torch.Tensor:
    """Per target: the sum over ordered pairs i != j of its copies of cos(G_i, G_j), divided by K.

    This is the penalty Lucid's ``diversity`` objective subtracts (there summed over the batch);
    it is 0 for a single copy and at most K - 1.
    """
    grams = normalized_grams(acts)
    n = grams.shape[0]
    if n % copies:
        raise ValueError(f"{n} images are not a whole number of groups of {copies} copies")
    groups = grams.view(n // copies, copies, -1)
    sims = groups @ groups.transpose(1, 2)                    # (T, K, K) cosines
    off = sims.sum(dim=(1, 2)) - sims.diagonal(dim1=1, dim2=2).sum(dim=1)
    return off / copies


def mean_pairwise_similarity(acts: torch.Tensor, copies: int) -> torch.Tensor:
    """Per target: the mean cosine similarity of its copies' Gram matrices over pairs (in [-1, 1])."""
    if copies < 2:
        return torch.zeros(acts.shape[0])
    return gram_similarity(acts, copies) / (copies - 1)
