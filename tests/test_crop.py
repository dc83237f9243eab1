"""Square and polygon crops: synthetic georeferenced cubes, a broken-file corpus, real AOIs."""

from __future__ import annotations

import math
import warnings

import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer

from stliif.errors import InvalidInputError, NoDataError
from stliif.preprocess.crop import crop_polygon, crop_square
from stliif.preprocess.vectors import read_polygon
from stliif.sources.worldstrat import read_aoi
from stliif.testing import grid_cube

UTM = "EPSG:32633"


def make_cube(
    transform: Affine, shape: tuple[int, int], crs: str = "EPSG:4326", *, times: int = 2
) -> xr.Dataset:
    """A (time, band, y, x) float32 cube plus a (time, y, x) uint8 mask on a north-up grid."""
    mask = np.ones((times, *shape), np.uint8)
    return grid_cube(transform, shape, crs, times=times, masks={"data_mask": mask})


GEO_T = Affine(1e-4, 0, 10.0, 0, -1e-4, 45.0)  # ~7.9 m x 11.1 m pixels at 45 N
UTM_T = Affine(10.0, 0, 500_000.0, 0, -10.0, 5_000_000.0)


def metres_per_degree(lat: float) -> tuple[float, float]:
    """WGS84 metres per degree of longitude and latitude (standard series)."""
    p = math.radians(lat)
    lon = 111412.84 * math.cos(p) - 93.5 * math.cos(3 * p) + 0.118 * math.cos(5 * p)
    lat_m = 111132.92 - 559.82 * math.cos(2 * p) + 1.175 * math.cos(4 * p) - 0.0023 * math.cos(6 * p)
    return lon, lat_m


# ---------------------------------------------------------------------------------- crop_square


@pytest.mark.integration
def test_square_on_real_aoi_has_metric_size(worldstrat):
    lr, hr = read_aoi(worldstrat, "Landcover-31746")
    lon, lat = lr.attrs["lon"], lr.attrs["lat"]
    res_x, res_y = (abs(r) for r in lr.rio.resolution())
    m_lon, m_lat = metres_per_degree(lat)
    out = crop_square(lr, center=(lon, lat), size_m=1000)
    assert (out.sizes["time"], out.sizes["band"]) == (lr.sizes["time"], lr.sizes["band"])
    assert out.sizes["x"] == round(1000 / (res_x * m_lon))  # ~10.07 m pixels -> 99
    assert out.sizes["y"] == round(1000 / (res_y * m_lat))  # ~9.94 m pixels -> 101
    minx, miny, maxx, maxy = out.rio.bounds()
    assert minx < lon < maxx and miny < lat < maxy
    assert abs((minx + maxx) / 2 - lon) <= res_x and abs((miny + maxy) / 2 - lat) <= res_y
    t = out.rio.transform()
    assert t.a == pytest.approx(res_x) and t.c == pytest.approx(float(out.x[0]) - res_x / 2)
    np.testing.assert_array_equal(out.reflectance.values, lr.reflectance.sel(x=out.x, y=out.y).values)
    # the same square on the 1.5 m pan covers the same ground
    pan = crop_square(hr.pan, center=(lon, lat), size_m=1000)
    assert pan.rio.bounds() == pytest.approx(out.rio.bounds(), abs=2 * abs(hr.pan.rio.resolution()[0]))


def test_square_on_utm_raster_with_lonlat_centre():
    ds = make_cube(UTM_T, (100, 100), UTM)
    lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(500_500.0, 4_999_500.0)
    out = crop_square(ds, center=(lon, lat), size_m=300)
    assert (out.sizes["y"], out.sizes["x"]) == (30, 30)
    assert out.rio.bounds() == pytest.approx((500_350.0, 4_999_350.0, 500_650.0, 4_999_650.0))
    # centre given in the raster's own CRS
    same = crop_square(ds, center=(500_500.0, 4_999_500.0), size_m=300, crs=UTM)
    assert same.rio.bounds() == out.rio.bounds()


def test_square_bbox_keeps_pixels_with_centre_inside_and_georeference():
    ds = make_cube(GEO_T, (40, 50))
    bbox = (10.0010, 44.9970, 10.0030, 44.9990)  # 20 x 20 pixels exactly on pixel edges
    out = crop_square(ds, bbox=bbox)
    assert (out.sizes["y"], out.sizes["x"]) == (20, 20)
    assert out.rio.bounds() == pytest.approx(bbox)
    assert out.rio.crs == ds.rio.crs
    assert out.rio.transform() == pytest.approx(Affine(1e-4, 0, 10.001, 0, -1e-4, 44.999))
    np.testing.assert_array_equal(out.reflectance.values, ds.reflectance.values[:, :, 10:30, 10:30])


def test_square_single_pixel_keeps_transform():
    da = make_cube(GEO_T, (10, 10)).reflectance
    out = crop_square(da, bbox=(10.00031, 44.99961, 10.00039, 44.99969))  # inside one pixel
    assert out.shape == (2, 2, 1, 1)
    assert out.rio.transform() == pytest.approx(Affine(1e-4, 0, 10.0003, 0, -1e-4, 44.9997))


def test_square_outside_and_partly_outside():
    ds = make_cube(UTM_T, (100, 100), UTM)
    with pytest.raises(NoDataError, match="aoi_outside_raster"):
        crop_square(ds, center=(600_000.0, 4_999_500.0), size_m=200, crs=UTM)
    with pytest.raises(NoDataError, match="crop_partly_outside_raster"):
        crop_square(ds, center=(500_000.0, 5_000_000.0), size_m=200, crs=UTM)
    part = crop_square(ds, center=(500_000.0, 5_000_000.0), size_m=200, crs=UTM, allow_partial=True)
    assert (part.sizes["y"], part.sizes["x"]) == (10, 10)
    assert part.rio.bounds() == pytest.approx((500_000.0, 4_999_900.0, 500_100.0, 5_000_000.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"center": (10.002, 44.998), "size_m": -5}, "size_m"),
        ({"center": (10.002, 44.998), "size_m": float("nan")}, "size_m"),
        ({"center": (10.002, 44.998), "size_m": 1.0}, "smaller than half a pixel"),
        ({"center": (10.002, 44.998)}, "center and size_m"),
        ({"center": (10.002, 95.0), "size_m": 100}, "latitude"),
        ({"center": (10.002,), "size_m": 100}, "center"),
        ({"bbox": (10.003, 44.997, 10.001, 44.999)}, "minx < maxx"),
        ({"bbox": (10.0, 44.9, 10.1)}, "bbox"),
        ({"bbox": (10.0, 44.9, 10.1, 45.0), "center": (10.0, 45.0), "size_m": 10}, "not both"),
        ({"bbox": (10.0, 44.9, 10.1, 45.0), "crs": "EPSG:nope"}, "crs"),
    ],
)
def test_square_invalid_arguments(kwargs, match):
    ds = make_cube(GEO_T, (40, 50))
    with pytest.raises(InvalidInputError, match=match):
        crop_square(ds, **kwargs)


def test_square_rejects_ungeoreferenced():
    da = xr.DataArray(np.zeros((4, 4)), dims=("y", "x"), coords={"y": np.arange(4.0), "x": np.arange(4.0)})
    with pytest.raises(InvalidInputError, match="no CRS"):
        crop_square(da, bbox=(0, 0, 2, 2))


# ---------------------------------------------------------------------------------- crop_polygon


def pixel_centres(obj) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(obj.x.values, obj.y.values)


def test_polygon_masks_outside_and_keeps_inside():
    ds = make_cube(GEO_T, (40, 50))
    tri = shapely.Polygon([(10.0005, 44.9995), (10.0045, 44.9995), (10.0005, 44.9965)])
    out = crop_polygon(ds, tri)
    xx, yy = pixel_centres(out)
    inside = shapely.contains_xy(tri, xx, yy)
    assert inside.sum() > 50 and (~inside).sum() > 50
    refl = out.reflectance.values
    assert np.isnan(refl[..., ~inside]).all()
    expected = ds.reflectance.sel(x=out.x, y=out.y).values
    np.testing.assert_array_equal(refl[..., inside], expected[..., inside])
    # every pixel with its centre inside the triangle is in the output window
    full_inside = shapely.contains_xy(tri, *pixel_centres(ds))
    assert inside.sum() == full_inside.sum()
    # integer mask: dtype kept, outside filled with 0 and recorded as nodata
    assert out.data_mask.dtype == np.uint8
    assert (out.data_mask.values[..., ~inside] == 0).all() and (out.data_mask.values[..., inside] == 1).all()
    assert out.data_mask.rio.nodata == 0 and np.isnan(out.reflectance.rio.nodata)
    # georeference: window of the triangle's pixels, same resolution and CRS
    assert out.rio.crs == ds.rio.crs and out.rio.resolution() == pytest.approx(ds.rio.resolution())
    assert out.rio.transform().c == pytest.approx(float(out.x[0]) - 0.5e-4)
    assert out.rio.bounds() == pytest.approx((10.0005, 44.9965, 10.0045, 44.9995), abs=1e-4)


def test_polygon_all_touched_selects_more_pixels_and_dataarray_works():
    da = make_cube(GEO_T, (40, 50)).reflectance
    circle = shapely.Point(10.0025, 44.998).buffer(0.00105)
    centre = crop_polygon(da, circle)
    touched = crop_polygon(da, circle, all_touched=True)
    assert isinstance(centre, xr.DataArray)
    assert int(touched.notnull().sum()) > int(centre.notnull().sum())
    tiny = shapely.box(10.00011, 44.99981, 10.00014, 44.99984)  # inside one pixel, misses its centre
    with pytest.raises(NoDataError, match="all_touched"):
        crop_polygon(da, tiny)
    one = crop_polygon(da, tiny, all_touched=True)
    assert one.shape == (2, 2, 1, 1) and one.rio.transform().c == pytest.approx(10.0001)


def test_polygon_far_away_raises_nodata():
    ds = make_cube(GEO_T, (40, 50))
    far = shapely.box(30.0, 10.0, 30.1, 10.1)
    with pytest.raises(NoDataError, match="aoi_outside_raster") as info:
        crop_polygon(ds, far)
    assert isinstance(info.value, LookupError)


def test_lonlat_polygon_on_utm_raster_is_reprojected():
    ds = make_cube(UTM_T, (100, 100), UTM)
    square = shapely.box(500_200.0, 4_999_300.0, 500_600.0, 4_999_700.0)  # 40 x 40 pixels
    lonlat = gpd.GeoSeries([shapely.segmentize(square, 10.0)], crs=UTM).to_crs("EPSG:4326")
    out = crop_polygon(ds, lonlat.iloc[0])  # shapely geometry -> EPSG:4326 by default
    assert out.rio.crs == ds.rio.crs
    assert out.rio.bounds() == pytest.approx((500_200.0, 4_999_300.0, 500_600.0, 4_999_700.0), abs=10.0)
    valid = int(out.reflectance.isel(time=0, band=0).notnull().sum())
    assert abs(valid - 1600) <= 40  # 40 x 40 pixels, up to one edge row of rounding
    gdf = gpd.GeoDataFrame(geometry=lonlat)
    assert crop_polygon(ds, gdf).rio.bounds() == out.rio.bounds()
    # the same polygon, mislabelled as UTM, is far away from the raster
    with pytest.raises(NoDataError, match="aoi_outside_raster"):
        crop_polygon(ds, lonlat.iloc[0], crs=UTM)


@pytest.mark.integration
def test_polygon_on_real_aoi(worldstrat):
    lr, hr = read_aoi(worldstrat, "UNHCR-NGAs036019")
    c = (lr.attrs["lon"], lr.attrs["lat"])
    disc = shapely.Point(c).buffer(0.004)
    out = crop_polygon(lr, disc)
    xx, yy = pixel_centres(out)
    inside = shapely.contains_xy(disc, xx, yy)
    refl = out.reflectance.values
    assert np.isnan(refl[..., ~inside]).all() and np.isfinite(refl[..., inside]).mean() > 0.99
    assert out.data_mask.dtype == np.uint8 and (out.data_mask.values[..., ~inside] == 0).all()
    pan = crop_polygon(hr.pan, disc)
    assert pan.dtype == np.uint16 and pan.rio.bounds() == pytest.approx(out.rio.bounds(), abs=1e-4)


# ---------------------------------------------------------------------------------- read_polygon

SQUARE = shapely.box(10.001, 44.997, 10.003, 44.999)


def write(gdf: gpd.GeoDataFrame, path, **kwargs):
    gdf.to_file(path, engine="pyogrio", **kwargs)
    return path


@pytest.fixture
def polygons() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[SQUARE, SQUARE.buffer(0.0005)], crs="EPSG:4326")


@pytest.mark.parametrize("name", ["aoi.geojson", "aoi.shp", "aoi.gpkg"])
def test_read_polygon_formats(tmp_path, polygons, name):
    gdf = read_polygon(write(polygons.to_crs(UTM), tmp_path / name))
    assert len(gdf) == 2 and list(gdf["name"]) == ["a", "b"]
    assert gdf.crs.to_epsg() == 32633
    back = shapely.normalize(gdf.to_crs("EPSG:4326").geometry.iloc[0])
    assert back.equals_exact(shapely.normalize(SQUARE), tolerance=1e-9)


def test_read_polygon_in_memory_sources(polygons):
    feature_collection = polygons.__geo_interface__
    gdf = read_polygon(feature_collection)  # RFC 7946: no crs -> EPSG:4326
    assert gdf.crs.to_epsg() == 4326 and gdf.geometry.iloc[0].equals(SQUARE)
    assert read_polygon(shapely.geometry.mapping(SQUARE)).geometry.iloc[0].equals(SQUARE)
    assert read_polygon({"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(SQUARE)}).crs.to_epsg() == 4326
    utm = shapely.box(500_000, 4_999_000, 500_100, 4_999_100)
    assert read_polygon(utm, crs=UTM).crs.to_epsg() == 32633
    with pytest.raises(InvalidInputError, match="contradicts"):
        read_polygon(polygons, crs=UTM)
    with pytest.raises(InvalidInputError, match="no CRS"):
        read_polygon(gpd.GeoDataFrame(geometry=[SQUARE]))


def test_missing_prj(tmp_path, polygons):
    path = write(polygons, tmp_path / "aoi.shp")
    (tmp_path / "aoi.prj").unlink()
    with pytest.raises(InvalidInputError, match=r"aoi\.prj not found.*no CRS"):
        read_polygon(path)


def test_missing_shx(tmp_path, polygons):
    path = write(polygons, tmp_path / "aoi.shp")
    (tmp_path / "aoi.shx").unlink()
    with pytest.raises(InvalidInputError, match=r"index missing \(aoi\.shx"):
        read_polygon(path)


def test_truncated_shp(tmp_path, polygons):
    path = write(polygons, tmp_path / "aoi.shp")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(InvalidInputError, match="truncated .shp"):
        read_polygon(path)


def test_rows_without_geometry(tmp_path):
    gdf = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[SQUARE, None], crs="EPSG:4326")
    with pytest.raises(InvalidInputError, match="1 of 2 features have no geometry"):
        read_polygon(gdf)


def test_bow_tie_rejected_then_repaired(tmp_path):
    bow = shapely.Polygon([(10.001, 44.997), (10.003, 44.999), (10.003, 44.997), (10.001, 44.999)])
    path = write(gpd.GeoDataFrame(geometry=[bow], crs="EPSG:4326"), tmp_path / "bow.geojson")
    with pytest.raises(InvalidInputError, match="Self-intersection.*make_valid=True"):
        read_polygon(path)
    with pytest.warns(UserWarning, match="repaired 1 invalid"):
        gdf = read_polygon(path, make_valid=True)
    geom = gdf.geometry.iloc[0]
    assert geom.is_valid and geom.geom_type == "MultiPolygon"
    assert geom.area == pytest.approx(SQUARE.area / 2)
    (repair,) = gdf.attrs["repairs"]
    assert repair["area_before"] == pytest.approx(0.0, abs=1e-12) and repair["area_after"] == pytest.approx(geom.area)
    # a repaired polygon crops: both triangles kept
    ds = make_cube(GEO_T, (40, 50))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = crop_polygon(ds, path, make_valid=True)
    assert int(out.reflectance.isel(time=0, band=0).notnull().sum()) == pytest.approx(200, abs=20)


def test_empty_geometry(tmp_path):
    path = write(gpd.GeoDataFrame(geometry=[SQUARE, shapely.Polygon()], crs="EPSG:4326"), tmp_path / "e.gpkg")
    with pytest.raises(InvalidInputError, match="empty geometry"):
        read_polygon(path)


def test_point_layer(tmp_path):
    path = write(gpd.GeoDataFrame(geometry=[shapely.Point(10, 45)], crs="EPSG:4326"), tmp_path / "pts.shp")
    with pytest.raises(InvalidInputError, match="Point is not Polygon"):
        read_polygon(path)


def test_other_bad_sources(tmp_path, polygons):
    with pytest.raises(InvalidInputError, match="not found"):
        read_polygon(tmp_path / "nope.geojson")
    garbage = tmp_path / "bad.geojson"
    garbage.write_text("this is not json")
    with pytest.raises(InvalidInputError, match="not a readable polygon file"):
        read_polygon(garbage)
    with pytest.raises(InvalidInputError, match="no features"):
        read_polygon({"type": "FeatureCollection", "features": []})
    with pytest.raises(InvalidInputError, match="outside lon/lat range"):
        read_polygon(shapely.box(500_000, 4_999_000, 500_100, 4_999_100))  # UTM numbers as lon/lat
    with pytest.raises(InvalidInputError, match="unsupported source type"):
        read_polygon(42)  # type: ignore[arg-type]
    gpkg = tmp_path / "two.gpkg"
    write(polygons, gpkg, layer="one")
    write(polygons, gpkg, layer="two", mode="a")
    with pytest.raises(InvalidInputError, match="2 layers"):
        read_polygon(gpkg)
    assert len(read_polygon(gpkg, layer="two")) == 2


def test_limits(polygons):
    with pytest.raises(InvalidInputError, match="max_features=1"):
        read_polygon(polygons, max_features=1)
    with pytest.raises(InvalidInputError, match="max_vertices=20"):
        read_polygon(shapely.Point(10, 45).buffer(0.01, quad_segs=16), max_vertices=20)
    assert len(read_polygon(polygons, max_features=2, max_vertices=100)) == 2
