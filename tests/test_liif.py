"""LIIF: coordinate grids, local-ensemble weights, the factored decoder against LIIF's own
formulation, residual base, registry and encoders (tiny synthetic inputs, no data)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stliif.errors import ModelError
from stliif.models.coords import local_corners, make_cell, make_coord, to_grid
from stliif.models.encoders import EDSR3D, EDSRBaseline
from stliif.models.liif import LIIF, ImplicitDecoder, ResidualBase
from stliif.models.registry import make_model, model_spec, normalize_spec, register, registered

torch.set_num_threads(1)


def _tiny_liif(**kw) -> LIIF:
    torch.manual_seed(0)
    args = {"encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 8, "n_resblocks": 1}},
            "hidden": [16, 16]}  # fmt: skip
    args.update(kw)
    return make_model({"name": "liif", "args": args})


# ------------------------------------------------------------------------------------- coords


def test_make_coord_is_pixel_centres():
    c = make_coord((2, 4), flatten=False)
    assert c.shape == (2, 4, 2)
    torch.testing.assert_close(c[:, 0, 0], torch.tensor([-0.5, 0.5]))
    torch.testing.assert_close(c[0, :, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    flat = make_coord((3, 5))
    assert flat.shape == (15, 2)
    torch.testing.assert_close(flat.view(3, 5, 2), make_coord((3, 5), flatten=False))
    r = make_coord((2,), ranges=[(0.0, 1.0)])
    torch.testing.assert_close(r[:, 0], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(make_cell((4, 8), 3), torch.tensor([[0.5, 0.25]] * 3))
    # the grid_sample order: bilinear at pixel centres reproduces the image
    img = torch.rand(1, 2, 3, 4)
    g = F.grid_sample(img, to_grid(make_coord((3, 4))[None]), align_corners=False)
    torch.testing.assert_close(g[:, :, 0].view(1, 2, 3, 4), img)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 4), (7, 7)])
def test_local_ensemble_weights_sum_to_one_everywhere(shape):
    torch.manual_seed(1)
    coord = torch.rand(2, 500, 2) * 2 - 1
    coord[0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.0, 0.0]])
    cor = local_corners(coord, shape)
    assert cor.index.shape == (2, 4, 500) and cor.weight.shape == (2, 4, 500)
    assert cor.rel.shape == (2, 4, 500, 2)
    torch.testing.assert_close(cor.weight.sum(1), torch.ones(2, 500))
    assert (cor.weight >= 0).all()
    assert cor.index.min() >= 0 and cor.index.max() < shape[0] * shape[1]
    one = local_corners(coord, shape, local_ensemble=False)
    assert one.index.shape == (2, 1, 500)
    torch.testing.assert_close(one.weight, torch.ones(2, 1, 500))


def _lookup(values: torch.Tensor, cor) -> torch.Tensor:
    """Ensemble of a decoder that returns its code's value: sum_k w_k v[idx_k]."""
    flat = values.reshape(-1)
    return (flat[cor.index] * cor.weight).sum(1)


def test_local_ensemble_reproduces_constant_and_linear_images():
    h, w = 6, 9
    centres = make_coord((h, w), flatten=False)
    linear = 0.3 + 1.7 * centres[..., 0] - 0.8 * centres[..., 1]
    const = torch.full((h, w), 0.42)
    torch.manual_seed(2)
    anywhere = torch.rand(1, 2000, 2) * 2 - 1
    cor = local_corners(anywhere, (h, w))
    torch.testing.assert_close(_lookup(const, cor), torch.full((1, 2000), 0.42))
    # inside the outermost code centres the ensemble is bilinear: linear images are exact
    lo = torch.tensor([-1 + 1 / h, -1 + 1 / w])
    inside = lo + torch.rand(1, 2000, 2) * (-2 * lo)
    got = _lookup(linear, local_corners(inside, (h, w)))
    want = 0.3 + 1.7 * inside[..., 0] - 0.8 * inside[..., 1]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # at the code centres themselves the weight is (almost) all on that code; on the border
    # column/row LIIF's clamped corners and its 1e-9 area floor leave ~5e-4 on the neighbour
    cor = local_corners(centres.view(1, -1, 2), (h, w))
    got = _lookup(linear, cor).view(h, w)
    torch.testing.assert_close(got[1:-1, 1:-1], linear[1:-1, 1:-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(got, linear, atol=2e-3, rtol=0)


# ---------------------------------------------------------------------------- decoder vs LIIF


def _reference_liif(dec: ImplicitDecoder, feat, coord, cell):
    """LIIF's query_rgb (Chen et al.'s code, feat_unfold + local_ensemble + cell_decode) with
    the one MLP the factored decoder is equivalent to."""
    b, c, h, w = feat.shape
    fu = F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)
    hd = dec.feat_proj.out_channels
    first = torch.nn.Linear(c * 9 + 4, hd)
    with torch.no_grad():
        first.weight.copy_(torch.cat([dec.feat_proj.weight.reshape(hd, -1), dec.coord_proj.weight], 1))
        first.bias.copy_(dec.feat_proj.bias)
    imnet = torch.nn.Sequential(first, *dec.mlp)
    feat_coord = make_coord((h, w), flatten=False).permute(2, 0, 1)[None].expand(b, 2, h, w)
    rx, ry = 1 / h, 1 / w
    preds, areas = [], []
    for vx in (-1, 1):
        for vy in (-1, 1):
            c_ = coord.clone()
            c_[:, :, 0] += vx * rx + 1e-6
            c_[:, :, 1] += vy * ry + 1e-6
            c_.clamp_(-1 + 1e-6, 1 - 1e-6)
            grid = c_.flip(-1).unsqueeze(1)
            q_feat = F.grid_sample(fu, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
            q_coord = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
            rel = coord - q_coord
            rel[:, :, 0] *= h
            rel[:, :, 1] *= w
            rel_cell = cell.clone()
            rel_cell[:, :, 0] *= h
            rel_cell[:, :, 1] *= w
            preds.append(imnet(torch.cat([q_feat, rel, rel_cell], -1)))
            areas.append((rel[:, :, 0] * rel[:, :, 1]).abs() + 1e-9)
    tot = torch.stack(areas).sum(0)
    areas[0], areas[3] = areas[3], areas[0]
    areas[1], areas[2] = areas[2], areas[1]
    return sum(p * (a / tot).unsqueeze(-1) for p, a in zip(preds, areas, strict=True))


def test_factored_decoder_equals_liif_formulation():
    torch.manual_seed(3)
    dec = ImplicitDecoder(5, 3, (12, 10))
    feat = torch.randn(2, 5, 6, 7)
    coord = torch.rand(2, 300, 2) * 2 - 1
    cell = torch.rand(2, 300, 2) * 0.3
    with torch.no_grad():
        got = dec.query(dec.project(feat), coord, cell, chunk=64)
        want = _reference_liif(dec, feat, coord, cell)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_chunking_does_not_change_results():
    model = _tiny_liif()
    inp = torch.rand(1, 3, 9, 8)
    coord = make_coord((23, 29))[None]
    cell = make_cell((23, 29), coord.shape[1])[None]
    with torch.no_grad():
        a = model(inp, coord, cell, chunk=None)
        b = model(inp, coord, cell, chunk=50)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_decoder_options_and_errors():
    dec = ImplicitDecoder(4, 3, (8,), feat_unfold=False, local_ensemble=False, cell_decode=False)
    out = dec.query(dec.project(torch.rand(1, 4, 5, 5)), torch.rand(1, 10, 2) * 2 - 1)
    assert out.shape == (1, 10, 3)
    dec2 = ImplicitDecoder(4, 3, (8,))
    with pytest.raises(ModelError):
        dec2.query(dec2.project(torch.rand(1, 4, 5, 5)), torch.rand(1, 10, 2))  # no cell
    with pytest.raises(ModelError):
        dec2.query(dec2.project(torch.rand(1, 4, 5, 5)), torch.rand(10, 2), torch.rand(10, 2))
    with pytest.raises(ModelError):
        ImplicitDecoder(4, 3, ())


# -------------------------------------------------------------------------- residual and LIIF


def test_residual_liif_starts_as_bilinear_upsampling():
    model = _tiny_liif(residual="bilinear", colour_map=True, learn_shift=True)
    inp = torch.rand(2, 3, 10, 12)
    coord = make_coord((25, 31))[None].expand(2, -1, -1)
    cell = make_cell((25, 31), coord.shape[1])[None].expand(2, -1, -1)
    with torch.no_grad():
        out = model(inp, coord, cell)
    up = F.interpolate(inp, size=(25, 31), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, up.flatten(2).transpose(1, 2), atol=1e-5, rtol=0)


def test_residual_base_reproduces_a_linear_image_inside():
    h, w = 8, 6
    cen = make_coord((h, w), flatten=False)
    img = (0.2 + 0.5 * cen[..., 0] + 0.25 * cen[..., 1]).expand(1, 3, h, w)
    lo = torch.tensor([-1 + 1 / h, -1 + 1 / w])
    q = lo + torch.rand(1, 400, 2) * (-2 * lo)
    got = ResidualBase("bilinear")(img, q)
    want = (0.2 + 0.5 * q[..., 0] + 0.25 * q[..., 1]).unsqueeze(-1).expand(1, 400, 3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert ResidualBase("none")(img, q) is None
    with pytest.raises(ModelError):
        ResidualBase("bilinear")(None, q)
    with pytest.raises(ModelError):
        ResidualBase("cubic")  # type: ignore[arg-type]


def test_liif_shapes_gradients_and_errors():
    model = _tiny_liif()
    inp = torch.rand(2, 3, 7, 9)
    coord = torch.rand(2, 50, 2) * 2 - 1
    cell = torch.full((2, 50, 2), 0.1)
    out = model(inp, coord, cell)
    assert out.shape == (2, 50, 3)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ModelError):
        model(torch.rand(2, 4, 7, 9), coord, cell)
    with pytest.raises(ModelError):
        model(inp, coord[:1], cell[:1])
    default = make_model({"name": "liif"})  # LIIF's own configuration
    assert default.encoder.out_dim == 64 and len(default.encoder.body) == 17
    assert [m.out_features for m in default.decoder.mlp if isinstance(m, torch.nn.Linear)] == [256, 256, 256, 3]


# ----------------------------------------------------------------------- registry and encoders


def test_registry_specs():
    assert {"liif", "temporal-liif", "edsr-baseline", "edsr-3d"} <= set(registered())
    m = make_model({"name": "edsr-baseline", "args": {"n_feats": 4, "n_resblocks": 1}})
    assert isinstance(m, EDSRBaseline)
    assert model_spec(m) == {"name": "edsr-baseline", "args": {"n_feats": 4, "n_resblocks": 1}}
    m2 = make_model(model_spec(m), args={"in_channels": 6})
    assert m2.head.in_channels == 6
    with pytest.raises(ModelError, match="unknown model"):
        make_model({"name": "no-such-model"})
    with pytest.raises(ModelError, match="bad arguments"):
        make_model({"name": "liif", "args": {"no_such_arg": 1}})
    with pytest.raises(ModelError):
        normalize_spec({"name": "liif", "args": {"x": object()}})
    with pytest.raises(ModelError):
        normalize_spec({"name": "liif", "other": 1})
    with pytest.raises(ModelError):
        register("Not_Kebab")
    with pytest.raises(ModelError):
        model_spec(torch.nn.Linear(1, 1))


def test_encoders_keep_size_and_3d_masks_frames():
    e2 = EDSRBaseline(3, 8, 2)
    assert e2(torch.rand(2, 3, 11, 13)).shape == (2, 8, 11, 13)
    e3 = EDSR3D(3, 8, 1)
    x = torch.rand(2, 4, 3, 9, 10)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    y = e3(x, mask)
    assert y.shape == (2, 4, 8, 9, 10)
    assert (y[0, 3] == 0).all() and (y[1, 1:] == 0).all()
    # what is in a padded frame does not matter
    x2 = x.clone()
    x2[0, 3] = 7.0
    torch.testing.assert_close(e3(x2, mask), y)
    with pytest.raises(ModelError):
        EDSR3D(3, 8, 1, time_kernel=2)
    with pytest.raises(ModelError):
        e2(torch.rand(3, 9, 9))


def test_models_follow_one_explicit_contract() -> None:
    """LIIF-shaped or not, a model is checked against stliif.models.interface when it is wrapped."""
    import numpy as np
    from torch import nn

    from stliif.models.inference import ModelPredictor
    from stliif.models.interface import ImplicitModel, TemporalImplicitModel, check_model

    liif = _tiny_liif()
    assert isinstance(liif, ImplicitModel) and check_model(liif) is liif
    with pytest.raises(ModelError, match="Linear lacks temporal, gen_feat, query_rgb"):
        ModelPredictor(nn.Linear(2, 2))

    class Flat(nn.Module):
        """Not a LIIF: a constant grey at every query, through the same contract."""

        temporal = True

        def gen_feat(self, frames, times, t_query, mask=None):
            return type("Latent", (), {"feat": frames.mean(1), "base": frames.mean(1)})()

        def query_rgb(self, feat, coord, cell=None, *, base=None, chunk=None):
            return torch.full((coord.shape[0], coord.shape[1], 3), 0.5)

    assert isinstance(Flat(), TemporalImplicitModel)
    out = ModelPredictor(Flat())(np.zeros((3, 8, 8, 3), np.uint8), size=16)
    assert out.shape == (16, 16, 3) and (out == 128).all()
