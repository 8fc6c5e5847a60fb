"""LIIR's total objective: L4 + 0.5 L8 + L_compact.

Reference: shasha521/LIIR_pytorch@21c7ba5 `main_dis.py:215-248`
(`compute_lphoto`) with `--usemomen --compact` (the released 72.2 model);
`--semantic` without the queue is L8 with no negatives.
"""

import jax

from corrjax.losses import liir_compactness
from corrjax.losses import liir_inter
from corrjax.losses import liir_reconstruction


def liir_loss(*, feats: dict[str, jax.Array], ref_labels: jax.Array,
              target_labels: jax.Array, negatives: jax.Array | None = None,
              negatives_mask: jax.Array | None = None,
              intra_radius: int = 6, inter_radius: int = 3,
              inter_weight: float = liir_inter.WEIGHT,
              compact_weight: float = 1.0
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The three terms on one batch of frame pairs.

  Args:
    feats: `models.liir.pair_features` output ("target_match",
      "reference_match", "target_semantic", "reference_keys").
    ref_labels: float [B, H, W, 1] the reference's dropped channel.
    target_labels: float [B, H, W, 1] the target's dropped channel.
    negatives: float [N, h8, w8, C8] queue keys, or None (no queue yet).
    negatives_mask: bool [B, N] (`liir_inter.negative_mask`).
    intra_radius: stride-4 window radius (6).
    inter_radius: stride-8 window radius (3).
    inter_weight: weight of L8 (0.5; 0: L8 off).
    compact_weight: weight of L_compact (1; 0: off).

  Returns:
    (loss, terms): terms "intra", "inter", "compact" (unweighted),
    "compact_fraction", "intra_mass", "negatives".
  """
  loss4, aux4 = liir_reconstruction.intra_reconstruction(
      query=feats["target_match"], refs=feats["reference_match"][:, None],
      ref_labels=ref_labels[:, None], target_labels=target_labels,
      radius=intra_radius)
  terms = {"intra": loss4}
  loss = loss4
  if compact_weight:
    compact, extra = liir_compactness.compactness_loss(aux4["probs"])
    terms.update(compact=compact, **extra)
    loss = loss + compact_weight * compact
  if inter_weight:
    if negatives is None:
      b = ref_labels.shape[0]
      c = feats["reference_keys"].shape[-1]
      negatives = jax.numpy.zeros((0, *feats["reference_keys"].shape[1:3], c))
      negatives_mask = jax.numpy.zeros((b, 0), bool)
    loss8, aux8 = liir_inter.inter_reconstruction(
        query=feats["target_semantic"], keys=feats["reference_keys"],
        ref_labels=ref_labels, target_labels=target_labels,
        negatives=negatives, negatives_mask=negatives_mask,
        radius=inter_radius)
    terms.update(inter=loss8, intra_mass=aux8["intra_mass"],
                 negatives=aux8["negatives"])
    loss = loss + inter_weight * loss8
  return loss, terms
