"""Temporal LIIF: masked median, variable frame counts, time semantics, 3-D encoder option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stliif.errors import ModelError
from stliif.models.coords import make_cell, make_coord
from stliif.models.registry import make_model
from stliif.models.temporal_liif import TemporalLIIF, TimeEmbedding, masked_median

torch.set_num_threads(1)


def _tiny(**kw) -> TemporalLIIF:
    torch.manual_seed(0)
    args = {"encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 8, "n_resblocks": 1}},
            "hidden": [16, 16], "fusion_blocks": 1}  # fmt: skip
    args.update(kw)
    return make_model({"name": "temporal-liif", "args": args})


def _grid(h: int, w: int, b: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    coord = make_coord((h, w))[None].expand(b, -1, -1)
    return coord, make_cell((h, w), h * w)[None].expand(b, -1, -1)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_masked_median_odd_and_even_counts(n):
    rng = np.random.default_rng(n)
    x = rng.random((2, 5, 3, 4, 6)).astype(np.float32)
    mask = np.zeros((2, 5), dtype=bool)
    mask[0, :n] = True
    mask[1, 5 - n :] = True
    got = masked_median(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], np.median(x[b, mask[b]], axis=0), rtol=1e-6)
    with pytest.raises(ModelError):
        masked_median(torch.from_numpy(x), torch.zeros(2, 5, dtype=torch.bool))


@pytest.mark.parametrize("encoder", ["edsr-baseline", "edsr-3d"])
def test_variable_frame_counts_padding_is_invisible(encoder):
    """A 2-frame item padded to 5 (mask) gives the same output as the same 2 frames alone, and
    whatever the padded slots contain; fusion weights are 0 there and sum to 1."""
    model = _tiny(encoder_spec={"name": encoder, "args": {"n_feats": 8, "n_resblocks": 1}}).eval()
    torch.manual_seed(1)
    frames = torch.rand(2, 5, 3, 7, 9)
    times = torch.tensor([[-2.0, -1.0, 0.5, 1.0, 3.0], [-1.0, 0.4, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    tq = torch.tensor([0.0, 0.1])
    coord, cell = _grid(11, 13, 2)
    with torch.no_grad():
        out = model(frames, times, tq, coord, cell, mask=mask)
        junk = frames.clone()
        junk[1, 2:] = 5.0
        out_junk = model(junk, times, tq, coord, cell, mask=mask)
        alone = model(frames[1:, :2], times[1:, :2], tq[1:], coord[:1], cell[:1])
        lat = model.gen_feat(frames, times, tq, mask)
    assert out.shape == (2, 11 * 13, 3)
    torch.testing.assert_close(out, out_junk)
    if encoder == "edsr-baseline":  # 3-D convolutions see zero padding, not "nothing"
        torch.testing.assert_close(out[1:], alone, atol=1e-5, rtol=0)
    assert (lat.weights[1, 2:] == 0).all()
    torch.testing.assert_close(lat.weights.sum(1), torch.ones(2, 7, 9))


def test_only_time_differences_matter():
    model = _tiny().eval()
    torch.manual_seed(2)
    frames = torch.rand(1, 4, 3, 6, 6)
    times = torch.tensor([[-1.5, -0.2, 0.7, 2.0]])
    coord, cell = _grid(9, 9)
    with torch.no_grad():
        a = model(frames, times, torch.tensor([0.3]), coord, cell)
        b = model(frames, times + 100.0, torch.tensor([100.3]), coord, cell)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_midpoint_query_by_construction():
    """At initialisation the model is a prior-weighted average of its frames: for two frames of a
    linearly changing scene, a query halfway between them returns the midpoint exactly, and
    moving the query towards a frame moves the output towards that frame, monotonically."""
    model = _tiny(robust_prior=1.0, time_prior=2.0).eval()
    h = 8
    ramp = torch.linspace(0.2, 0.6, h).view(1, h).expand(h, h)
    a = ramp.expand(3, h, h)
    b = a + 0.2  # the scene brightens linearly between t = 0 and t = 2
    frames = torch.stack([a, b])[None]
    times = torch.tensor([[0.0, 2.0]])
    coord, cell = _grid(h, h)
    fa, fb = a.flatten(1).T, b.flatten(1).T
    fracs = []
    with torch.no_grad():
        for tq in (0.25, 0.5, 1.0, 1.5, 1.75):
            out = model(frames, times, torch.tensor([tq]), coord, cell)[0]
            frac = (out - fa) / (fb - fa)
            assert (frac > 0).all() and (frac < 1).all()
            fracs.append(float(frac.mean()))
            if tq == 1.0:
                torch.testing.assert_close(out, 0.5 * (fa + fb), atol=1e-5, rtol=0)
    assert fracs == sorted(fracs)


def _linear_scene(g: torch.Generator, times: torch.Tensor, h: int):
    a = 0.2 + 0.2 * torch.rand(3, h, h, generator=g)
    sign = 1.0 if float(torch.rand(1, generator=g)) < 0.5 else -1.0
    b = sign * (0.05 + 0.05 * torch.rand(3, 1, 1, generator=g))
    return a, b, a[None] + b[None] * times.view(-1, 1, 1, 1)


def test_trained_model_interpolates_between_frames_in_time():
    """A tiny model trained for 60 steps on synthetic scenes whose pixels change linearly in time
    (random frame dates, random query dates, truth a + b t) answers a query halfway between two
    frames with values strictly between theirs."""
    model = _tiny(fusion_blocks=0)
    h, batch = 8, 8
    coord, cell = _grid(h, h, batch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        xs, ts, tq, gt = [], [], [], []
        for _ in range(batch):
            t = torch.sort(torch.rand(5, generator=g) * 4).values
            q = float(t[0] + (t[-1] - t[0]) * torch.rand(1, generator=g))
            a, b, x = _linear_scene(g, t, h)
            xs.append(x), ts.append(t), tq.append(q), gt.append((a + b * q).flatten(1).T)
        out = model(torch.stack(xs), torch.stack(ts), torch.tensor(tq), coord, cell)
        loss = (out - torch.stack(gt)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    g2 = torch.Generator().manual_seed(99)
    t = torch.arange(5.0)
    for _ in range(4):
        _, _, x = _linear_scene(g2, t, h)
        with torch.no_grad():
            out = model(x[None], t[None], torch.tensor([1.5]), coord[:1], cell[:1])[0]
        f1, f2 = x[1].flatten(1).T, x[2].flatten(1).T
        frac = (out - f1) / (f2 - f1)
        assert ((frac > 0) & (frac < 1)).float().mean() > 0.95
        assert 0.2 < float(frac.mean()) < 0.8


def test_time_embedding_is_bounded_for_far_dates():
    emb = TimeEmbedding(4)
    far = emb(torch.tensor([[-30.0, 300.0, 1e4]]))
    assert torch.isfinite(far).all()
    torch.testing.assert_close(far[0, 1], far[0, 2], atol=1e-3, rtol=0)  # saturates


def test_errors_and_shapes():
    model = _tiny()
    frames = torch.rand(2, 3, 3, 5, 5)
    times = torch.zeros(2, 3)
    coord, cell = _grid(4, 4, 2)
    with pytest.raises(ModelError):
        model(frames[:, :, :2], times, torch.zeros(2), coord, cell)
    with pytest.raises(ModelError):
        model(frames, times[:, :2], torch.zeros(2), coord, cell)
    with pytest.raises(ModelError):
        model(frames, times, torch.zeros(1), coord, cell)
    with pytest.raises(ModelError):
        model(frames, times, torch.zeros(2), coord, cell, mask=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ModelError):
        _tiny(time_prior=0.0)
    out = model(frames, times, torch.zeros(2), coord, cell)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_fixed_fusion_keeps_the_weights_at_their_priors():
    """``learn_fusion=False`` (the attention's ablation): training moves the rest of the model,
    never the fusion head or the two prior strengths, so the weights stay the priors' softmax."""
    fixed, learned = _tiny(learn_fusion=False), _tiny()
    g = torch.Generator().manual_seed(2)
    t = torch.sort(torch.rand(1, 4, generator=g) * 4).values
    x = torch.rand(1, 4, 3, 8, 8, generator=g)
    coord, cell = _grid(8, 8)
    for model in (fixed, learned):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(3):
            loss = (model(x, t, torch.tensor([1.0]), coord, cell) - 0.5).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        fusion = {n for n in before if n.startswith("fusion.head.") or n == "fusion.prior_log"}
        assert moved - fusion, "the rest of the model trains"
        if model is fixed:
            assert not moved & fusion
        else:
            assert moved & fusion
    assert torch.equal(fixed.fusion.strengths(), fixed.fusion.prior_init)
    # the fused weights are the priors' softmax: -lambda |dt| - kappa dev, nothing learned
    with torch.no_grad():
        weights = fixed.gen_feat(x, t, torch.tensor([1.0])).weights
        diff = (x - masked_median(x, torch.ones(1, 4, dtype=torch.bool)).unsqueeze(1)).abs().mean(2)
        dev = F.avg_pool2d(diff.reshape(4, 1, 8, 8), 3, stride=1, padding=1, count_include_pad=False).view(1, 4, 8, 8)
        lam, kappa = fixed.fusion.prior_init
        expected = torch.softmax(-lam * (t - 1.0).abs()[..., None, None] - kappa * dev, dim=1)
    torch.testing.assert_close(weights, expected)
