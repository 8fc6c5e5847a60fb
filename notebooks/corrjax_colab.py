# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # corrjax: label propagation and dense correspondence in a notebook
#
# Takes a video (a DAVIS sequence if you mount one, else a synthetic video
# generated here), extracts per-cell features with a ResNet (random init, a
# trained corrjax workdir, or a PyTorch checkpoint converted with
# `python -m corrjax.convert`), propagates the first frame's mask through
# the video with the CRW/SFC protocol (`corrjax.evals`), shows the
# predictions as overlays and scores them (J&F), and draws where a chosen
# point of frame 0 corresponds in later frames as a heat map (SFC, Fig. 5).
#
# Runs on Colab's CPU or GPU runtime; nothing is downloaded but the package
# itself. Edit this notebook as `corrjax_colab.py` (jupytext pairs the two).

# %% [markdown]
# ## Install
#
# In Colab this installs corrjax from its repository (set `REPO_URL` to your
# fork); elsewhere it uses the corrjax already importable.

# %%
import importlib.util
import os
import subprocess
import sys

REPO_URL = os.environ.get("CORRJAX_REPO_URL",
                          "git+https://github.com/corrjax/corrjax")
if importlib.util.find_spec("corrjax") is None:
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", REPO_URL],
                 check=True)

# %% [markdown]
# ## Settings
#
# * `DAVIS_ROOT`: a DAVIS folder (`JPEGImages/480p`, `Annotations/480p`),
#   e.g. on a mounted Drive (`from google.colab import drive;
#   drive.mount('/content/drive')`); when it does not exist, a synthetic
#   video is used.
# * `ENCODER`: an encoder directory from `python -m corrjax.convert` or a
#   corrjax training workdir; empty for a randomly initialised ResNet-18
#   (CRW reports about 0.33 J&F on DAVIS-17 for random init).
# * `QUERY`: the (y, x) pixel of frame 0 whose correspondence is drawn.

# %%
DAVIS_ROOT = "/content/drive/MyDrive/DAVIS"
SEQUENCE = "blackswan"
MAX_FRAMES = 30  # Of the DAVIS sequence (480p frames: ~1 s each on CPU).
ENCODER = ""
WIDTH = 64  # ResNet width of the random init (64: ResNet-18).
SYNTHETIC_SIZE, SYNTHETIC_FRAMES = 128, 16
QUERY = None  # (y, x) in frame 0; None: the centre of the first object.
# Protocol (videowalk / SFC DAVIS settings).
TOPK, RADIUS, CONTEXT, TEMPERATURE = 10, 12.0, 20, 0.05

if os.environ.get("CORRJAX_NOTEBOOK_TOY"):  # The test: seconds on a CPU.
  WIDTH, SYNTHETIC_SIZE, SYNTHETIC_FRAMES, CONTEXT = 8, 64, 5, 3
  DAVIS_ROOT = ""

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

from corrjax import networks
from corrjax.data import synthetic
from corrjax.evals import davis_data
from corrjax.evals import davis_metrics
from corrjax.evals import features
from corrjax.evals import labels
from corrjax.evals import visualize
from corrjax.evals import vos
from corrjax.models import resnet

print("JAX devices:", jax.devices())

# %% [markdown]
# ## A video with a first-frame mask

# %%
if DAVIS_ROOT and os.path.isdir(os.path.join(DAVIS_ROOT, "JPEGImages")):
  video = davis_data.read_video(DAVIS_ROOT, SEQUENCE)
  video = vos.Video(video.name, video.frames[:MAX_FRAMES],
                    video.masks[:MAX_FRAMES])
else:
  s = synthetic.make_video(7, num_frames=SYNTHETIC_FRAMES,
                           height=SYNTHETIC_SIZE, width=SYNTHETIC_SIZE,
                           num_objects=2)
  video = vos.Video(s.name, s.frames, s.masks.astype(np.int32))
print(f"{video.name}: frames {video.frames.shape}, objects "
      f"{int(video.masks[0].max())}")

fig, axes = plt.subplots(1, 2, figsize=(8, 4))
axes[0].imshow(video.frames[0])
axes[0].set_title("frame 0")
axes[1].imshow(visualize.overlay(video.frames[0], video.masks[0]))
axes[1].set_title("first-frame mask")
for ax in axes:
  ax.axis("off")
plt.show()

# %% [markdown]
# ## Features: layer3 of a ResNet at stride 8
#
# The propagation protocol reads layer3 with layer3's stride removed
# (strides (1, 2, 1, 1)): one L2-normalised vector per 8x8 cell.

# %%
STRIDES = (1, 2, 1, 1)
if ENCODER:  # An encoder directory or a training workdir, any method.
  feature_fn = networks.from_path(ENCODER, "loaded").features
else:
  net = resnet.make_resnet("resnet18", width=WIDTH, strides=STRIDES,
                           padding_mode="zeros", num_stages=3)
  variables = net.init(jax.random.key(0), np.zeros((1, 64, 64, 3)),
                       train=False)
  encoder = features.trunk_encoder(arch="resnet18", width=WIDTH,
                                   padding_mode="zeros", strides=STRIDES)
  feature_fn = features.frame_features(encoder, variables)
feats = feature_fn(video.frames)
print("features", feats.shape)  # [T, H/8, W/8, C]

# %% [markdown]
# ## Propagate the first frame's mask

# %%
pred = vos.predict_video(video, lambda frames: feats, topk=TOPK,
                         radius=RADIUS, context=CONTEXT,
                         temperature=TEMPERATURE)
scores = davis_metrics.evaluate_semisupervised(video.masks, pred)
j, f = float(np.mean(scores["J"])), float(np.mean(scores["F"]))
print(f"J {j:.3f}  F {f:.3f}  J&F {(j + f) / 2:.3f}")

shown = np.unique(np.linspace(0, len(pred) - 1, 4).round().astype(int))
fig, axes = plt.subplots(2, len(shown), figsize=(3 * len(shown), 6))
for col, t in enumerate(shown):
  axes[0, col].imshow(visualize.overlay(video.frames[t], video.masks[t]))
  axes[0, col].set_title(f"ground truth, frame {t}")
  axes[1, col].imshow(visualize.overlay(video.frames[t], pred[t]))
  axes[1, col].set_title(f"propagated, frame {t}")
for ax in axes.ravel():
  ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Where does a point go? Correspondence heat maps
#
# The feature of the query's cell in frame 0 against every cell of a later
# frame: softmax(cos / temperature), upsampled to the frame; the cross marks
# the most similar cell.

# %%
h, w = video.frames.shape[1:3]
if QUERY is None:
  ys, xs = np.nonzero(video.masks[0] == 1)
  QUERY = (int(ys.mean()), int(xs.mean())) if len(ys) else (h // 2, w // 2)
qy, qx = QUERY
query = feats[0, min(qy // 8, feats.shape[1] - 1),
              min(qx // 8, feats.shape[2] - 1)]


def heat_map(t):
  """softmax over frame t's cells of their similarity to the query."""
  logits = feats[t] @ query / TEMPERATURE
  p = np.exp(logits - logits.max())
  return p / p.sum()


later = [t for t in shown if t > 0]
fig, axes = plt.subplots(1, 1 + len(later), figsize=(3 * (1 + len(later)), 3))
axes[0].imshow(video.frames[0])
axes[0].plot(qx, qy, "w+", markersize=14, markeredgewidth=3)
axes[0].set_title("query, frame 0")
for ax, t in zip(axes[1:], later):
  p = heat_map(t)
  up = labels.resize_bilinear(p[..., None], h, w)[..., 0]
  by, bx = np.unravel_index(np.argmax(p), p.shape)
  ax.imshow(video.frames[t])
  ax.imshow(up, cmap="jet", alpha=0.5)
  ax.plot(bx * 8 + 4, by * 8 + 4, "w+", markersize=14, markeredgewidth=3)
  ax.set_title(f"frame {t}")
for ax in axes:
  ax.axis("off")
plt.tight_layout()
plt.show()
