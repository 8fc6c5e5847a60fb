"""TensorBoard summaries, written without importing TensorFlow.

Event files in TensorBoard's own format (a TFRecord file of `Event` protos:
`tensorboard.compat.proto` and `tensorboard.summary.writer.record_writer`,
pure Python), so that starting a run does not pay TensorFlow's import
(about 4 of the 7.6 s `python -m corrjax.main` took to reach its first line
with clu's TensorFlow-backed writer). Scalars are `simple_value` summaries
and images PNG-encoded `Summary.Image`s, the two kinds TensorBoard's
scalar and image dashboards read from any writer.

Only process 0 writes (`create_writer(..., enabled=False)` elsewhere gives
a writer that drops everything). Every `write_*` call appends and flushes
its records, so a killed run keeps every summary written before it.
"""

from collections.abc import Mapping
import io
import os
import socket
import time

import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.summary.writer import record_writer


class SummaryWriter:
  """Appends summaries to `<logdir>/events.out.tfevents.<time>.<host>.<pid>`."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = (f"events.out.tfevents.{int(time.time()):010d}."
            f"{socket.gethostname()}.{os.getpid()}")
    self.path = os.path.join(logdir, name)
    self._records = record_writer.RecordWriter(open(self.path, "wb"))
    self._write(event_pb2.Event(wall_time=time.time(),
                                file_version="brain.Event:2"))

  def _write(self, *events: event_pb2.Event) -> None:
    for event in events:
      self._records.write(event.SerializeToString())
    self._records.flush()

  def _summary(self, step: int, values: list) -> event_pb2.Event:
    return event_pb2.Event(wall_time=time.time(), step=int(step),
                           summary=summary_pb2.Summary(value=values))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """One scalar per tag at `step`."""
    self._write(self._summary(step, [
        summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in scalars.items()]))

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Images uint8 [N, H, W, 3] (or [H, W, 3]); the first of each tag."""
    values = []
    for tag, array in images.items():
      array = np.asarray(array)
      picture = array[0] if array.ndim == 4 else array
      if picture.dtype != np.uint8:
        raise ValueError(f"summary image {tag!r}: dtype {picture.dtype}, "
                         "expected uint8")
      png = io.BytesIO()
      Image.fromarray(picture).save(png, format="PNG")
      values.append(summary_pb2.Summary.Value(
          tag=tag, image=summary_pb2.Summary.Image(
              height=picture.shape[0], width=picture.shape[1],
              colorspace=picture.shape[2] if picture.ndim == 3 else 1,
              encoded_image_string=png.getvalue())))
    self._write(self._summary(step, values))

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    if not self._records.closed:
      self._records.close()


class DroppingWriter:
  """The writer of processes other than 0: every call does nothing."""

  def write_scalars(self, step, scalars):
    del step, scalars

  def write_images(self, step, images):
    del step, images

  def flush(self):
    pass

  def close(self):
    pass


def create_writer(logdir: str, *, enabled: bool = True):
  """A `SummaryWriter` for `logdir`, or a `DroppingWriter` when disabled."""
  return SummaryWriter(logdir) if enabled else DroppingWriter()
