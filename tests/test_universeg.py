"""The universeg adapter: network vs an independent port, checkpoints, preprocessing.

The port below is written from the paper's equations (Butoi et al. 2023,
section 3): for each support member s, ``z_s = Conv([q, s_s])`` over the
channel concatenation; the new query is ``mean_s z_s``; each stream then gets
its own convolution and a LeakyReLU. It loops over support members and
concatenates channels literally, whereas the adapter splits the weights by
input channel and computes the query term once: a mistake in either the split,
the channel order, the mean, the skip order or the upsampling shows up as a
difference in the logits.

The same logits were also checked once against the upstream code
(JJGO/UniverSeg, README "UniverSeg"); ``UNIVERSEG_SRC=/path/to/UniverSeg``
runs that check again (:func:`test_matches_upstream_code`).
"""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from bench.adapters import checkpoints, create  # noqa: E402
from bench.adapters.torch_utils import sha256_file  # noqa: E402
from bench.adapters.universeg import (  # noqa: E402
    SIZE,
    frame_mask,
    grey_unit,
    model_image,
    model_mask,
    support_subsets,
)
from bench.adapters.universeg_net import UniverSegNet, init_weights  # noqa: E402

from bench.types import FlowFrames, Prompt  # noqa: E402

# The released checkpoint's keys (universeg_v1_nf64_ss64_STA.pt): blocks, then out_conv.
BLOCK_PARTS = ("cross.cross_conv", "target.vmapped.conv", "support.vmapped.conv")


def released_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the released v1 state dict, written out from its layout."""
    shapes: dict[str, tuple[int, ...]] = {}
    cross_in = {"enc_blocks.0": 3, "enc_blocks.1": 128, "enc_blocks.2": 128,
                "enc_blocks.3": 128, "dec_blocks.0": 256, "dec_blocks.1": 256,
                "dec_blocks.2": 256}
    for block, channels in cross_in.items():
        for part in BLOCK_PARTS:
            inputs = channels if part == "cross.cross_conv" else 64
            shapes[f"{block}.{part}.weight"] = (64, inputs, 3, 3)
            shapes[f"{block}.{part}.bias"] = (64,)
    shapes["out_conv.conv.weight"] = (1, 64, 1, 1)
    shapes["out_conv.conv.bias"] = (1,)
    return shapes


def random_state(seed: int) -> dict[str, torch.Tensor]:
    """A random state dict with non-zero biases (so a dropped bias shows)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in released_shapes().items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = (2.0 / fan_in) ** 0.5 if len(shape) > 1 else 0.05
        state[name] = torch.randn(shape, generator=generator) * scale
    return state


# ------------------------------------------------------------------ independent port


def _leaky(x):
    return torch.where(x > 0, x, 0.01 * x)


def port_forward(state, query, images, masks):
    """UniverSeg's forward pass from the paper, member by member (see the module docstring)."""
    def block(prefix, q, members):
        weight, bias = state[f"{prefix}.cross.cross_conv.weight"], \
            state[f"{prefix}.cross.cross_conv.bias"]
        z = [F.conv2d(torch.cat([q, m], dim=1), weight, bias, padding=1) for m in members]
        new_q = torch.stack(z).mean(dim=0)
        conv = {part: (state[f"{prefix}.{part}.vmapped.conv.weight"],
                       state[f"{prefix}.{part}.vmapped.conv.bias"])
                for part in ("target", "support")}
        new_q = _leaky(F.conv2d(new_q, *conv["target"], padding=1))
        new_members = [_leaky(F.conv2d(zs, *conv["support"], padding=1)) for zs in z]
        return new_q, new_members

    q = query
    members = [torch.cat([images[:, s], masks[:, s]], dim=1) for s in range(images.shape[1])]
    skips = []
    for depth in range(4):
        q, members = block(f"enc_blocks.{depth}", q, members)
        if depth < 3:
            skips.append((q, members))
            q = F.max_pool2d(q, 2)
            members = [F.max_pool2d(m, 2) for m in members]
    for depth in range(3):
        skip_q, skip_members = skips.pop()
        up = lambda x: F.interpolate(x, scale_factor=2, mode="bilinear",  # noqa: E731
                                     align_corners=True)
        q = torch.cat([up(q), skip_q], dim=1)
        members = [torch.cat([up(m), s], dim=1) for m, s in zip(members, skip_members,
                                                                   strict=True)]
        q, members = block(f"dec_blocks.{depth}", q, members)
    return F.conv2d(q, state["out_conv.conv.weight"], state["out_conv.conv.bias"])


def _inputs(batch, members, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.rand(batch, 1, height, width, generator=generator)
    images = torch.rand(batch, members, 1, height, width, generator=generator)
    masks = (torch.rand(batch, members, 1, height, width, generator=generator) > 0.6).float()
    return query, images, masks


def test_state_dict_matches_the_released_layout():
    model = UniverSegNet()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == released_shapes()
    # by hand: 7 blocks x 2 x (64*64*9 + 64) + cross convs (3, 128 x 3, 256 x 3 in) + 65
    assert sum(v.numel() for v in model.parameters()) == 1_182_785


@pytest.mark.parametrize(("batch", "members", "height", "width"),
                         [(1, 1, 32, 48), (2, 3, 48, 32), (1, 5, 128, 128)])
def test_forward_matches_the_independent_port(batch, members, height, width):
    # In float64, so that the tolerance tests the computation, not float32 rounding (the
    # logits reach about 20 with these weights: float32 sums differ by ~2e-5 there).
    state = {k: v.double() for k, v in random_state(1).items()}
    model = UniverSegNet().double().eval()
    model.load_state_dict(state, strict=True)
    query, images, masks = (x.double() for x in _inputs(batch, members, height, width))
    with torch.no_grad():
        got = model(query, images, masks)
        want = port_forward(state, query, images, masks)
    assert got.shape == (batch, 1, height, width)
    assert float(want.abs().max()) > 0.1  # the check is not on near-zero logits
    assert float((got - want).abs().max()) <= 1e-5
    # float32, as the adapter runs: the same to float32 rounding of ~20-sized logits
    model32 = UniverSegNet().eval()
    model32.load_state_dict(random_state(1))
    with torch.no_grad():
        got32 = model32(*_inputs(batch, members, height, width))
    assert float((got32.double() - want).abs().max()) <= 1e-4


def test_support_order_does_not_matter_but_query_content_does():
    # The mean over the support set makes the model invariant to the members' order.
    state = random_state(2)
    model = UniverSegNet().eval()
    model.load_state_dict(state)
    query, images, masks = _inputs(1, 4, 32, 32)
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        a = model(query, images, masks)
        b = model(query, images[:, order], masks[:, order])
        c = model(query.flip(-1), images, masks)
    assert float((a - b).abs().max()) <= 1e-5
    assert float((a - c).abs().max()) > 1e-3


@pytest.mark.skipif(not os.environ.get("UNIVERSEG_SRC"),
                    reason="set UNIVERSEG_SRC to a JJGO/UniverSeg checkout (needs einops)")
def test_matches_upstream_code():
    sys.path.insert(0, os.environ["UNIVERSEG_SRC"])
    from universeg import universeg

    theirs = universeg().double().eval()
    state = {k: v.double() for k, v in random_state(3).items()}
    theirs.load_state_dict(state)
    mine = UniverSegNet().double().eval()
    mine.load_state_dict(state)
    query, images, masks = (x.double() for x in _inputs(2, 3, 128, 128))
    with torch.no_grad():
        assert float((theirs(query, images, masks) - mine(query, images, masks))
                     .abs().max()) <= 1e-5


# ------------------------------------------------------------------ checkpoints


def _adapter(**settings):
    return create("universeg", {"device": "cpu", **settings})


def _flow():
    rng = np.random.default_rng(0)
    frames = [rng.random((40, 56)) for _ in range(3)]
    mask = np.zeros((40, 56), bool)
    mask[10:30, 5:25] = True
    return FlowFrames("f", "demo", "image-flow", frames), mask


def test_good_checkpoint_loads_weights_only_and_predicts_as_the_state(tmp_path):
    state = random_state(4)
    path = tmp_path / "universeg_v1_nf64_ss64_STA.pt"
    torch.save(state, path)  # the release is a bare state dict
    adapter = _adapter(checkpoint=str(path))
    assert adapter.unavailable() is None
    loaded = adapter.load()
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in state.items())
    record = adapter.fingerprint()
    assert record["meaningless"] is False
    assert record["checkpoint_sha256"] == sha256_file(path) == loaded.weights_digest
    # {"model": state} loads too.
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": state}, wrapped)
    assert _adapter(checkpoint=str(wrapped)).load().checkpoint_sha256 != \
        loaded.checkpoint_sha256


def test_foreign_checkpoint_is_refused_with_one_line(tmp_path):
    foreign = {"image_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16),
               **{k: v for k, v in random_state(5).items() if k.startswith("enc_")}}
    path = tmp_path / "sam_vit_b.pth"
    torch.save(foreign, path)
    with pytest.raises(checkpoints.CheckpointError) as err:
        _adapter(checkpoint=str(path)).load()
    text = str(err.value)
    assert "\n" not in text
    assert str(path) in text and "does not fit the universeg v1 model" in text
    assert "20 missing, 1 unexpected" in text and "image_encoder.patch_embed" in text


def test_reshaped_checkpoint_is_refused(tmp_path):
    state = random_state(6)
    state["out_conv.conv.weight"] = torch.zeros(2, 64, 1, 1)
    path = tmp_path / "two_class.pt"
    torch.save(state, path)
    with pytest.raises(checkpoints.CheckpointError, match=r"1 with another shape.*"
                       r"out_conv\.conv\.weight \(2, 64, 1, 1\) vs model \(1, 64, 1, 1\)"):
        _adapter(checkpoint=str(path)).load()


def test_bad_checkpoint_stops_the_run_before_anything_is_written(tmp_path, capsys):
    from bench.cli import main

    path = tmp_path / "universeg.pt"
    path.write_bytes(b"not a checkpoint at all")
    out = tmp_path / "run"
    code = main(["run", "--suite", "one-prompt", "--models", "universeg", "--datasets",
                 "demo-cells", "--checkpoint", f"universeg={path}", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and f"{path}: not a readable torch checkpoint" in err
    assert not out.exists()


def test_damaged_checkpoint_is_refused_with_one_line(tmp_path):
    path = tmp_path / "universeg.pt"
    torch.save(random_state(7), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(checkpoints.CheckpointError) as err:
        _adapter(checkpoint=str(path)).load()
    assert "\n" not in str(err.value)
    assert f"{path}: not a readable torch checkpoint" in str(err.value)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_code_carrying_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as out:
        pickle.dump({"model": _Payload(marker)}, out)
    with pytest.raises(checkpoints.CheckpointError, match="refused to load|not a readable"):
        _adapter(checkpoint=str(path)).load()
    assert not marker.exists()


def test_no_checkpoint_names_the_ways_to_give_one(monkeypatch):
    monkeypatch.delenv("MEDSAM2_BENCH_CHECKPOINT_UNIVERSEG", raising=False)
    reason = _adapter().unavailable()
    assert "--checkpoint universeg=PATH" in reason and "MEDSAM2_BENCH_CHECKPOINT_UNIVERSEG" \
        in reason and "JJGO/UniverSeg" in reason
    assert _adapter(random_weights=True).unavailable() is None


# ------------------------------------------------------------------ preprocessing, predict


def test_grey_unit_is_luma_then_min_max():
    frame = np.zeros((2, 3, 3))
    frame[0, 0] = (100, 50, 10)   # luma 0.299*100 + 0.587*50 + 0.114*10 = 60.39
    frame[1, 2] = (0, 200, 0)     # 117.4, the maximum
    got = grey_unit(frame)
    assert got[0, 0] == pytest.approx(60.39 / 117.4)
    assert got[1, 2] == 1.0 and got[0, 1] == 0.0
    assert np.all(grey_unit(np.full((4, 5), 7.0)) == 0)


def test_model_inputs_are_128_and_bilinear():
    ramp = np.tile(np.arange(256, dtype=float), (64, 1))  # 64 x 256, left to right
    image = model_image(ramp)
    assert image.shape == (SIZE, SIZE) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    # a linear ramp stays linear under a bilinear resize: columns 2 source pixels wide
    centre = image[64]
    assert np.allclose(np.diff(centre[4:-4]), 2 / 255, atol=1e-5)
    mask = np.zeros((64, 256), bool)
    mask[:, :128] = True
    assert model_mask(mask)[:, :64].all() and not model_mask(mask)[:, 64:].any()


def test_prediction_threshold_is_strictly_above_half():
    probability = np.full((SIZE, SIZE), 0.5, np.float32)
    assert not frame_mask(probability, (30, 70)).any()
    probability[:] = 0.5001
    out = frame_mask(probability, (30, 70))
    assert out.shape == (30, 70) and out.all()


def test_ensemble_subsets_are_drawn_without_replacement():
    rng = np.random.default_rng(0)
    assert [s.tolist() for s in support_subsets(4, 3, 8, rng)] == [[0, 1, 2, 3]]
    subsets = support_subsets(10, 3, 4, np.random.default_rng(1))
    assert len(subsets) == 3 and all(len(set(s)) == 4 and s.max() < 10 for s in subsets)


def test_predict_support_frames_keep_their_mask_and_queries_follow_the_network(tmp_path):
    state = random_state(8)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    adapter = _adapter(checkpoint=str(path))
    flow, mask = _flow()
    prediction = adapter.predict(flow, [Prompt("t", 1, "mask", mask=mask)])
    got = prediction.masks["t"]
    assert np.array_equal(got[1], mask)
    # frame 0 by hand: preprocessing, the port, sigmoid, bilinear back, > 0.5
    query = torch.from_numpy(model_image(flow.frames[0]))[None, None]
    support = torch.from_numpy(model_image(flow.frames[1]))[None, None, None]
    label = torch.from_numpy(model_mask(mask))[None, None, None]
    with torch.no_grad():
        logits = port_forward(state, query, support, label)
    want = frame_mask(torch.sigmoid(logits)[0, 0].numpy(), (40, 56))
    assert got[0].shape == (40, 56)
    assert np.array_equal(got[0], want)


def test_point_or_box_prompts_are_refused():
    flow, _ = _flow()
    adapter = _adapter(random_weights=True)
    with pytest.raises(ValueError, match="segments from support masks only"):
        adapter.predict(flow, [Prompt("t", 0, "box", box=(1, 1, 5, 5))])


def test_random_weights_are_seeded_and_stamped():
    a = UniverSegNet()
    b = UniverSegNet()
    init_weights(a, 3)
    init_weights(b, 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                b.state_dict().values(), strict=True))
    assert _adapter(random_weights=True).fingerprint()["meaningless"] is True
