"""k-means vs sklearn.cluster.KMeans, the 3D position encoding, the 40% drop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corrjax.ops import kmeans


def _blobs(rng, n, d, k, spread=1.5):
  """float32 [n, d]: k overlapping Gaussian blobs (so Lloyd takes steps)."""
  means = rng.normal(size=(k, d)) * spread
  ids = rng.integers(0, k, size=n)
  return (means[ids] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_given_initial_centres(seed):
  cluster = pytest.importorskip("sklearn.cluster")
  rng = np.random.default_rng(seed)
  v, n, d, k = 2, 600, 16, 5
  x = np.stack([_blobs(rng, n, d, k) for _ in range(v)])
  init = np.stack([x[i, rng.choice(n, k, replace=False)] for i in range(v)])
  out = kmeans.kmeans(jax.random.key(0), jnp.asarray(x), num_clusters=k,
                      num_steps=100, init=jnp.asarray(init))
  for i in range(v):
    ref = cluster.KMeans(k, init=init[i], n_init=1, max_iter=100, tol=0.0,
                         algorithm="lloyd").fit(x[i])
    np.testing.assert_array_equal(np.asarray(out["labels"][i]), ref.labels_)
    np.testing.assert_allclose(float(out["inertia"][i]), ref.inertia_,
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out["centers"][i]),
                               ref.cluster_centers_, rtol=1e-5, atol=1e-5)
    assert int(out["steps"][i]) <= ref.n_iter_


def test_fixed_steps_and_early_exit_agree():
  # One step from the same init vs a long run: the loop stops at a fixed
  # point, and a 1-step run differs from it (the step count is honoured).
  rng = np.random.default_rng(3)
  x = jnp.asarray(_blobs(rng, 500, 8, 4))[None]
  init = x[:, :4]
  long = kmeans.kmeans(None, x, num_clusters=4, num_steps=100, init=init)
  longer = kmeans.kmeans(None, x, num_clusters=4, num_steps=300, init=init)
  np.testing.assert_array_equal(long["labels"], longer["labels"])
  one = kmeans.kmeans(None, x, num_clusters=4, num_steps=1, init=init)
  assert int(one["steps"][0]) == 1
  assert float(one["inertia"][0]) >= float(long["inertia"][0])


def test_kmeans_plus_plus_and_padding():
  rng = np.random.default_rng(4)
  x = _blobs(rng, 400, 8, 3, spread=10.0)
  # Padding rows far away with weight 0 must neither seed nor move centres.
  padded = np.concatenate([x, np.full((100, 8), 1e3, np.float32)])
  w = np.concatenate([np.ones(400), np.zeros(100)]).astype(np.float32)
  out = kmeans.kmeans(jax.random.key(1), jnp.asarray(padded)[None],
                      num_clusters=3, weights=jnp.asarray(w)[None])
  ref = kmeans.kmeans(jax.random.key(1), jnp.asarray(x)[None],
                      num_clusters=3)
  assert np.abs(np.asarray(out["centers"])).max() < 100
  np.testing.assert_allclose(out["inertia"], ref["inertia"], rtol=1e-4)
  # Well separated blobs: seeding finds all three, so each blob is a cluster.
  cluster = pytest.importorskip("sklearn.cluster")
  sk = cluster.KMeans(3, n_init=1, random_state=0).fit(x)
  np.testing.assert_allclose(float(ref["inertia"][0]), sk.inertia_,
                             rtol=1e-4)


def _numpy_pe(t, h, w, dim, scale):
  f = -(-dim // 6)
  c = 2 * f
  out = np.zeros((t, h, w, 3 * c))
  for ti in range(t):
    for yi in range(h):
      for xi in range(w):
        vec = []
        for p in (ti, yi, xi):
          for j in range(f):
            a = p / 10000 ** (2 * j / c)
            vec += [np.sin(a), np.cos(a)]
        out[ti, yi, xi] = vec
  return out[..., :dim] * scale / np.sqrt(3 * f)


@pytest.mark.parametrize("dim", [48, 10])
def test_position_encoding_formula(dim):
  pe = kmeans.position_encoding_3d(3, 4, 5, dim, scale=2.0)
  assert pe.shape == (3, 4, 5, dim)
  np.testing.assert_allclose(pe, _numpy_pe(3, 4, 5, dim, 2.0), atol=1e-5)
  if dim % 6 == 0:
    np.testing.assert_allclose(np.linalg.norm(pe, axis=-1), 2.0, rtol=1e-5)
  feats = jnp.ones((2, 3, 4, 5, 7))
  both = kmeans.with_position_encoding(feats, dim, scale=2.0)
  assert both.shape == (2, 3, 4, 5, 7 + dim)
  np.testing.assert_allclose(both[1, ..., 7:], pe)


def test_pseudo_labels_drop_large_clusters():
  # 10 pixels: cluster 0 has 5 (50% > 40%: dropped), 1 has 4 (40%: kept,
  # the drop is strict), 2 has 1, 3 and 4 are empty.
  labels = jnp.array([[0, 0, 0, 0, 0, 1, 1, 1, 1, 2]])
  objects, kept = kmeans.pseudo_labels(labels, 5)
  np.testing.assert_array_equal(kept, [[False, True, True, True, True]])
  np.testing.assert_array_equal(objects, [[0, 0, 0, 0, 0, 1, 1, 1, 1, 2]])
  # Weights: ignoring the first three pixels makes cluster 0 hold 2 / 7.
  w = jnp.array([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1]], jnp.float32)
  objects, kept = kmeans.pseudo_labels(labels, 5, weights=w)
  np.testing.assert_array_equal(kept, [[True, False, True, True, True]])
  np.testing.assert_array_equal(objects, [[1, 1, 1, 1, 1, 0, 0, 0, 0, 2]])
  # Label maps keep their shape.
  maps = jnp.zeros((2, 3, 4, 4), jnp.int32).at[:, :, :2].set(3)
  objects, kept = kmeans.pseudo_labels(maps, 5)
  assert objects.shape == maps.shape
  np.testing.assert_array_equal(objects, 0)
