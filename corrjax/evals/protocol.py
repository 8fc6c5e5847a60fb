"""The label-propagation protocol, one frozen value per benchmark.

Defaults are CRW's DAVIS protocol (videowalk README, `code/test.py`): top-10
of the local window of radius 12 feature cells (strict `<`) over the first
frame and the 20 preceding frames, softmax temperature 0.05, native
resolution. JHMDB uses context 7 and `--cropSize 320`, VIP context 4 and
560 (`config_defaults.pose_eval` / `parsing_eval`).

`kind` 'liir' (config entry `protocol`) picks LIIR/MAST's inference instead
(evals/window_propagation.py, VOS benchmarks only): references {0, 5} and
recent frames, one softmax over references x a (2 window + 1)^2 window of
raw dot products, the compactness replacement, the foreground boost; it
reads `window`, `compact_threshold`, `foreground_boost` and `crop_size`.
"""

import dataclasses
import hashlib
import json

KINDS = ("crw", "liir")
_FIELDS = {"crw": ("topk", "radius", "context", "temperature", "crop_size"),
           "liir": ("kind", "window", "compact_threshold", "foreground_boost",
                    "crop_size")}


@dataclasses.dataclass(frozen=True)
class Propagation:
  """How labels travel from frame 0 through a video.

  Attributes:
    topk: neighbours kept per query cell.
    radius: window radius in feature cells (a key is used when its distance
      is strictly below it); frame 0 is matched densely.
    context: preceding frames used as references besides frame 0.
    temperature: softmax temperature of the cosine affinities.
    crop_size: -1 for native resolution, else a crop_size x crop_size
      resize of every frame (the reference's `--cropSize`).
    kind: 'crw' (the fields above) or 'liir' (LIIR_pytorch's
      `evaluate_davis.py --ref 0 --compact`, the fields below).
    window: half side R of the square window in cells (14: 29 x 29).
    compact_threshold: the Gaussian replaces a reference's probabilities
      where their peak is > it (0.1; 1.0: never).
    foreground_boost: factor of the foreground labels (1.05; 1.0: none).
  """
  topk: int = 10
  radius: float = 12.0
  context: int = 20
  temperature: float = 0.05
  crop_size: int = -1
  kind: str = "crw"
  window: int = 14
  compact_threshold: float = 0.1
  foreground_boost: float = 1.05

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"protocol {self.kind!r}; choose from {KINDS}.")

  @classmethod
  def from_config(cls, benchmark) -> "Propagation":
    """The protocol fields of a benchmark config (`config.evals.<name>`);
    `kind` is its entry `protocol`."""
    keys = {f.name: "protocol" if f.name == "kind" else f.name
            for f in dataclasses.fields(cls)}
    return cls(**{name: benchmark[key] for name, key in keys.items()
                  if key in benchmark})

  def as_dict(self) -> dict:
    """The fields its kind reads (CRW: the five of before `kind`, so CRW
    results folders keep their hashes)."""
    return {k: getattr(self, k) for k in _FIELDS[self.kind]}


def short_hash(*parts) -> str:
  """8 hex digits naming a protocol (and whatever else decides results)."""
  text = json.dumps(parts, sort_keys=True, default=str)
  return hashlib.sha1(text.encode()).hexdigest()[:8]
