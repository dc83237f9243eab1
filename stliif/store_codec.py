"""How artifacts are encoded in the store and moved between memory and the repository.

Datasets are encoded for Zarr (chunks, zstd, CF-packed integers where asked), written into
memory by xarray and copied to an Icechunk session in a few batches of concurrent writes; a
loaded read fetches an artifact's keys at once. :mod:`stliif.store` uses these.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import icechunk
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

__all__ = ["PACKED_ATTR", "PACK_ENCODING", "ZSTD_LEVEL", "encoded", "fetch_group", "put_group", "unpack"]

PACK_ENCODING = "stliif:pack"
"""A float variable's ``encoding`` key asking :meth:`ArtifactStore.commit` to store it as
integers: ``{"dtype": "uint16", "scale_factor": s, "add_offset": o, "fill": f}`` (CF
``scale_factor``/``add_offset``/``_FillValue`` attributes; NaN stored as ``fill``). It is stored
so only when that decodes to the same float32 values to the bit; otherwise as floats."""
PACKED_ATTR = "stliif:packed"  # on a packed array: the float dtype it decodes to

def encoded(obj: xr.Dataset, attrs: Mapping[str, Any], chunks: Mapping[str, int]) -> xr.Dataset:
    """``obj`` as it is written: JSON-safe attributes plus ``attrs``, strings as objects, its
    chunks and compressor, float32 packed as integers where asked (:data:`PACK_ENCODING`)."""
    ds = obj.copy()
    ds.attrs = {**{k: _attr(v) for k, v in obj.attrs.items()}, **attrs}
    for name in list(ds.variables):
        var = ds[name]
        if var.dtype.kind in "UT":  # variable-length strings have a Zarr v3 spec
            ds[name] = var = var.astype(object)
        # One chunk per time step (a revisit is read whole), other dims whole; a 1-D variable in
        # memory (dates, revisit numbers, cloud cover) in one chunk, it is always read whole.
        per_date = var.ndim > 1 or var.chunks is not None
        sizes = (1 if d == "time" and per_date else min(n, chunks.get(str(d), n)) for d, n in var.sizes.items())
        pack = var.encoding.get(PACK_ENCODING)
        var.encoding = {"chunks": tuple(sizes), **_compressors(var)} if var.ndim else {}
        packed = _pack(var, pack) if pack else None
        if packed is not None:  # the encoding must be set before the variable is copied in
            packed.encoding = {**var.encoding, "_FillValue": packed.attrs.pop("_FillValue")}
            ds[name] = packed
    return ds


ZSTD_LEVEL = 1
"""Zstandard level of the arrays written (Zarr's default is 3): 2-6x faster to encode the
store's arrays, within a few percent of the size (docs/benchmarks.md, issue 20). Stores
written at another level read the same (the codec is in each array's metadata)."""


def _compressors(var: xr.Variable | xr.DataArray) -> dict[str, Any]:
    """The compressor encoding of a numeric array (others keep Zarr's default)."""
    if var.dtype.kind not in "biufcmM":
        return {}
    return {"compressors": (ZstdCodec(level=ZSTD_LEVEL),)}


def put_group(dst: Any, src: zarr.storage.MemoryStore, path: str) -> None:
    """Copy the group ``path`` written into ``src`` over ``dst``'s (mode "w": what was there goes),
    with the parent groups it lacks; metadata first (parents, the group, its arrays), then every
    chunk, each phase one batch of concurrent writes."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    proto = default_buffer_prototype()

    async def put() -> None:
        keys = [k async for k in src.list_prefix(f"{path}/")]
        values = dict(zip(keys, await asyncio.gather(*(src.get(k, prototype=proto) for k in keys)), strict=True))
        await dst.delete_dir(path)
        parts = path.split("/")
        for i in range(len(parts)):  # the root and the parents, when missing
            parent = "/".join([*parts[:i], "zarr.json"])
            if not await dst.exists(parent):
                value = await src.get(parent, prototype=proto)
                if value is not None:
                    await dst.set(parent, value)
        await dst.set(f"{path}/zarr.json", values.pop(f"{path}/zarr.json"))
        meta = [k for k in values if k.endswith("/zarr.json")]
        await asyncio.gather(*(dst.set(k, values.pop(k)) for k in meta))
        await asyncio.gather(*(dst.set(k, v) for k, v in values.items()))

    sync(put())


def fetch_group(src: Any, path: str) -> zarr.storage.MemoryStore | None:
    """Every key of ``src`` under the group ``path``, fetched at once into a memory store
    (None when there is none)."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    proto = default_buffer_prototype()

    async def fetch() -> dict[str, Any]:
        keys = [k async for k in src.list_prefix(f"{path}/")]
        return dict(zip(keys, await asyncio.gather(*(src.get(k, prototype=proto) for k in keys)), strict=True))

    try:
        values = {k: v for k, v in sync(fetch()).items() if v is not None}
    except icechunk.IcechunkError:  # no group or array at path
        return None
    if f"{path}/zarr.json" not in values:
        return None
    return zarr.storage.MemoryStore(values)


def _pack(var: xr.DataArray, spec: Mapping[str, Any]) -> xr.DataArray | None:
    """``var`` (float32) as CF-packed integers per ``spec`` (see :data:`PACK_ENCODING`), or None
    when that would not decode (:func:`unpack`) to the same bits: other values, another dtype."""
    if var.dtype != np.float32:
        return None
    dtype, fill = np.dtype(spec["dtype"]), spec["fill"]
    scale, offset = np.float32(spec.get("scale_factor", 1.0)), np.float32(spec.get("add_offset", 0.0))
    values = np.asarray(var.values)
    info, nan = np.iinfo(dtype), np.isnan(values)
    with np.errstate(invalid="ignore"):
        dn = np.rint((values - offset) / scale)  # float32: the check below catches any rounding
        if not (nan | ((dn >= info.min) & (dn <= info.max) & (dn != fill))).all():
            return None
        ints = np.where(nan, fill, dn).astype(dtype)
    attrs = {**var.attrs, "scale_factor": float(scale), "add_offset": float(offset), "_FillValue": fill,
             PACKED_ATTR: "float32"}
    packed = xr.DataArray(ints, dims=var.dims, coords=var.coords, attrs=attrs)
    if not np.array_equal(_decode(ints, scale, offset, fill).view(np.uint32), values.view(np.uint32)):
        return None
    return packed


def _decode(ints: Any, scale: np.float32, offset: np.float32, fill: Any) -> Any:
    """float32 values of packed integers: ``ints * scale (+ offset)``, NaN where ``fill``."""
    out = ints.astype(np.float32) * scale
    if offset != 0:
        out = out + offset
    return np.where(ints == fill, np.float32(np.nan), out)


def unpack(raw: xr.DataArray) -> xr.DataArray:
    """The float32 values of a variable :func:`_pack` stored, read undecoded (lazy stays lazy).

    Their ``encoding`` keeps the packing (:data:`PACK_ENCODING`), as xarray keeps a variable's
    encoding for the round trip: what is cut from them and committed again (a crop, a cube
    refreshed with new dates) is packed again, when that is still lossless."""
    if raw.chunks is None:  # not lazy: read the integers once, not once per use below
        raw = raw.load()
    attrs = dict(raw.attrs)
    scale, offset = np.float32(attrs.pop("scale_factor")), np.float32(attrs.pop("add_offset", 0.0))
    fill = attrs.pop("_FillValue", raw.encoding.get("_FillValue"))
    attrs.pop(PACKED_ATTR)
    spec = {} if fill is None else {
        PACK_ENCODING: {"dtype": str(raw.dtype), "scale_factor": float(scale), "add_offset": float(offset), "fill": int(fill)}
    }
    if raw.chunks is None and fill is not None:  # in memory: numpy, in place, the same values
        ints = raw.values
        values = ints.astype(np.float32)
        values *= scale
        if offset != 0:
            values += offset
        values[ints == fill] = np.nan
        loaded = raw.copy(data=values)
        loaded.attrs, loaded.encoding = attrs, spec
        return loaded
    out = raw.astype(np.float32) * scale
    if offset != 0:
        out = out + offset
    if fill is not None:
        out = out.where(raw != fill)
    out.attrs, out.encoding = attrs, spec
    return out


def _attr(value: Any) -> Any:
    """Make an attribute value JSON-safe (numpy scalars, dates)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
