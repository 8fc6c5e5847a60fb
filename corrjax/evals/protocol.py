"""The label-propagation protocol, one frozen value per benchmark.

Defaults are CRW's DAVIS protocol (videowalk README, `code/test.py`): top-10
of the local window of radius 12 feature cells (strict `<`) over the first
frame and the 20 preceding frames, softmax temperature 0.05, native
resolution. JHMDB uses context 7 and `--cropSize 320`, VIP context 4 and
560 (`config_defaults.pose_eval` / `parsing_eval`).
"""

import dataclasses
import hashlib
import json


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
  """
  topk: int = 10
  radius: float = 12.0
  context: int = 20
  temperature: float = 0.05
  crop_size: int = -1

  @classmethod
  def from_config(cls, benchmark) -> "Propagation":
    """The protocol fields of a benchmark config (`config.evals.<name>`)."""
    return cls(**{f.name: benchmark[f.name]
                  for f in dataclasses.fields(cls) if f.name in benchmark})

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def short_hash(*parts) -> str:
  """8 hex digits naming a protocol (and whatever else decides results)."""
  text = json.dumps(parts, sort_keys=True, default=str)
  return hashlib.sha1(text.encode()).hexdigest()[:8]
