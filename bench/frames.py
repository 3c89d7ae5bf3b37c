"""Flow storage whose memory does not grow with the flow's pixels.

An image flow can hold thousands of images. Two sequences keep its memory
about one image, whatever its length:

- :class:`LazyFrames` reads a frame from its file when it is indexed (the
  reader has read and checked every frame once, and recorded each frame's
  shape and sha256, so a frame that changes on disk afterwards is refused,
  never used);
- :class:`PackedMasks` keeps boolean masks at one bit per pixel and unpacks
  a mask when it is indexed.

Both are read-only sequences of ndarrays to their users (adapters, scoring,
protocols): ``frames[i]`` is an array, ``len(frames)`` the frame count.
:func:`frame_shapes` gives every frame's shape without reading the frames.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import overload

import numpy as np

from bench.errors import DataError


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


class _Indexed(Sequence[np.ndarray]):
    """Indexing shared by the two sequences: an int (negative too) gives one array
    (:meth:`_item`), a slice a list of them."""

    def _item(self, index: int) -> np.ndarray:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(len(self)))]
        return self._item(_position(index, len(self)))

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self._item(index)


class LazyFrames(_Indexed):
    """The frames of an image flow, each read from its file when indexed.

    Parameters
    ----------
    read : callable
        ``read(index)`` reads frame ``index`` from its source, as the reader
        read it when the flow was loaded.
    shapes : sequence of tuple
        Each frame's full shape (``(H, W)`` or ``(H, W, 3)``), as first read.
    digests : sequence of str
        Each frame's :func:`array_sha256`, as first read.
    sources : sequence of str
        Each frame's file, named in the error when it changed.
    keep : int
        How many recently read frames to keep (a template frame is indexed
        again and again).
    """

    def __init__(self, read: Callable[[int], np.ndarray], shapes: Sequence[tuple[int, ...]],
                 digests: Sequence[str], sources: Sequence[str], keep: int = 2) -> None:
        if not len(shapes) == len(digests) == len(sources):
            raise ValueError("LazyFrames: one shape, digest and source per frame")
        self._read = read
        self.shapes: tuple[tuple[int, ...], ...] = tuple(tuple(s) for s in shapes)
        self.digests: tuple[str, ...] = tuple(digests)
        self.sources: tuple[str, ...] = tuple(sources)
        self._keep = keep
        self._recent: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.shapes)

    def _item(self, index: int) -> np.ndarray:
        if index in self._recent:
            self._recent.move_to_end(index)
            return self._recent[index]
        frame = self._read(index)
        if array_sha256(frame) != self.digests[index]:
            raise DataError(self.sources[index], "changed on disk while the run was using it "
                            "(its pixels differ from those first read); run again")
        frame.setflags(write=False)  # shared with later readers through the cache
        self._recent[index] = frame
        while len(self._recent) > self._keep:
            self._recent.popitem(last=False)
        return frame


class PackedMasks(_Indexed):
    """Boolean masks stored at one bit per pixel; indexing returns a new bool array.

    Parameters
    ----------
    masks : iterable of ndarray
        Masks (any dtype; nonzero is True), packed one by one as they come.
    """

    def __init__(self, masks: Iterable[np.ndarray] = ()) -> None:
        self._bits: list[np.ndarray] = []
        self.shapes: list[tuple[int, ...]] = []
        for mask in masks:
            self.append(mask)

    @classmethod
    def filled(cls, shapes: Iterable[tuple[int, ...]], value: bool) -> PackedMasks:
        """All-``value`` masks of the given shapes (masks of one shape share their bits)."""
        packed = cls()
        shared: dict[tuple[int, ...], np.ndarray] = {}
        for shape in shapes:
            shape = tuple(int(n) for n in shape)
            if shape not in shared:
                shared[shape] = np.packbits(np.full(int(np.prod(shape)), value, dtype=bool))
            packed._bits.append(shared[shape])
            packed.shapes.append(shape)
        return packed

    @classmethod
    def from_bits(cls, bits: Iterable[np.ndarray], shapes: Iterable[tuple[int, ...]]
                  ) -> PackedMasks:
        """Masks from :meth:`bits` output (``np.packbits`` of each raveled mask)."""
        packed = cls()
        for chunk, shape in zip(bits, shapes, strict=True):
            shape = tuple(int(n) for n in shape)
            if chunk.dtype != np.uint8 or chunk.size != -(-int(np.prod(shape)) // 8):
                raise ValueError(f"packed mask of {chunk.size} bytes for shape {shape}")
            packed._bits.append(chunk)
            packed.shapes.append(shape)
        return packed

    def bits(self, index: int) -> np.ndarray:
        """Mask ``index`` as ``np.packbits`` of its raveled booleans (not a copy)."""
        return self._bits[_position(index, len(self))]

    def append(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask)
        self._bits.append(np.packbits(mask.astype(bool, copy=False).ravel()))
        self.shapes.append(mask.shape)

    def __setitem__(self, index: int, mask: np.ndarray) -> None:
        index = _position(index, len(self))
        mask = np.asarray(mask)
        self._bits[index] = np.packbits(mask.astype(bool, copy=False).ravel())
        self.shapes[index] = mask.shape

    def __len__(self) -> int:
        return len(self._bits)

    def _item(self, index: int) -> np.ndarray:
        shape = self.shapes[index]
        size = int(np.prod(shape))
        return np.unpackbits(self._bits[index], count=size).view(bool).reshape(shape)


def frame_shapes(frames: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
    """Every frame's full shape; from :class:`LazyFrames` and :class:`PackedMasks`
    without reading or unpacking them."""
    if isinstance(frames, (LazyFrames, PackedMasks)):
        return list(frames.shapes)
    if isinstance(frames, np.ndarray):
        return [tuple(frames.shape[1:])] * len(frames)
    return [tuple(np.shape(frame)) for frame in frames]


def _position(index: int, length: int) -> int:
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"frame {index} out of range for {length} frames")
    return index


__all__ = ["LazyFrames", "PackedMasks", "array_sha256", "frame_shapes"]
