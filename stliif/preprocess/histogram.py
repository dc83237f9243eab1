"""Radiometric adaptation of LR revisits by CDF matching of the HSV value channel.

Two modes:

``paper``
    Reproduces the original study's ``reference/temporal_subset/<AOI>/{1..5}.png`` pixel for
    pixel (all 155 frames of the WorldStrat subset identical). Recipe, recovered by experiment:

    1. True colour (B04, B03, B02) as float32 reflectance ``float32(DN) / 10000``; no data -> 0.
    2. 8 bit: ``(x / x.max() * 255).astype(uint8)`` in float32 (global max of the three bands,
       truncation).
    3. OpenCV ``cvtColor(RGB2HSV)`` on uint8 (H in 0..179, S and V in 0..255, fixed-point).
    4. V CDF-matched to the V of the reference revisit (prepared by steps 1-3) with
       ``skimage.exposure.match_histograms``; the float result is truncated into the uint8 array.
    5. OpenCV ``cvtColor(HSV2RGB)`` on uint8 as built with AVX2: float32 arithmetic, truncation
       for whole 32-pixel blocks of each row and rounding for the row's remaining pixels.

``clean``
    No human choice: each revisit's V is CDF-matched, on valid clear pixels only, to the V of the
    per-pixel median composite of the given revisits; hue and saturation are kept exactly (RGB is
    scaled by ``V' / V``) and the output stays float32 reflectance.

    NIR (B08, :func:`match_nir_clean`) is matched in the same mode, to the same composite, band
    by band: its CDF over each revisit's valid pixels is mapped to the CDF of the composite's
    B08. It is kept out of V so that R, G, B (and every RGB number) are exactly what they were;
    a plain per-band CDF match is the one-channel analogue of the V rule (the same reference,
    the same pixels, the same arithmetic), and it keeps each revisit's NIR ordering, so NDVI's
    spatial pattern survives. The study's paper mode is RGB only: there is no study NIR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from stliif.errors import InvalidInputError, NoDataError

__all__ = [
    "NIR_BAND",
    "PAPER_REFERENCE_REVISIT",
    "RGB_BANDS",
    "adapt_clean",
    "adapt_paper",
    "match_cdf",
    "match_nir_clean",
    "match_value_channel",
    "match_value_channel_paper",
    "to_uint8_paper",
]

RGB_BANDS: tuple[str, str, str] = ("B04", "B03", "B02")
"""Sentinel-2 bands of the true-colour image, in (red, green, blue) order."""

NIR_BAND = "B08"
"""Sentinel-2 near infrared band matched with SPOT's NIR (10 m, like B04, B03, B02)."""

PAPER_REFERENCE_REVISIT: dict[str, int] = {
    "Amnesty_POI-13-1-1": 3,
    "Amnesty_POI-6-3-3": 5,
    "Amnesty_POI-8-1-1": 3,
    "Landcover-14956": 1,
    "Landcover-1864782": 5,
    "Landcover-1865521": 5,
    "Landcover-31746": 8,
    "Landcover-461460": 5,
    "Landcover-769356": 7,
    "Landcover-769486": 1,
    "Landcover-770156": 2,
    "Landcover-770516": 11,
    "Landcover-771435": 8,
    "Landcover-771536": 2,
    "Landcover-771547": 1,
    "Landcover-772421": 5,
    "Landcover-772423": 2,
    "Landcover-777404": 7,
    "Landcover-777410": 7,
    "Landcover-8732": 7,
    "UNHCR-7977": 2,
    "UNHCR-AFGs000003": 5,
    "UNHCR-AFGs003914": 3,
    "UNHCR-CODs026828": 3,
    "UNHCR-CODs026832": 5,
    "UNHCR-NERs009694": 6,
    "UNHCR-NERs009697": 3,
    "UNHCR-NGAs036019": 2,
    "UNHCR-NGAs036021": 3,
    "UNHCR-TGOs003383": 3,
    "UNHCR-THAs001547": 2,
}
"""WorldStrat revisit number ``n`` (1-based) the study matched each AOI's histograms to."""

PAPER_RULE = (
    "paper: RGB=(B04,B03,B02) float32(DN)/1e4, nodata->0; uint8=trunc(x/max(x)*255); "
    "OpenCV uint8 RGB2HSV; V CDF-matched (skimage match_histograms, truncated) to the reference "
    "revisit's V; OpenCV uint8 HSV2RGB (AVX2: trunc in 32-px blocks, round in the row tail)"
)
CLEAN_RULE = (
    "clean: valid = data_mask==1 & clm==0 (or the given clear mask) & RGB finite; reference = "
    "per-pixel per-band median of the valid pixels of the given revisits; V=max(R,G,B) of each "
    "revisit CDF-matched on its valid pixels to the reference V on pixels valid in >=1 revisit; "
    "RGB scaled by V'/V (hue, saturation kept; V==0 -> grey V'); invalid pixels NaN"
)
NIR_RULE = (
    "clean NIR: valid = the RGB rule's valid pixels & B08 finite; reference = per-pixel median of "
    "the valid B08 of the given revisits; each revisit's B08 CDF-matched on its valid pixels to the "
    "reference B08 on pixels valid in >=1 revisit (per band, not in V); invalid pixels NaN"
)

_DN_SCALE = np.float32(10000.0)
_CV_SIMD_PIXELS = 32  # OpenCV HSV2RGB_b, AVX2: 4 x 8 float32 lanes per SIMD iteration
_HSV_SHIFT = 12
_HALF = 1 << (_HSV_SHIFT - 1)
_i = np.arange(1, 256, dtype=np.float64)
_SDIV = np.concatenate([[0], np.rint((255 << _HSV_SHIFT) / _i)]).astype(np.int64)
_HDIV180 = np.concatenate([[0], np.rint((180 << _HSV_SHIFT) / (6.0 * _i))]).astype(np.int64)
del _i


# --------------------------------------------------------------------------------------------
# generic CDF matching
# --------------------------------------------------------------------------------------------


def match_cdf(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Map ``source`` values so that their empirical CDF matches the one of ``template``.

    Same arithmetic as ``skimage.exposure.match_histograms`` on one channel: each distinct
    source value goes to ``interp(cdf_source(value), cdf_template, template values)``.

    Args:
        source: Values to transform, any shape; must be finite.
        template: Values whose distribution is wanted, any shape; must be finite.

    Returns:
        float64 array shaped like ``source``.
    """
    source = np.asarray(source)
    template = np.asarray(template)
    if source.size == 0 or template.size == 0:
        raise NoDataError("CDF matching needs at least one source and one template value")
    if not (np.isfinite(source).all() and np.isfinite(template).all()):
        raise InvalidInputError("CDF matching needs finite values; mask NaN/inf out first")
    _, s_index, s_counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    t_values, t_counts = np.unique(template.ravel(), return_counts=True)
    s_quantiles = np.cumsum(s_counts) / source.size
    t_quantiles = np.cumsum(t_counts) / template.size
    mapped = np.interp(s_quantiles, t_quantiles, t_values.astype(np.float64))
    return mapped[s_index.ravel()].reshape(source.shape)


def _check_rgb(name: str, rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise InvalidInputError(f"{name} must have shape (3, y, x) (R, G, B), got {rgb.shape}")
    if rgb.shape[1] == 0 or rgb.shape[2] == 0:
        raise InvalidInputError(f"{name} is empty: shape {rgb.shape}")
    return rgb


def _check_mask(name: str, mask: np.ndarray | None, rgb: np.ndarray) -> np.ndarray:
    finite = np.isfinite(rgb).all(axis=0)
    if mask is None:
        return finite
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[1:]:
        raise InvalidInputError(f"{name} must have shape {rgb.shape[1:]} (y, x), got {mask.shape}")
    if mask.dtype != bool:
        raise InvalidInputError(f"{name} must be a boolean mask, got dtype {mask.dtype}")
    return mask & finite


def match_value_channel(
    image: np.ndarray,
    reference: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    reference_valid: np.ndarray | None = None,
) -> np.ndarray:
    """CDF-match the HSV value channel of ``image`` to that of ``reference``, keeping H and S.

    V = max(R, G, B). The CDFs are built from valid pixels only; hue and saturation are kept
    exactly by scaling each valid pixel's RGB by ``V' / V`` (a black pixel, V = 0, becomes grey
    V'). No quantisation happens: use :func:`match_value_channel_paper` for the study's uint8
    round trip.

    Args:
        image: RGB, shape (3, y, x), any real dtype.
        reference: RGB, shape (3, y', x'); its size may differ from ``image``'s.
        valid: Boolean (y, x): pixels of ``image`` to use and transform. Default: finite pixels.
            Non-finite pixels are never valid.
        reference_valid: Boolean (y', x'): pixels of ``reference`` defining the target CDF.
            Default: finite pixels.

    Returns:
        Float array (3, y, x) (float32 for integer or float32 input); pixels outside ``valid``
        are NaN.

    Raises:
        InvalidInputError: Bad shapes or mask dtypes.
        NoDataError: No valid pixel in ``image`` or in ``reference``.
    """
    image = _check_rgb("image", image)
    reference = _check_rgb("reference", reference)
    valid = _check_mask("valid", valid, image)
    reference_valid = _check_mask("reference_valid", reference_valid, reference)
    if not valid.any():
        raise NoDataError("image has no valid pixel to match")
    if not reference_valid.any():
        raise NoDataError("reference has no valid pixel to match to")
    dtype = np.result_type(image.dtype, np.float32)
    rgb = image[:, valid].astype(np.float64)
    v = rgb.max(axis=0)
    v_ref = reference[:, reference_valid].astype(np.float64).max(axis=0)
    v_new = match_cdf(v, v_ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(v > 0, rgb * (v_new / v), v_new)
    out = np.full(image.shape, np.nan, dtype=dtype)
    out[:, valid] = scaled
    return out


# --------------------------------------------------------------------------------------------
# paper mode: the study's uint8 / OpenCV pipeline
# --------------------------------------------------------------------------------------------


def _study_float32(reflectance: np.ndarray) -> np.ndarray:
    """Reflectance as the released float32 files hold it: ``float32(DN) / 10000``, NaN -> 0.

    Idempotent on such values; it undoes the 1-ulp differences of ``DN * 1e-4``.
    """
    x = np.nan_to_num(np.asarray(reflectance, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.rint(x * 10000.0).astype(np.float32) / _DN_SCALE


def to_uint8_paper(rgb: np.ndarray, *, requantize: bool = True) -> np.ndarray:
    """The study's 8-bit conversion: ``(x / x.max() * 255).astype(uint8)`` in float32.

    Args:
        rgb: Surface reflectance, any shape (e.g. (3, y, x)); NaN (no data) counts as 0.
        requantize: Rebuild values as ``float32(DN) / 10000`` first (DN = round(x * 10000)),
            as in the released float32 files the study read; this makes the result exact for
            reflectance decoded as ``DN * 1e-4``. Disable for inputs not on a 1e-4 grid.

    Returns:
        uint8 array shaped like ``rgb``.

    Raises:
        NoDataError: The maximum is not positive (nothing but no data).
    """
    rgb = np.asarray(rgb)
    if rgb.size == 0:
        raise InvalidInputError("to_uint8_paper needs a non-empty array")
    if requantize:
        x = _study_float32(rgb)
    else:
        x = np.nan_to_num(rgb.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = x.max()
    if not top > 0:
        raise NoDataError("image has no positive value: cannot scale it by its maximum")
    scaled = x / top * np.float32(255.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _cv_rgb2hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV ``RGB2HSV`` on uint8 (fixed point, H in 0..179); input (3, y, x)."""
    r, g, b = (c.astype(np.int64) for c in rgb)
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    s = (diff * _SDIV[v] + _HALF) >> _HSV_SHIFT
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HDIV180[diff] + _HALF) >> _HSV_SHIFT
    h = np.where(h < 0, h + 180, h)
    return h, s, v


def _cv_hsv2rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """OpenCV ``HSV2RGB`` on uint8 as built with AVX2; (y, x) channels in, (3, y, x) out."""
    f32 = np.float32
    one = f32(1.0)
    hh = h.astype(f32) * (f32(6.0) / f32(180.0))
    ss = s.astype(f32) * f32(1.0 / 255.0)
    vv = v.astype(f32) * f32(1.0 / 255.0)
    sector = np.trunc(hh)
    frac = hh - sector
    t0 = vv
    t1 = vv * (one - ss)
    t2 = vv * (one - ss * frac)
    t3 = vv * (one - ss * (one - frac))
    red = np.select([sector < 1, sector == 1, sector < 4, sector == 4], [t0, t2, t1, t3], t0)
    green = np.select([sector < 1, sector < 3, sector == 3], [t3, t0, t2], t1)
    blue = np.select([sector < 2, sector == 2, sector < 5], [t1, t3, t0], t2)
    out = np.stack([red, green, blue]) * f32(255.0)
    width = out.shape[-1]
    whole = width - width % _CV_SIMD_PIXELS  # SIMD part truncates, the row tail rounds
    res = np.empty(out.shape, dtype=np.uint8)
    res[..., :whole] = np.clip(np.trunc(out[..., :whole]), 0, 255)
    res[..., whole:] = np.clip(np.rint(out[..., whole:]), 0, 255)
    return res


def match_value_channel_paper(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The study's uint8 V matching: OpenCV HSV round trip with V CDF-matched to ``reference``.

    Args:
        image: uint8 RGB, shape (3, y, x), e.g. from :func:`to_uint8_paper`.
        reference: uint8 RGB, shape (3, y', x'); every pixel defines the target CDF.

    Returns:
        uint8 RGB, shape (3, y, x).
    """
    image = _check_rgb("image", image)
    reference = _check_rgb("reference", reference)
    if image.dtype != np.uint8 or reference.dtype != np.uint8:
        raise InvalidInputError(
            f"paper matching works on uint8 images, got {image.dtype} and {reference.dtype}"
        )
    h, s, v = _cv_rgb2hsv(image)
    v_ref = reference.max(axis=0)  # OpenCV's V is max(R, G, B)
    v_new = match_cdf(v, v_ref).astype(np.uint8)  # assignment into the uint8 HSV array
    return _cv_hsv2rgb(h, s, v_new)


# --------------------------------------------------------------------------------------------
# Dataset level
# --------------------------------------------------------------------------------------------


def _rgb_reflectance(lr: xr.Dataset) -> xr.DataArray:
    if not isinstance(lr, xr.Dataset) or "reflectance" not in lr:
        raise InvalidInputError("expected an LR Dataset with a 'reflectance' variable (read_lr)")
    refl = lr["reflectance"]
    if set(refl.dims) != {"time", "band", "y", "x"}:
        raise InvalidInputError(f"reflectance must have dims (time, band, y, x), got {refl.dims}")
    missing = [b for b in RGB_BANDS if b not in refl["band"].values]
    if missing:
        raise InvalidInputError(f"reflectance lacks the true-colour band(s) {missing}")
    if "revisit" not in refl.coords:
        raise InvalidInputError("reflectance lacks the 'revisit' coordinate along time")
    return refl.sel(band=list(RGB_BANDS)).transpose("time", "band", "y", "x")


def _time_index(lr: xr.Dataset, revisit: int) -> int:
    numbers = [int(n) for n in lr["revisit"].values]
    if isinstance(revisit, bool) or not isinstance(revisit, (int, np.integer)):
        raise InvalidInputError(f"revisit numbers are integers, got {revisit!r}")
    if int(revisit) not in numbers:
        raise InvalidInputError(f"revisit {revisit} not in the dataset (has {sorted(numbers)})")
    return numbers.index(int(revisit))


def _selection(lr: xr.Dataset, revisits: Sequence[int] | None) -> list[int]:
    """Time indices of ``revisits`` (WorldStrat n) in the dataset's time order."""
    if revisits is None:
        return list(range(lr.sizes["time"]))
    if isinstance(revisits, (str, bytes)) or not isinstance(revisits, Sequence):
        raise InvalidInputError(f"revisits must be a sequence of revisit numbers, got {revisits!r}")
    if len(revisits) == 0:
        raise InvalidInputError("revisits is empty")
    indices = [_time_index(lr, n) for n in revisits]
    if len(set(indices)) != len(indices):
        raise InvalidInputError(f"revisits has duplicates: {list(revisits)}")
    return sorted(indices)


def _as_rgb_array(template: xr.DataArray, data: np.ndarray, attrs: dict) -> xr.DataArray:
    out = template.copy(data=data).assign_coords(band=["red", "green", "blue"])
    out.name = "rgb"
    out.attrs, out.encoding = attrs, {}  # matched values, not the source's DN: not packed
    return out


def adapt_paper(
    lr: xr.Dataset,
    *,
    reference_revisit: int,
    revisits: Sequence[int] | None = None,
) -> xr.DataArray:
    """The study's ``temporal_subset`` frames: uint8 true colour, V matched to one revisit.

    Args:
        lr: LR cube from ``read_lr`` (``reflectance`` (time, band, y, x), ``revisit`` along time).
        reference_revisit: WorldStrat revisit number ``n`` to match to, e.g.
            ``PAPER_REFERENCE_REVISIT[aoi]``.
        revisits: Revisit numbers to return (default: all), output in the dataset's time order.

    Returns:
        uint8 DataArray (time, band, y, x), band = ["red", "green", "blue"], with the cube's
        coordinates (time, revisit, y, x, ...) and the recipe in ``attrs``.

    Raises:
        InvalidInputError: Missing variables or bands, unknown or duplicate revisit numbers.
        NoDataError: A selected or the reference revisit holds nothing but no data.
    """
    rgb = _rgb_reflectance(lr)
    ref_index = _time_index(lr, reference_revisit)
    indices = _selection(lr, revisits)
    reference = to_uint8_paper(rgb.isel(time=ref_index).values)
    frames = [
        match_value_channel_paper(to_uint8_paper(rgb.isel(time=i).values), reference)
        for i in indices
    ]
    attrs = {
        "aoi": lr.attrs.get("aoi", ""),
        "histogram_matching": PAPER_RULE,
        "reference_revisit": int(reference_revisit),
    }
    return _as_rgb_array(rgb.isel(time=indices), np.stack(frames), attrs)


def nanmedian_time(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=0)`` to the bit (all-NaN: NaN, no warning), without the masked
    arrays numpy uses along a short axis: 3x faster for a few revisits.

    The middle value, or the mean of the two middle values computed as numpy does,
    ``(low + high) / 2`` in ``a``'s dtype."""
    ordered = np.sort(a, axis=0)  # NaN last
    n = np.sum(~np.isnan(a), axis=0)
    h = n // 2
    low = np.take_along_axis(ordered, np.where(n % 2 == 1, h, np.maximum(h - 1, 0))[None], axis=0)[0]
    high = np.take_along_axis(ordered, np.minimum(h, a.shape[0] - 1)[None], axis=0)[0]
    out = (low + high) / a.dtype.type(2)
    out[n == 0] = np.nan
    return out


def _clean_valid(
    lr: xr.Dataset, rgb: xr.DataArray, revisits: Sequence[int], clear: np.ndarray | xr.DataArray | None
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Time indices of ``revisits``, their ``(T, 3, y, x)`` float32 RGB and ``(T, y, x)`` validity
    (the clean rule of :func:`adapt_clean`)."""
    if revisits is None:
        raise InvalidInputError("adapt_clean needs the selected revisits")
    indices = _selection(lr, revisits)
    for var in ("data_mask", "clm") if clear is None else ("data_mask",):
        if var not in lr:
            raise InvalidInputError(f"LR cube lacks variable {var!r} needed for the valid mask")
    shape3 = (lr.sizes["time"], lr.sizes["y"], lr.sizes["x"])
    if clear is None:
        cloud_free = lr["clm"].transpose("time", "y", "x").values == 0
    else:
        if isinstance(clear, xr.DataArray):
            clear = clear.transpose("time", "y", "x").values
        cloud_free = np.asarray(clear)
        if cloud_free.shape != shape3:
            raise InvalidInputError(
                f"clear must have shape {shape3} (time, y, x), got {cloud_free.shape}"
            )
        if cloud_free.dtype != bool:
            raise InvalidInputError(f"clear must be boolean, got dtype {cloud_free.dtype}")
    data = rgb.values[indices].astype(np.float32)
    valid = (
        (lr["data_mask"].transpose("time", "y", "x").values[indices] == 1)
        & cloud_free[indices]
        & np.isfinite(data).all(axis=1)
    )
    if not valid.any():
        raise NoDataError(f"no valid clear pixel in revisits {list(revisits)}")
    return indices, data, valid


def adapt_clean(
    lr: xr.Dataset,
    *,
    revisits: Sequence[int],
    clear: np.ndarray | xr.DataArray | None = None,
) -> xr.DataArray:
    """V-channel CDF matching of revisits to their own median composite, on clear pixels only.

    A pixel of a revisit is valid when ``data_mask == 1`` and ``clm == 0`` (or ``clear`` is
    true, when given) and its three RGB values are finite. The reference is the per-pixel,
    per-band median of the valid pixels of ``revisits``; its V (max of R, G, B) over pixels
    valid in at least one revisit is the target CDF. Each revisit's V over its valid pixels is
    matched to it (:func:`match_value_channel`), hue and saturation kept. Deterministic.

    Args:
        lr: LR cube from ``read_lr`` (``reflectance``, ``data_mask``, ``clm``, ``revisit``).
        revisits: Revisit numbers (WorldStrat n) of the selected, clear revisits; the output
            follows the dataset's time order.
        clear: Optional boolean (time, y, x) over all of ``lr``'s times, replacing ``clm == 0``
            (e.g. ``stliif.preprocess.mask.clear_mask(lr)``).

    Returns:
        float32 reflectance DataArray (time, band, y, x), band = ["red", "green", "blue"], NaN
        where invalid; coordinate ``valid_fraction`` (time); the rule in ``attrs``. A revisit
        without any valid pixel is all NaN (``valid_fraction`` 0).

    Raises:
        InvalidInputError: Missing variables, bad ``clear`` shape, unknown revisit numbers.
        NoDataError: No valid pixel in any of the revisits.
    """
    rgb = _rgb_reflectance(lr)
    indices, data, valid = _clean_valid(lr, rgb, revisits, clear)
    composite = nanmedian_time(np.where(valid[:, None], data, np.nan))
    composite_valid = np.asarray(valid.any(axis=0))
    out = np.full(data.shape, np.nan, dtype=np.float32)
    for k in range(len(indices)):
        if valid[k].any():
            out[k] = match_value_channel(
                data[k], composite, valid=valid[k], reference_valid=composite_valid
            )
    attrs = {
        "aoi": lr.attrs.get("aoi", ""),
        "histogram_matching": CLEAN_RULE,
        "composite_revisits": ",".join(str(int(n)) for n in rgb["revisit"].values[indices]),
        "units": "surface reflectance",
    }
    result = _as_rgb_array(rgb.isel(time=indices), out, attrs)
    return result.assign_coords(valid_fraction=("time", valid.mean(axis=(1, 2)).astype(np.float32)))


def match_nir_clean(
    lr: xr.Dataset,
    *,
    revisits: Sequence[int],
    clear: np.ndarray | xr.DataArray | None = None,
    rgb_valid: np.ndarray | None = None,
) -> xr.DataArray:
    """The clean mode's NIR: B08 of ``revisits`` CDF-matched, band by band, to the B08 of their
    clear median composite (``NIR_RULE``; valid pixels as :func:`adapt_clean`'s, and B08 finite).

    Args:
        lr: LR cube from ``read_lr`` with band ``B08``.
        revisits: As :func:`adapt_clean`'s.
        clear: As :func:`adapt_clean`'s.
        rgb_valid: The RGB rule's validity of the selected revisits, ``(T, y, x)`` boolean, when
            already known (``np.isfinite(adapt_clean(...)).all(axis=1)``, the same pixels): not
            computed again.

    Returns:
        float32 reflectance DataArray (time, y, x) named ``nir``, NaN where invalid, in the
        dataset's time order (the order of :func:`adapt_clean`'s output).

    Raises:
        InvalidInputError: No B08 band, or :func:`adapt_clean`'s errors.
        NoDataError: No valid pixel in any of the revisits.
    """
    rgb = _rgb_reflectance(lr)
    if NIR_BAND not in lr["reflectance"]["band"].values:
        raise InvalidInputError(f"reflectance lacks the near infrared band {NIR_BAND}")
    if rgb_valid is None:
        indices, _, valid = _clean_valid(lr, rgb, revisits, clear)
    else:
        indices, valid = _selection(lr, revisits), np.asarray(rgb_valid, dtype=bool)
        if valid.shape != (len(indices), lr.sizes["y"], lr.sizes["x"]):
            raise InvalidInputError(f"rgb_valid must have shape {(len(indices), lr.sizes['y'], lr.sizes['x'])}, "
                                    f"got {valid.shape}")  # fmt: skip
    nir = lr["reflectance"].sel(band=NIR_BAND).transpose("time", "y", "x").isel(time=indices)
    data = nir.values.astype(np.float32)
    valid = valid & np.isfinite(data)
    if not valid.any():
        raise NoDataError(f"no valid clear NIR pixel in revisits {list(revisits)}")
    composite = nanmedian_time(np.where(valid, data, np.nan))
    reference = composite[valid.any(axis=0)]
    out = np.full(data.shape, np.nan, dtype=np.float32)
    for k in range(len(indices)):
        if valid[k].any():
            out[k][valid[k]] = match_cdf(data[k][valid[k]], reference)
    result = nir.copy(data=out).drop_vars("band", errors="ignore")
    result.name, result.encoding = "nir", {}
    result.attrs = {"aoi": lr.attrs.get("aoi", ""), "histogram_matching": NIR_RULE, "band": NIR_BAND,
                    "units": "surface reflectance"}
    return result
