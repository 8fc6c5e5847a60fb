"""Mask-VOS inference (paper Alg. 1, §3.3 "Testing"): a video predictor.

Each query frame is segmented from a memory of reference frames: the first
frame (given mask) and up to `context` (20) previous frames with their
predicted masks. Per frame (Alg. 1): keys of the memory and the query,
A (Eq. 6), V_q = A^T V_r (Eq. 7), the coarse mask Ybar_q = A^T Y_r (Eq. 8),
then R rounds (default 2) of V_bar = V([I_q, Y_q]); Y_q = D([V_q, V_bar])
(Eq. 9), each round feeding its prediction back as Y_q. R = 0 returns the
coarse mask, as Alg. 1 does (Table 4e's "round 0" decodes V_q alone, which
the decoder's 2D'-channel input does not allow: not reproduced).

Several objects: each is decoded on its own and the logits are merged by
STCN soft aggregation (losses.mask_vos.soft_aggregate); Y_q fed back is the
aggregated probability of each object. The released code differs (radius-12
top-10 affinity, a 6-frame memory, an average of decoder and propagated
probabilities; reference/liir_maskvos.md §2.7): not reproduced.

Memory layout (S = 1 + context slots, slot 0 the first frame, then the
newest first): "keys" float [S, h, w, D], "values" float [S, O, h*w, D'],
"masks" float [S, h*w, O+1] class probabilities at stride 8, "valid" bool
[S]. Probabilities are class 0 = background, 1..O = objects.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from corrjax.losses import mask_vos as losses
from corrjax.models import mask_vos


def _probs(model, variables, q, v_q, masks, query_frame, rounds):
  """Coarse mask -> `rounds` refinements; returns [1, O+1, H, W] probs."""
  hh, ww = query_frame.shape[1:3]
  coarse = masks  # [1, O+1, h, w]
  if rounds == 0:
    up = mask_vos.resize(jnp.moveaxis(coarse, 1, -1), (hh, ww))
    return jnp.moveaxis(up, -1, 1)
  y = coarse[:, 1:]
  for _ in range(rounds):
    logits = model.apply(variables, query_frame, q, v_q, y,
                         method=mask_vos.MaskVOSNet.refine)
    probs = jax.nn.softmax(losses.soft_aggregate(logits), axis=1)
    y = probs[:, 1:]
  return probs


@functools.partial(jax.jit, static_argnames=("model", "rounds"))
def predict_frame(variables, query_frame: jax.Array,
                  memory: dict[str, jax.Array], *,
                  model: mask_vos.MaskVOSNet,
                  rounds: int = 2) -> dict[str, jax.Array]:
  """Segments one frame from the memory (Alg. 1 `inference`).

  Args:
    variables: MaskVOSNet variables.
    query_frame: float [H, W, 3] normalised.
    memory: see module docstring.
    model: the network (static).
    rounds: R, recurrent refinement rounds.

  Returns:
    {"probs": float [O+1, H, W], "key": [h, w, D] the query's key,
     "coarse": [O+1, h, w] Ybar_q}.
  """
  frame = query_frame[None]
  q = model.apply(variables, frame, method=mask_vos.MaskVOSNet.encode)
  s, h, w, d = memory["keys"].shape
  o = memory["values"].shape[1]
  valid = jnp.repeat(memory["valid"], h * w)[None]
  aff = losses.affinity(memory["keys"].reshape(1, s * h * w, d),
                        q["key"].reshape(1, h * w, d),
                        temperature=model.temperature, ref_valid=valid)
  values = jnp.moveaxis(memory["values"], 1, 0).reshape(1, o, s * h * w, -1)
  v_q = jax.vmap(losses.readout, in_axes=(None, 1), out_axes=1)(aff, values)
  coarse = losses.readout(aff, memory["masks"].reshape(1, s * h * w, o + 1))
  coarse = jnp.moveaxis(coarse.reshape(1, h, w, o + 1), -1, 1)
  probs = _probs(model, variables, q, v_q, coarse, frame, rounds)
  return {"probs": probs[0], "key": q["key"][0], "coarse": coarse[0]}


@functools.partial(jax.jit, static_argnames=("model",))
def memory_entry(variables, frame: jax.Array, probs: jax.Array, *,
                 model: mask_vos.MaskVOSNet,
                 key: jax.Array | None = None) -> dict[str, jax.Array]:
  """A frame and its class probabilities [O+1, H, W] -> one memory slot.

  `key` float [h, w, D]: the frame's key if already computed (the query's,
  from `predict_frame`), else E runs here.
  """
  o = probs.shape[0] - 1
  hh, ww = frame.shape[:2]
  if key is None:
    key = model.apply(variables, frame[None],
                      method=mask_vos.MaskVOSNet.encode)["key"][0]
  frames = jnp.broadcast_to(frame, (o, hh, ww, 3))
  values = model.apply(variables, frames, probs[1:],
                       method=mask_vos.MaskVOSNet.encode_mask)
  small = mask_vos.downsample_mask(jnp.moveaxis(probs, 0, -1)[None])[0]
  return {"keys": key, "values": values.reshape(o, -1, values.shape[-1]),
          "masks": small.reshape(-1, o + 1)}


def push(memory: dict[str, jax.Array],
         entry: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Inserts `entry` at slot 1; slot 0 (first frame) stays, the oldest
  previous frame drops out (a FIFO of the last `context` frames)."""
  entry = dict(entry, valid=jnp.ones((), bool))
  return {k: v.at[1:].set(jnp.concatenate([entry[k][None], v[1:-1]]))
          for k, v in memory.items()}


def segment_video(model: mask_vos.MaskVOSNet, variables, frames: np.ndarray,
                  first_labels: np.ndarray, num_objects: int, *,
                  context: int = 20, rounds: int = 2) -> np.ndarray:
  """Segments a video from its first frame's mask (§3.3 "Testing").

  Args:
    model: the network.
    variables: its variables.
    frames: float [T, H, W, 3] normalised, H, W multiples of 8.
    first_labels: int [H, W] frame 0's mask, ids in [0, num_objects].
    num_objects: O.
    context: previous frames kept as references (20).
    rounds: R.

  Returns:
    float32 [T, O+1, H, W] class probabilities (frame 0: the given mask).
  """
  first = jax.nn.one_hot(jnp.asarray(first_labels), num_objects + 1)
  first = jnp.moveaxis(first, -1, 0)
  entry = memory_entry(variables, jnp.asarray(frames[0]), first, model=model)
  slots = 1 + context
  memory = {k: jnp.zeros((slots,) + v.shape, v.dtype).at[0].set(v)
            for k, v in entry.items()}
  memory["valid"] = jnp.zeros((slots,), bool).at[0].set(True)
  out = [np.asarray(first)]
  for t in range(1, len(frames)):
    frame = jnp.asarray(frames[t])
    predicted = predict_frame(variables, frame, memory, model=model,
                              rounds=rounds)
    probs = predicted["probs"]
    out.append(np.asarray(probs))
    if context:  # E ran once on this frame: its key is the query's.
      entry = memory_entry(variables, frame, probs, model=model,
                           key=predicted["key"])
      memory = push(memory, entry)
  return np.stack(out)
