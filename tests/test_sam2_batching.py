"""Frames encoded in batches ahead of the memory loop, and the compile option (CPU).

``encode_batch`` B runs SAM 2's image encoder on B frames at once
(:class:`bench.adapters.sam2.session.FlowInputs`). The masks must be those of
one-by-one encoding; float kernels may round differently with the batch size,
so logits are compared within a bound (the recorded figure is in the README's
Measured section). Random weights, with the object-score head forced present so
that the masks are not all empty.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from bench.adapters.medsam2.adapter import MedSAM2Adapter  # noqa: E402
from bench.adapters.sam2 import build  # noqa: E402
from bench.adapters.sam2.adapter import SAM2Adapter  # noqa: E402

from bench.types import FlowFrames, Prompt  # noqa: E402

#: Largest |logit| difference allowed between batched and one-by-one encoding.
LOGIT_TOLERANCE = 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def flow(n=6, shape=(72, 88), kind="volume"):
    """uint8 frames (non-square): a bright square drifting one row per frame."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 60, (n, *shape), dtype=np.uint8)
    for i in range(n):
        frames[i, 20 + i:50 + i, 25:60] += 150
    return FlowFrames("f", "synthetic", kind, list(frames) if kind == "image-flow" else frames)


PROMPTS = [Prompt("t", 2, "point", points=((40, 35),), labels=(1,)),
           Prompt("u", 0, "box", box=(25, 20, 59, 49))]


def sam2(size, batch, **extra):
    return SAM2Adapter(settings={"random_weights": True, "config": "sam2_hiera_t",
                                 "image_size": size, "device": "cpu", "cache_mb": 0,
                                 "encode_batch": batch, **extra})


def assert_same(one, batched):
    assert set(one.masks) == set(batched.masks) == {"t", "u"}
    for target in one.masks:
        assert any(m.any() for m in one.masks[target])  # not vacuous
        for a, b in zip(one.masks[target], batched.masks[target], strict=True):
            assert np.array_equal(a, b)
        worst = max(float(np.abs(a - b).max()) for a, b in
                    zip(one.logits[target], batched.logits[target], strict=True))
        assert worst <= LOGIT_TOLERANCE


@pytest.mark.parametrize("size", [256, pytest.param(512, marks=pytest.mark.slow)])
def test_batched_encoding_gives_the_same_masks(size):
    frames = flow()
    assert_same(sam2(size, 1).predict(frames, PROMPTS), sam2(size, 4).predict(frames, PROMPTS))


def test_batched_encoding_in_medsam2s_official_loop():
    frames = flow(5, kind="image-flow")
    prompts = [Prompt("t", 0, "point", points=((40, 35),), labels=(1,)),
               Prompt("u", 0, "box", box=(25, 20, 59, 49))]

    def medsam2(batch):
        return MedSAM2Adapter(settings={"random_weights": True, "image_size": 256,
                                        "device": "cpu", "cache_mb": 0, "encode_batch": batch,
                                        "memory": "official"})

    assert_same(medsam2(1).predict(frames, prompts), medsam2(3).predict(frames, prompts))


def test_each_frame_is_encoded_once_in_batches_of_b(monkeypatch):
    """Prompt on frame 2 of 6, B = 4: [2, 3, 4, 5] when the prompt is added, then the
    backward pass's [1, 0] padded to four; nothing else reaches the encoder."""
    adapter = sam2(256, 4)
    model = adapter.load().predictor
    sizes = []
    real = model.forward_image

    def counted(images):
        sizes.append(len(images))
        return real(images)

    monkeypatch.setattr(model, "forward_image", counted)
    adapter.predict(flow(), PROMPTS[:1])
    assert sizes == [4, 4]
    sizes.clear()
    sam2(256, 1).predict(flow(), PROMPTS[:1])  # same model (process cache): one by one
    assert sizes == [1] * 6


def test_batch_size_is_part_of_the_fingerprint_and_cache_key():
    one, four = sam2(256, 1).fingerprint(), sam2(256, 4).fingerprint()
    assert one["settings"]["encode_batch"] == 1 and four["settings"]["encode_batch"] == 4


def test_compile_option_compiles_sam2s_vos_components(monkeypatch):
    """``compile = "vos"`` compiles what sam2 1.1.0's SAM2VideoPredictorVOS compiles (and
    the image encoder, as its vos_optimized build does); outputs are cloned."""
    calls = []

    def fake_compile(function, **options):
        calls.append((function.__self__.__class__.__name__, options["dynamic"],
                      options["mode"], options["fullgraph"]))
        return lambda *a, **k: {"out": torch.ones(2)}

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = build.instantiate("sam2_hiera_t", 256, 0)
    build.compile_components(model, "vos")
    assert calls == [("ImageEncoder", False, "max-autotune", True),
                     ("MemoryEncoder", False, "max-autotune", True),
                     ("MemoryAttention", True, "max-autotune", True),
                     ("PromptEncoder", False, "max-autotune", True),
                     ("MaskDecoder", False, "max-autotune", True)]
    first, second = model.image_encoder(None), model.image_encoder(None)
    assert first["out"] is not second["out"]  # a fresh tensor per call (cloned)
    calls.clear()
    build.compile_components(build.instantiate("sam2_hiera_t", 256, 0), "off")
    assert calls == []


def test_compiled_models_are_not_shared_with_plain_ones():
    plain = sam2(256, 1)
    key = plain._model_key("sam2_hiera_t", "random:0")
    assert key != sam2(256, 1, compile="encoder")._model_key("sam2_hiera_t", "random:0")
