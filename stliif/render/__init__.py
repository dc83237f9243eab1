"""Render a continuous space-time model at any date and resolution, as georeferenced products.

A render asks a model (a checkpoint, a run folder or any protocol-P style predictor) for the
image of an LR cube (``raw/<aoi>`` in the store, or a crop of one, ``crop/raw/<aoi>/<name>``:
``reflectance`` (time, band, y, x) with CRS) at one date and one scale:

1. **Revisits**: the ``k`` revisits closest in time to the date among those with a clear
   fraction (over the area, :func:`stliif.preprocess.mask.clear_fraction`) of at least
   ``min_clear`` (all revisits when the clear fractions are unknown), in date order. Dates are
   matched by acquisition day: a revisit acquired at 10:30 on the requested day is 0 days away.
2. **Temporal support**: the distance in days to the nearest revisit used is recorded
   (``nearest_revisit_days``); beyond ``max_gap_days`` the request is refused unless
   ``allow_far=True``, in which case the result is flagged (``temporal_support="extrapolated"``).
3. **Radiometry**: RGB reflectance (B04, B03, B02) becomes 8-bit: divided by the brightest
   clear pixel of the revisits used (at least the maximum of their temporal median, protocol C's
   scale), so no clear pixel is clipped, with missing pixels filled from the median; the model's
   8-bit output is mapped back with the same scale, so renders are reflectance.
4. **Grid**: the LR footprint divided into ``round(scale * H) x round(scale * W)`` pixels: the
   bounds are the cube's, the CRS the cube's; ``gsd`` (metres) sets the scale from the LR pixel
   size (10 m for Sentinel-2 unless the cube's CRS is projected).
5. **Area**: output pixels outside the cube's area (its pixels with data on some date,
   ``data_mask``, within its ``geometry`` attribute when it has one) are NaN, the declared
   nodata of the render and of its COG.

6. **Tiles**: the grid is rendered by tiles, each from the LR window around it widened by the
   model's receptive field, so that the mosaic equals a one-shot render
   (:mod:`stliif.render.tiles`); memory is bounded by the tile, not by the area. Renders from
   the store stream their tiles to disk, resume after a kill and can run on a Dask cluster.

:func:`render` returns an ``xarray.DataArray`` (band, y, x) with coordinates and CRS
(rioxarray); :func:`render_series` stacks dates along ``time``; :func:`run_render` renders from
the store, writes the files and commits. :func:`write_cog`, :func:`write_quicklook` and
:func:`write_animation` write what QGIS and people open.

Modules: :mod:`~stliif.render.request` (what a request means), :mod:`~stliif.render.tiles`
(tiling, statistics, sinks, Dask), :mod:`~stliif.render.run` (renders),
:mod:`~stliif.render.products` (pictures).
"""

from stliif.cog import write_cog
from stliif.render.products import write_animation, write_quicklook, write_strip
from stliif.render.request import (
    RGB_BANDS,
    check_render_budget,
    load_predictor,
    model_id,
    select_revisits,
    series_dates,
    temporal_support,
)
from stliif.render.run import (
    RenderPlan,
    check_render,
    dask_client,
    render,
    render_series,
    run_render,
)

__all__ = [
    "RGB_BANDS",
    "RenderPlan",
    "check_render",
    "check_render_budget",
    "dask_client",
    "load_predictor",
    "model_id",
    "render",
    "render_series",
    "run_render",
    "select_revisits",
    "series_dates",
    "temporal_support",
    "write_animation",
    "write_cog",
    "write_quicklook",
    "write_strip",
]
