"""How artifacts are encoded in the store and moved between memory and the repository.

Datasets are encoded for Zarr (chunks, Blosc LZ4, CF-packed integers where asked), written into
memory and copied to an Icechunk session, each in a few batches of concurrent writes; a loaded
read fetches an artifact's keys at once. :mod:`stliif.store` uses these.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from typing import Any

import icechunk
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

__all__ = ["COMPRESSOR", "PACKED_ATTR", "PACK_ENCODING", "encoded", "fetch_group", "put_group", "unpack", "write_group"]

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


COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
"""The compressor of the arrays written: Blosc LZ4 with byte shuffle (Zarr sets the element
size from the dtype): on real artifacts smaller and faster than zstd level 1, the choice before
(pansharpened RGBN 13.7 instead of 15.0 MB, encoded in half the time; docs/benchmarks.md,
issue 20). Stores written with another codec read the same (it is in each array's metadata)."""


def _compressors(var: xr.Variable | xr.DataArray) -> dict[str, Any]:
    """The compressor encoding of a numeric array (others keep Zarr's default)."""
    if var.dtype.kind not in "biufcmM":
        return {}
    return {"compressors": (COMPRESSOR,)}


def write_group(dst: Any, path: str, ds: xr.Dataset) -> None:
    """Write ``ds`` (in memory, as :func:`encoded` makes it) as the group ``path`` of the Zarr
    store ``dst`` (mode "w": what was there goes; missing parents are made): the keys and bytes
    ``ds.to_zarr(dst, group=path, mode="w", zarr_format=3, consolidated=False)`` writes, with
    xarray's own CF encoding, but the group and every array's metadata in one batch of
    concurrent writes, then every chunk in another (numeric chunks encoded beforehand in this
    thread, :func:`_encode_chunks`), instead of a round trip to Zarr's event loop per array,
    chunk and codec."""
    from xarray import conventions
    from xarray.backends.zarr import (
        FillValueCoder,
        encode_zarr_attr_value,
        encode_zarr_variable,
        extract_zarr_variable_encoding,
    )
    from xarray.coding.strings import check_vlen_dtype
    from zarr.api.asynchronous import open_group
    from zarr.core.sync import sync

    variables, attrs = conventions.encode_dataset_coordinates(ds)
    arrays = []
    for name, var in variables.items():  # as xarray's ZarrStore.set_variables, for new arrays
        v = encode_zarr_variable(var, name=name)
        v_attrs = v.attrs.copy()
        fill = v.encoding.pop("fill_value", None)
        if fill is None and v.dtype.kind == "f":
            fill = np.nan  # xarray's default for floats (Zarr's is 0)
        if (fv := v_attrs.pop("_FillValue", None)) is not None:
            v_attrs["_FillValue"] = FillValueCoder.encode(fv, v.dtype)
        if v.encoding.pop("_FillValue", None) is not None:
            raise ValueError("Zarr does not support _FillValue in encoding.")
        enc = extract_zarr_variable_encoding(v, raise_on_invalid=False, name=name, zarr_format=3)
        enc["config"] = {c: enc.pop(c) for c in ("write_empty_chunks", "order") if c in enc}
        enc.update(dimension_names=v.dims)  # the group is new (mode "w"): no array to overwrite
        dtype = str if check_vlen_dtype(v.dtype) is str else v.dtype
        v_attrs = {k: encode_zarr_attr_value(a) for k, a in v_attrs.items()}
        arrays.append((name, v, dtype, fill, enc, v_attrs))

    async def create() -> list[Any]:
        group = await open_group(dst, mode="w", path=path, zarr_format=3)
        await group.update_attributes({k: encode_zarr_attr_value(a) for k, a in attrs.items()})
        return await asyncio.gather(*(
            group.create_array(name, shape=v.shape, dtype=dtype, fill_value=fill, attributes=a, **enc)
            for name, v, dtype, fill, enc, a in arrays
        ))  # fmt: skip

    made = sync(create())
    chunks: dict[str, Any] = {}
    rest = []
    for arr, (_, v, *_) in zip(made, arrays, strict=True):
        encoded_chunks = _encode_chunks(arr, v.data)
        if encoded_chunks is None:
            rest.append((arr, v))
        else:
            chunks.update(encoded_chunks)

    async def write() -> None:
        await asyncio.gather(
            *(arr.setitem(tuple(slice(None) for _ in v.dims), np.asarray(v.data)) for arr, v in rest),
            *(dst.set(k, b) for k, b in chunks.items()),
        )

    sync(write())


def _encode_chunks(arr: Any, values: Any) -> dict[str, Any] | None:
    """Every stored chunk of the new array ``arr`` holding ``values`` (numeric, in memory), keyed
    by its store key and encoded here by the array's own codecs as Zarr's ``setitem`` does (edge
    chunks padded with the fill value, chunks all fill value not written), without a round trip
    to the event loop per chunk and codec; None when Zarr must do it (other codecs, dtypes,
    memory order, or a 0-d array)."""
    from zarr.codecs import BytesCodec
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.codec_pipeline import fill_value_or_default

    meta = arr.metadata
    codecs = meta.codecs
    if (
        not isinstance(values, np.ndarray) or values.dtype.kind not in "biuf" or values.ndim == 0
        or arr.config.order != "C" or not isinstance(codecs[0], BytesCodec)
        or not all(hasattr(c, "_encode_sync") for c in codecs)
    ):  # fmt: skip
        return None
    proto = default_buffer_prototype()
    shape, chunk_shape = values.shape, meta.chunk_grid.chunk_shape
    spec = meta.get_chunk_spec((0,) * values.ndim, arr.config, proto)  # one for every chunk of a regular grid
    fill = fill_value_or_default(spec)
    out: dict[str, Any] = {}
    for coords in itertools.product(*(range(-(-n // c)) for n, c in zip(shape, chunk_shape, strict=True))):
        block = values[tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, chunk_shape, strict=True))]
        if block.shape != tuple(chunk_shape):  # an edge chunk: stored whole, padded with the fill value
            full = np.full(chunk_shape, fill, dtype=values.dtype)
            full[tuple(slice(0, n) for n in block.shape)] = block
            block = full
        data = proto.nd_buffer.from_numpy_array(np.ascontiguousarray(block))
        # Zarr's test of a chunk of fill value, after the same test on its first value alone
        # (most chunks hold data, and one value tells)
        first = proto.nd_buffer.from_numpy_array(block.reshape(-1)[:1])
        if not spec.config.write_empty_chunks and first.all_equal(fill) and data.all_equal(fill):
            continue
        for codec in codecs:
            data = codec._encode_sync(data, spec)
        out[f"{arr.path}/{meta.encode_chunk_key(coords)}"] = data
    return out


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
    dn = values - offset if offset != 0 else values.copy()  # float32, in place from here
    with np.errstate(invalid="ignore"):
        dn /= scale
    np.rint(dn, out=dn)  # the check below catches any rounding
    np.copyto(dn, np.float32(fill), where=nan)
    # in range, and the fill only where NaN was
    if dn.size and (dn.min() < info.min or dn.max() > info.max or np.count_nonzero(dn == fill) != np.count_nonzero(nan)):
        return None
    ints = dn.astype(dtype)
    del dn
    if not np.array_equal(_decode(ints, scale, offset, fill, nan).view(np.uint32), values.view(np.uint32)):
        return None
    attrs = {**var.attrs, "scale_factor": float(scale), "add_offset": float(offset), "_FillValue": fill,
             PACKED_ATTR: "float32"}
    return xr.DataArray(ints, dims=var.dims, coords=var.coords, attrs=attrs)


def _decode(ints: Any, scale: np.float32, offset: np.float32, fill: Any, where: Any = None) -> Any:
    """float32 values of packed integers: ``ints * scale (+ offset)``, NaN where ``fill``
    (``where``: that mask, when known)."""
    out = ints.astype(np.float32)
    out *= scale
    if offset != 0:
        out += offset
    np.copyto(out, np.float32(np.nan), where=ints == fill if where is None else where)
    return out


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
