"""``memory = "official"`` against an independent port of the official 2D validation loop.

The port below is written from the spec of ``func_2d/function.py::validation_sam``
(MedicineToken/Medical-SAM2) and calls only the SAM 2 model's submodules
(image encoder, prompt encoder, mask decoder, memory attention, memory
encoder); it shares no code with :mod:`bench.adapters.medsam2.official_loop`. Both
run on the same random-weight SAM 2.0 tiny model at 256 px (the official loop
ignores the object score, so no forcing is needed on either side), with the
same seeded draws.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")
F = torch.nn.functional

from bench.adapters.medsam2.adapter import MedSAM2Adapter, bank_generator  # noqa: E402
from bench.adapters.sam2 import preprocess  # noqa: E402

from bench.types import FlowFrames, Prompt  # noqa: E402

SIZE = 256
LOW = SIZE // 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stream(n=9, seed=0):
    """Images at the low-res size (so the harness's masks are its logits > 0)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (n, LOW, LOW, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, 14 + i:40 + i, 18:46] += 150
    return FlowFrames("stream", "synthetic", "image-flow", list(frames))


def adapter(**extra):
    settings = {"random_weights": True, "image_size": SIZE, "device": "cpu",
                "config": "sam2_hiera_t", "preprocessing": "sam2", "cache_mb": 0,
                "memory": "official", **extra}
    return MedSAM2Adapter(settings=settings)


# -- the independent port ---------------------------------------------------------------

def port_features(model, image):
    """Backbone levels (HW, 1, C) and their pos encs, high-res levels projected."""
    out = model.image_encoder(image[None])
    fpn, pos = list(out["backbone_fpn"]), list(out["vision_pos_enc"])
    fpn[0] = model.sam_mask_decoder.conv_s0(fpn[0])
    fpn[1] = model.sam_mask_decoder.conv_s1(fpn[1])
    return fpn[-3:], pos[-3:]


def port_loop(model, images, clicks, batch, generator, bank_size, margin=0.1):
    """Official 2D loop: returns per-image low-res logits, IoUs and the draws."""
    bank = []  # [memfeat bf16 (1,64,h,w), mempos bf16, iou, embedding (C*H*W,)]
    logits, ious, draws = [], [], []
    for start in range(0, len(images), batch):
        idx = list(range(start, min(start + batch, len(images))))
        b = len(idx)
        per = [port_features(model, images[i]) for i in idx]
        levels = [torch.cat([p[0][k] for p in per]) for k in range(3)]
        posenc = [torch.cat([p[1][k] for p in per]) for k in range(3)]
        hw = [tuple(x.shape[-2:]) for x in levels]
        vf = [x.flatten(2).permute(2, 0, 1) for x in levels]
        vp = [x.flatten(2).permute(2, 0, 1) for x in posenc]
        if bank:
            # (B, HW, C) flattened: position-major, as the official code (the known mismatch).
            cur = vf[2].permute(1, 0, 2).reshape(b, -1)
            emb = torch.stack([e[3] for e in bank])
            w = torch.softmax(F.normalize(cur.float(), dim=1) @ F.normalize(emb.float(),
                                                                           dim=1).T, dim=1)
            pick = torch.multinomial(w, b, replacement=True, generator=generator)
            draws.extend(pick.tolist())
            mem = torch.stack([torch.cat([bank[j][0].flatten(2)[0].T for j in row])
                               for row in pick.tolist()], dim=1).float()
            mpos = torch.stack([torch.cat([bank[j][1].flatten(2)[0].T for j in row])
                                for row in pick.tolist()], dim=1).float()
            vf[2] = model.memory_attention(curr=[vf[2]], curr_pos=[vp[2]], memory=mem,
                                           memory_pos=mpos, num_obj_ptr_tokens=0)
        feats = [x.permute(1, 2, 0).reshape(b, -1, h, w) for x, (h, w) in zip(vf, hw, strict=True)]
        lows, batch_ious = [], []
        for k, i in enumerate(idx):
            points = None
            if i in clicks:
                xy, label = clicks[i]
                points = (torch.tensor([[xy]], dtype=torch.float32),
                          torch.tensor([[label]], dtype=torch.int32))
            se, de = model.sam_prompt_encoder(points=points, boxes=None, masks=None)
            low, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=feats[2][k:k + 1],
                image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=se, dense_prompt_embeddings=de,
                multimask_output=False, repeat_image=False,
                high_res_features=[feats[0][k:k + 1], feats[1][k:k + 1]])
            lows.append(low)
            batch_ious.append(float(iou[0, 0]))
        low = torch.cat(lows)
        hires = F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        soft = torch.sigmoid(hires) * 20.0 - 10.0
        enc = model.memory_encoder(feats[2], soft, skip_mask_sigmoid=True)
        memfeat, mempos = enc["vision_features"], enc["vision_pos_enc"][-1]
        new = [[memfeat[k:k + 1].to(torch.bfloat16), mempos[k:k + 1].to(torch.bfloat16),
                batch_ious[k], feats[2][k].reshape(-1).float()] for k in range(b)]
        if len(bank) < bank_size:
            bank.extend(new)
        else:
            for entry in new:
                m = F.normalize(torch.stack([e[0].reshape(-1) for e in bank]).float(), dim=1)
                s_all = m @ m.T
                s_all.fill_diagonal_(float("-inf"))
                s_new = m @ F.normalize(entry[0].reshape(-1).float(), dim=0)
                j = int(torch.argmin(s_new))
                l_ = int(torch.argmax(s_all[j]))
                if s_new[j] < s_all[j, l_] and entry[2] > bank[l_][2] - margin:
                    bank.pop(l_)
                    bank.append(entry)
        logits.extend(low[:, 0])
        ious.extend(batch_ious)
    return logits, ious, draws, bank


# -- the tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 2])
def test_official_loop_equals_the_independent_port(batch):
    flow = stream()
    clicked = [0, 5]  # official schedule ind % 5 == 0 (B = 1)
    prompts = [Prompt("t", i, "point", points=((30, 26 + i),), labels=(1,)) for i in clicked]
    ours = adapter(batch=batch, bank_size=3)
    model = ours.load().predictor
    assert model.sigmoid_scale_for_mem_enc == 20.0 and model.sigmoid_bias_for_mem_enc == -10.0
    run = ours.predict(flow, prompts)

    unit = preprocess.unit_range(flow.frames, flow.kind)
    images = [preprocess.model_input(u, SIZE, "sam2").float() for u in unit]
    scale = SIZE / LOW
    clicks = {i: ((30 * scale, (26 + i) * scale), 1) for i in clicked}
    with torch.inference_mode():
        logits, ious, draws, bank = port_loop(model, images, clicks, batch,
                                              bank_generator(0, "synthetic", "stream", "t"),
                                              bank_size=3)
    assert len(run.logits["t"]) == len(logits) == 9
    for ours_logits, port_logits, mask in zip(run.logits["t"], logits, run.masks["t"],
                                                 strict=True):
        np.testing.assert_allclose(ours_logits, port_logits.numpy(), atol=1e-5, rtol=0)
        assert np.array_equal(mask, port_logits.numpy() > 0)
    assert run.scores["t"] == pytest.approx(ious, abs=1e-5)
    result = ours.last_bank
    assert [list(row) for _, row in result.picks] == draws
    # The bank was full and offered later images: 3 entries, replacement exercised.
    assert len(result.bank) == len(bank) == (3 if batch == 1 else 4)
    assert [e.confidence for e in result.bank] == pytest.approx([e[2] for e in bank],
                                                                abs=1e-5)
    assert any(m.any() for m in run.masks["t"])
    frames = [e.frame for e in result.bank]
    assert frames != list(range(len(frames)))  # at least one replacement happened


def test_click_order_official_feeds_row_col():
    flow = stream(n=3, seed=1)
    prompt = Prompt("t", 0, "point", points=((40, 20),), labels=(1,))
    flipped = Prompt("t", 0, "point", points=((20, 40),), labels=(1,))
    official = adapter(click_order="official").predict(flow, [prompt])
    xy = adapter().predict(flow, [flipped])
    assert all(np.array_equal(a, b) for a, b in zip(official.logits["t"], xy.logits["t"],
                                                                 strict=True))
    assert not np.array_equal(official.logits["t"][0],
                              adapter().predict(flow, [prompt]).logits["t"][0])


def test_mask_prompts_are_refused_by_the_official_loop_with_mask_memory_refuse():
    from bench.errors import ConfigError

    flow = stream(n=2)
    mask = np.zeros((LOW, LOW), bool)
    mask[10:20, 10:20] = True
    with pytest.raises(ConfigError, match=r"mask_memory: 'refuse' with memory 'official': "
                                          r"the official 2D loop takes clicks"):
        adapter(mask_memory="refuse").predict(flow, [Prompt("t", 0, "mask", mask=mask)])


def test_fifo_equals_sam2_on_an_image_flow():
    from bench.adapters.sam2.adapter import SAM2Adapter

    flow = stream(n=4, seed=2)
    prompts = [Prompt("t", 1, "point", points=((30, 30),), labels=(1,)),
               Prompt("u", 0, "box", box=(15, 12, 50, 45))]
    base = {"random_weights": True, "image_size": SIZE, "device": "cpu",
            "config": "sam2_hiera_t"}
    stock = SAM2Adapter(settings=base).predict(flow, prompts)
    fifo = MedSAM2Adapter(settings={**base, "preprocessing": "sam2", "memory": "fifo",
                                    "fill_hole_area": 0}).predict(flow, prompts)
    for target in ("t", "u"):
        assert all(np.array_equal(a, b) for a, b in zip(stock.masks[target],
                                                        fifo.masks[target], strict=True))
        assert all(np.array_equal(a, b) for a, b in zip(stock.logits[target],
                                                        fifo.logits[target], strict=True))
        assert any(m.any() for m in fifo.masks[target])
    assert stock.scores == fifo.scores


# -- the 3D loop's prompt / score schedule --------------------------------------------

def port_3d_schedule(labels, prompt_freq=2):
    """func_3d validation: window, objects, per-slice prompts and scored (slice, object)s.

    ``labels`` is a (K, H, W) label map; returns the window, the prompts
    ``{(t, obj): ("box", (x0, y0, x1, y1)) | ("empty", None)}`` and the objects.
    """
    nonzero = [k for k in range(len(labels)) if labels[k].any()]
    slab = list(range(nonzero[0], nonzero[-1] + 1))
    window = slab[:len(slab) // 4]
    objs = sorted({int(v) for t in window for v in np.unique(labels[t]) if v})
    prompts = {}
    for t in window[::prompt_freq]:
        for obj in objs:
            rows, cols = np.nonzero(labels[t] == obj)
            prompts[(t, obj)] = (("box", (cols.min(), rows.min(), cols.max(), rows.max()))
                                 if len(rows) else ("empty", None))
    return window, prompts, objs


def test_3d_schedule_matches_the_official_loop_on_a_synthetic_volume():
    from bench.prompts.protocols import make_prompts
    from bench.prompts.scope import scoring_scope
    from bench.types import Flow

    labels = np.zeros((30, 24, 24), np.uint8)
    labels[3:20, 4:10, 5:12] = 1   # present from the slab's start
    labels[6:8, 14:20, 14:18] = 2  # only on window slices 3 and 4 (relative), one odd
    labels[15:27, 2:6, 2:6] = 3    # outside the window: neither prompted nor scored
    frames = (labels * 60).astype(np.uint8)
    names = {"a": 1, "b": 2, "c": 3}
    flow = Flow("v", "s", "volume", frames, {n: labels == v for n, v in names.items()})
    window, expected, objs = port_3d_schedule(labels)
    assert window == list(range(3, 9)) and objs == [1, 2]
    prompts = make_prompts(flow, "official-code", seed=0, prompt_kind="box", params={})
    got = {}
    for p in prompts:
        key = (p.frame, names[p.target])
        got[key] = ("box", tuple(p.box)) if p.kind == "box" else (
            "empty" if p.kind == "empty-mask" and not p.mask.any() else p.kind, None)
    assert got == {k: (kind, tuple(int(x) for x in box) if box else None)
                   for k, (kind, box) in expected.items()}
    scope = scoring_scope(flow, "official-code", prompts, {})
    assert list(scope.frames) == window
    assert sorted(names[t] for t in scope.targets) == objs
