"""Reads `torch.save` files into numpy arrays without importing torch.

Both formats that `torch.load` reads are supported:

* zip (torch >= 1.6, the default): `<name>/data.pkl` is the pickled object,
  `<name>/data/<key>` the raw bytes of each storage, `<name>/byteorder`
  ('little' unless it says otherwise).
* legacy (`_use_new_zipfile_serialization=False`, and files from before
  1.6): five pickles in a row (magic number, protocol version, system info,
  the object, the sorted storage keys), then for each key an int64 element
  count and the storage's little-endian bytes.

Tensors are rebuilt from (storage, offset, size, stride) as contiguous numpy
arrays, so views (transposes, slices at an offset) come back as torch.load
would give them. Only what checkpoints need is ever constructed
(`collections.OrderedDict`, torch's tensor-rebuild functions, storage and
dtype names, `set`, `frozenset`, `complex`, `bytearray`); any other class or
function named in the pickle (an `argparse.Namespace` of training arguments,
a numpy scalar, `torch.device`) becomes an inert `Unresolved` placeholder
and no code from the file runs.
"""

import collections
import pickle
import struct
from typing import Any, BinaryIO, Callable
import zipfile

import ml_dtypes
import numpy as np

# torch/serialization.py: MAGIC_NUMBER and PROTOCOL_VERSION of legacy files.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001

# Element types of torch's typed storages (`torch.<Name>Storage`).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
    "UntypedStorage": np.uint8,  # Bytes; `_rebuild_tensor_v3` names a dtype.
}

# `torch.<dtype>` globals (the dtype argument of `_rebuild_tensor_v3`).
_TORCH_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16, "int64": np.int64, "int32": np.int32,
    "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
    "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "bool": np.bool_, "complex64": np.complex64, "complex128": np.complex128,
}

_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    # Protocol-2 pickles store `bytes` as _codecs.encode(str, 'latin1').
    ("_codecs", "encode"): lambda text, encoding="utf-8": text.encode(
        encoding),
    ("torch", "Size"): tuple,
}


class Unresolved:
  """An object of a class that the reader does not construct.

  Attributes:
    qualname: 'module.name' of the class or function in the pickle.
    args: positional arguments it was called or created with.
    state: what pickle would have passed to `__setstate__` (often the
      object's `__dict__`, e.g. the fields of an `argparse.Namespace`).
    items: entries pickle tried to set on it (dict or list subclasses).
  """
  qualname = "?"

  def __new__(cls, *args, **kwargs):
    del kwargs
    obj = super().__new__(cls)
    obj.args, obj.state, obj.items = args, None, []
    return obj

  def __init__(self, *args, **kwargs):
    del args, kwargs  # Recorded by __new__.

  def __setstate__(self, state: Any) -> None:
    self.state = state

  def __setitem__(self, key: Any, value: Any) -> None:
    self.items.append((key, value))

  def append(self, value: Any) -> None:
    self.items.append(value)

  def extend(self, values: Any) -> None:
    self.items.extend(values)

  def __repr__(self) -> str:
    return f"<unresolved {self.qualname}>"


class _StorageType:
  """Stands for `torch.<Name>Storage` in persistent ids."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


def load(path: str) -> Any:
  """Loads a `torch.save` file; every tensor becomes a numpy array.

  Args:
    path: a `.pth` / `.pth.tar` / `.pt` file in zip or legacy format.

  Returns:
    The saved object: dicts, lists and numbers as saved, tensors as
    contiguous numpy arrays in native byte order (bfloat16 as
    `ml_dtypes.bfloat16`), anything else as `Unresolved`.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a torch checkpoint, or is damaged.
  """
  try:
    with open(path, "rb") as f:
      if zipfile.is_zipfile(f):
        return _load_zip(path)
      f.seek(0)
      return _load_legacy(f, path)
  except FileNotFoundError:
    raise FileNotFoundError(f"checkpoint {path!r} not found.") from None
  except (pickle.UnpicklingError, EOFError, struct.error, KeyError,
          IndexError, TypeError, UnicodeDecodeError,
          zipfile.BadZipFile) as e:
    raise ValueError(f"{path!r} is not a readable torch checkpoint "
                     f"({type(e).__name__}: {e}).") from None


def _load_zip(path: str) -> Any:
  """The zip format (`torch/serialization.py`, `_load` / `_save`)."""
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("data.pkl")]
    if len(pickles) != 1:
      raise ValueError(f"{path!r} is a zip file but not a torch checkpoint "
                       "(expected one '<name>/data.pkl').")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = archive.read(prefix + "byteorder").decode().strip()
    cache = {}

    def storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
      if key not in cache:
        raw = archive.read(f"{prefix}data/{key}")
        cache[key] = _from_bytes(raw, dtype, numel, byteorder)
      return cache[key]

    with archive.open(pickles[0]) as f:
      return _Unpickler(f, storage).load()


def _load_legacy(f: BinaryIO, path: str) -> Any:
  """The legacy format (`torch/serialization.py`, `_legacy_load`).

  The object is unpickled twice: first to learn each storage's dtype (and
  where the storages start), then, with the storages read, for real.
  """
  try:
    magic = _Unpickler(f).load()
  except Exception:  # pylint: disable=broad-except
    magic = None  # Arbitrary bytes make the unpickler raise almost anything.
  if magic != _LEGACY_MAGIC:
    raise ValueError(f"{path!r} is not a torch checkpoint (neither a zip "
                     "file nor the legacy format; tar files from torch < "
                     "0.1.10 are not supported).")
  protocol = _Unpickler(f).load()
  if protocol != _LEGACY_PROTOCOL:
    raise ValueError(f"{path!r}: unsupported legacy protocol {protocol}.")
  _Unpickler(f).load()  # sys_info: storages are little-endian regardless.
  start = f.tell()
  dtypes = {}

  def record(key: str, dtype: np.dtype, numel: int) -> None:
    del numel
    dtypes[key] = dtype

  _Unpickler(f, record).load()
  storages = {}
  for key in _Unpickler(f).load():
    numel, = struct.unpack("<q", f.read(8))
    dtype = dtypes[key]
    # Storages are always written little-endian (THPStorage_writeFileRaw).
    storages[key] = _from_bytes(f.read(numel * dtype.itemsize), dtype,
                                numel, "little")
  f.seek(start)
  return _Unpickler(f, lambda key, dtype, numel: storages[key]).load()


def _from_bytes(raw: bytes, dtype: np.dtype, numel: int,
                byteorder: str) -> np.ndarray:
  """A storage: `numel` elements of `dtype` in `byteorder` ('little'/'big')."""
  if len(raw) != numel * dtype.itemsize:
    raise pickle.UnpicklingError(
        f"storage holds {len(raw)} bytes, expected {numel} x "
        f"{dtype.itemsize}; the file is truncated")
  stored = dtype.newbyteorder("<" if byteorder == "little" else ">")
  return np.frombuffer(raw, stored).astype(dtype.newbyteorder("="))


StorageFn = Callable[[str, np.dtype, int], np.ndarray | None]


class _Unpickler(pickle.Unpickler):
  """Builds only allowed globals; storages come from `storage_fn`.

  `storage_fn(key, dtype, numel)` returns the storage as a 1-D array, or
  None during the legacy format's first pass (tensors are then None too).
  """

  def __init__(self, file: BinaryIO, storage_fn: StorageFn | None = None):
    super().__init__(file)
    self._storage_fn = storage_fn
    self._unresolved = {}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[module, name]
    if module == "torch._utils" and name in _REBUILDERS:
      return _REBUILDERS[name]
    if module == "torch._tensor" and name == "_rebuild_from_type_v2":
      return _rebuild_from_type_v2
    if (module in ("torch", "torch.cuda", "torch.storage")
        and name in _STORAGE_DTYPES):
      return _StorageType(name)
    if module == "torch" and name in _TORCH_DTYPES:
      return np.dtype(_TORCH_DTYPES[name])
    qualname = f"{module}.{name}"
    if qualname not in self._unresolved:
      self._unresolved[qualname] = type(
          name, (Unresolved,), {"qualname": qualname})
    return self._unresolved[qualname]

  def persistent_load(self, pid: Any) -> np.ndarray | None:
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
      raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
    storage_type, key, _, numel = pid[1:5]
    if len(pid) > 5 and pid[5] is not None:
      raise pickle.UnpicklingError(
          "storage views (torch < 0.4 legacy files) are not supported")
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(
          f"unsupported storage type {storage_type!r}")
    if self._storage_fn is None:
      raise pickle.UnpicklingError("tensor data where none was expected")
    return self._storage_fn(str(key), storage_type.dtype, int(numel))


def _rebuild_tensor(storage: np.ndarray | None, storage_offset: int,
                    size: tuple[int, ...], stride: tuple[int, ...],
                    *unused) -> np.ndarray | None:
  """torch._utils._rebuild_tensor(_v2): a strided view, copied contiguous.

  Args:
    storage: 1-D array of elements (None during a legacy first pass).
    storage_offset: index of the first element, in elements.
    size, stride: the tensor's shape and strides, in elements.
    *unused: requires_grad, backward_hooks and metadata (ignored).

  Returns:
    An array of shape `size` (None if `storage` is None).
  """
  del unused
  if storage is None:
    return None
  size, stride = tuple(size), tuple(stride)
  if len(size) != len(stride) or any(s < 0 for s in stride):
    raise pickle.UnpicklingError(f"bad tensor size {size} / stride {stride}")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if storage_offset < 0 or last >= storage.size:
    raise pickle.UnpicklingError(
        f"tensor (offset {storage_offset}, size {size}, stride {stride}) "
        f"exceeds its storage of {storage.size} elements")
  view = np.lib.stride_tricks.as_strided(
      storage[storage_offset:], shape=size,
      strides=[s * storage.itemsize for s in stride], writeable=False)
  return np.array(view, order="C")  # An owned, writable, C-order copy.


def _rebuild_tensor_v3(storage: np.ndarray | None, storage_offset: int,
                       size: tuple[int, ...], stride: tuple[int, ...],
                       requires_grad: bool, backward_hooks: Any,
                       dtype: np.dtype, *unused) -> np.ndarray | None:
  """torch._utils._rebuild_tensor_v3: an untyped (byte) storage + dtype."""
  del requires_grad, backward_hooks, unused
  if storage is None:
    return None
  if storage.nbytes % np.dtype(dtype).itemsize:
    raise pickle.UnpicklingError(
        f"{storage.nbytes} bytes do not hold whole {dtype} elements")
  return _rebuild_tensor(storage.view(dtype), storage_offset, size, stride)


def _rebuild_parameter(data: np.ndarray | None, *unused) -> np.ndarray | None:
  """torch._utils._rebuild_parameter(_with_state): the parameter's data."""
  del unused
  return data


def _rebuild_from_type_v2(func: Callable[..., Any], new_type: Any,
                          args: tuple[Any, ...], state: Any) -> Any:
  """torch._tensor._rebuild_from_type_v2: the plain tensor, type dropped."""
  del new_type, state
  # `func` is one of _REBUILDERS, or an inert Unresolved class.
  return func(*args)


_REBUILDERS = {
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_tensor_v2": _rebuild_tensor,
    "_rebuild_tensor_v3": _rebuild_tensor_v3,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter,
}
