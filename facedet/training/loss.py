"""MultiBox loss with hard negative mining (SSD, Liu et al., ECCV 2016, as S3FD and
RNNPool train with it; docs/training.md, "Loss").

* positives: priors with label 1 (see :mod:`facedet.training.match`);
* localisation: smooth-L1 (beta = 1) over the positives, summed;
* confidence: cross-entropy over the positives plus, per image, the
  ``min(ratio * num_pos, num_priors - 1)`` background priors (label 0) with the
  highest cross-entropy (ties: lower prior index first); an image without
  positives contributes no negatives; priors labelled -1 (near an ignored face)
  are never used;
* both sums are divided by the number of positives in the batch (by the batch
  size if there are none).

The reference ranked negatives with positives' losses set to zero among them;
facedet ranks the background priors only, so an image gets exactly
``min(ratio * num_pos, num_background)`` negatives.  Cross-entropy uses
``log_softmax``, numerically equivalent to the reference's stabilised
log-sum-exp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["multibox_loss", "NEG_POS_RATIO"]

NEG_POS_RATIO = 3


def multibox_loss(conf: Tensor, loc: Tensor, labels: Tensor, loc_targets: Tensor, neg_pos_ratio: int = NEG_POS_RATIO) -> tuple[Tensor, Tensor, int]:
    """Compute ``(loss_l, loss_c, num_pos)``.

    Args:
        conf: ``Tensor[B, P, 2]`` logits (background, face).
        loc: ``Tensor[B, P, 4]`` predicted offsets.
        labels: ``int64 Tensor[B, P]`` in {-1, 0, 1}.
        loc_targets: ``Tensor[B, P, 4]`` encoded targets (used where label 1).
    Returns:
        normalised localisation loss, normalised confidence loss, total positives.
    """
    B, P, _ = conf.shape
    pos = labels > 0
    num_pos = pos.sum(1)  # [B]
    total_pos = int(num_pos.sum())
    loss_l = F.smooth_l1_loss(loc[pos], loc_targets[pos].to(loc.dtype), beta=1.0, reduction="sum")
    logp = F.log_softmax(conf.float(), dim=-1)
    ce = -logp.gather(2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)  # [B, P]
    with torch.no_grad():
        mining = torch.where(labels == 0, ce, torch.full_like(ce, float("-inf")))
        order = torch.sort(mining, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(P, device=conf.device).expand(B, P))
        num_neg = torch.clamp(neg_pos_ratio * num_pos, max=P - 1)
        neg = (rank < num_neg[:, None]) & (labels == 0)
    loss_c = ce[pos | neg].sum()
    norm = float(total_pos) if total_pos > 0 else float(B)
    return loss_l / norm, loss_c / norm, total_pos
