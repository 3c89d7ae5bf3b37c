"""SAM 2.1 tiny, small, base+ and large: built from pip sam2 with random weights,
checked against the published architecture and round-tripped through the
checkpoint loader in the published format (``{"model": state_dict}``).

Published numbers (facebookresearch/sam2 README, SAM 2.1 table): 38.9 M,
46 M, 80.8 M and 224.4 M parameters. Hiera trunk widths 96 / 96 / 112 / 144
with 12 / 16 / 24 / 48 blocks; the neck takes the trunk's last stage
(8 x width channels).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from bench.adapters import checkpoints  # noqa: E402
from bench.adapters.sam2.adapter import SAM2Adapter  # noqa: E402
from bench.adapters.sam2.build import CONFIGS, PUBLISHED, expected_shapes, instantiate  # noqa: E402

# config: (parameters in millions, trunk width, blocks)
SAM21 = {
    "sam2.1_hiera_t": (38.9, 96, 12),
    "sam2.1_hiera_s": (46.0, 96, 16),
    "sam2.1_hiera_b+": (80.8, 112, 24),
    "sam2.1_hiera_l": (224.4, 144, 48),
}
CASES = [pytest.param(name, marks=pytest.mark.slow) if name in ("sam2.1_hiera_b+",
                                                                 "sam2.1_hiera_l")
         else name for name in SAM21]


@pytest.mark.parametrize("config", CASES)
def test_sam21_config_round_trips_through_the_checkpoint_loader(config, tmp_path):
    millions, width, blocks = SAM21[config]
    assert config in CONFIGS
    model = instantiate(config, 1024, 0)
    state = model.state_dict()
    if config == "sam2.1_hiera_t":  # exact count, also in the medsam2-ma research note
        assert sum(v.numel() for v in state.values()) == 38_962_754
    # the README rounds (tiny: 38.96 M listed as 38.9)
    assert sum(v.numel() for v in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)
    assert tuple(state["image_encoder.trunk.patch_embed.proj.weight"].shape) == (width, 3, 7, 7)
    assert f"image_encoder.trunk.blocks.{blocks - 1}.attn.qkv.weight" in state
    assert f"image_encoder.trunk.blocks.{blocks}.attn.qkv.weight" not in state
    assert tuple(state["image_encoder.neck.convs.0.conv.weight"].shape) == (256, 8 * width, 1, 1)
    # SAM 2.1-only keys
    assert tuple(state["no_obj_embed_spatial"].shape) == (1, 64)
    assert tuple(state["obj_ptr_tpos_proj.weight"].shape) == (64, 256)
    assert checkpoints.check_keys(expected_shapes(config), state).ok

    path = tmp_path / "weights.pt"
    torch.save({"model": state, "optimizer": {}}, path)
    loaded = checkpoints.load_state_dict(path)
    assert loaded.keys() == state.keys()
    fresh = instantiate(config, 1024, 1)
    checkpoints.load_strict(fresh, loaded, str(path))
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize("config", ["sam2.1_hiera_t", "sam2.1_hiera_s"])
def test_sam2_adapter_loads_a_sam21_checkpoint(config, tmp_path):
    state = instantiate(config, 256, 3).state_dict()
    path = tmp_path / "sam21.pt"
    torch.save({"model": state}, path)
    adapter = SAM2Adapter(settings={"config": config, "checkpoint": str(path),
                                    "image_size": 256, "device": "cpu"})
    record = adapter.fingerprint()
    assert record["config"] == config and record["checkpoint"] == str(path)
    key = "memory_attention.layers.0.self_attn.q_proj.weight"
    assert torch.equal(adapter.load().predictor.state_dict()[key], state[key])


def test_sam2_adapter_refuses_a_sam21_checkpoint_under_a_sam20_config(tmp_path):
    path = tmp_path / "sam21_tiny.pt"
    torch.save({"model": instantiate("sam2.1_hiera_t", 256, 0).state_dict()}, path)
    adapter = SAM2Adapter(settings={"config": "sam2_hiera_t", "checkpoint": str(path),
                                    "image_size": 256, "device": "cpu"})
    with pytest.raises(checkpoints.CheckpointError, match="unexpected.*no_obj_embed_spatial"):
        adapter.load()


def test_every_sam21_config_says_where_its_weights_are():
    for config in SAM21:
        assert "huggingface.co/facebook/sam2.1-hiera" in PUBLISHED[config]
