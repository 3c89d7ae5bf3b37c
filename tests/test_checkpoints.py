"""Checkpoint resolution, safe loading, strict key checks and the MedSAM-2 config match."""

from __future__ import annotations

import hashlib
import pickle

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from bench.adapters import checkpoints  # noqa: E402
from bench.adapters.checkpoints import CheckpointError  # noqa: E402
from bench.adapters.medsam2.adapter import MedSAM2Adapter  # noqa: E402
from bench.adapters.sam2.build import expected_shapes, instantiate  # noqa: E402


@pytest.fixture(scope="module")
def tiny_state():
    """State dict of a randomly initialised SAM 2.0 tiny model."""
    return instantiate("sam2_hiera_t", 256, 0).state_dict()


@pytest.fixture(scope="module")
def other_tiny():
    """A SAM 2.0 tiny model with other random weights."""
    return instantiate("sam2_hiera_t", 256, 1)


class Payload:
    """Pickles to a call that creates ``marker`` when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_official_format_loads_strictly_into_tiny(tmp_path, tiny_state, other_tiny):
    path = tmp_path / "MedSAM2_pretrain.pth"
    # The official training code saves {"model": state_dict, "parameter": net._parameters}.
    extra = {"no_mem_embed": torch.nn.Parameter(tiny_state["no_mem_embed"].clone())}
    torch.save({"model": tiny_state, "parameter": extra}, path)
    loaded = checkpoints.load_state_dict(path)
    assert list(loaded) == list(tiny_state)
    assert all(torch.equal(loaded[k], tiny_state[k]) for k in tiny_state)

    adapter = MedSAM2Adapter(settings={"checkpoint": str(path), "image_size": 256,
                                       "device": "cpu"})
    config, message = adapter._select_config(loaded, str(path))
    assert config == "sam2_hiera_t"
    assert "matches sam2_hiera_t" in message and f"all {len(tiny_state)} keys match" in message

    model = other_tiny
    key = "sam_mask_decoder.iou_prediction_head.layers.0.weight"
    assert not torch.equal(model.state_dict()[key], tiny_state[key])
    checkpoints.load_strict(model, loaded, str(path))
    assert all(torch.equal(v, tiny_state[k]) for k, v in model.state_dict().items())


def test_fingerprint_records_checkpoint_hash(tmp_path, tiny_state):
    path = tmp_path / "bare.pt"
    torch.save(dict(tiny_state), path)  # a bare state dict is accepted too
    adapter = MedSAM2Adapter(settings={"checkpoint": str(path), "image_size": 256,
                                       "device": "cpu"})
    record = adapter.fingerprint()
    assert record["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["config"] == "sam2_hiera_t" and "matches sam2_hiera_t" in record["config_match"]
    assert record["image_size"] == 256 and record["meaningless"] is False
    assert record["memory_policy"].startswith("official")
    weights = adapter.load().predictor.state_dict()
    assert all(torch.equal(weights[k], tiny_state[k]) for k in tiny_state)


def test_auto_config_tries_tiny_then_small():
    small = {k: torch.zeros(shape) for k, shape in expected_shapes("sam2_hiera_s").items()}
    adapter = MedSAM2Adapter(settings={"random_weights": True})
    config, message = adapter._select_config(small, "small.pt")
    assert config == "sam2_hiera_s"
    assert "tried sam2_hiera_t first" in message


def test_key_mismatch_summary(tiny_state, other_tiny):
    state = dict(tiny_state)
    dropped = [k for k in state if k != "no_mem_embed"][:7]
    for key in dropped:
        del state[key]
    state["extra.weight"] = torch.zeros(1)
    state["extra.bias"] = torch.zeros(1)
    state["no_mem_embed"] = torch.zeros(1, 1, 3)
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_strict(other_tiny, state, "bad.pt")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("bad.pt: does not fit the model: 7 missing, 2 unexpected, "
                           "1 with another shape")
    assert ", ".join(dropped[:5]) + ", ... (+2 more)" in text
    assert "extra.weight, extra.bias" in text
    assert "no_mem_embed (1, 1, 3) vs model (1, 1, 256)" in text


def test_auto_config_neither_fits(tiny_state):
    state = {k: v for k, v in tiny_state.items() if "image_encoder" not in k}
    adapter = MedSAM2Adapter(settings={"random_weights": True})
    with pytest.raises(CheckpointError, match=r"x\.pt: does not fit sam2_hiera_t or "
                                              r"sam2_hiera_s \(sam2_hiera_t: \d+ missing"):
        adapter._select_config(state, "x.pt")


def test_code_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_state_dict(path)
    text = str(err.value)
    assert str(path) in text and "refused global exec" in text
    assert "\n" not in text
    # The project's own words: never torch's advice to retry with weights_only=False.
    assert "weights_only" not in text and "only weights-only checkpoints are read" in text
    assert not marker.exists()
    # The payload is real: unpickling it without restrictions runs it.
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_unreadable_and_non_state_dict_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt: not a readable torch checkpoint"):
        checkpoints.load_state_dict(garbage)
    # What torch.load raises differs by file (EOFError, KeyError, IndexError, RuntimeError
    # from the zip reader): each is the same refusal naming the file.
    import io
    import zipfile

    import numpy as np

    whole = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, whole)
    npz, other_zip = io.BytesIO(), io.BytesIO()
    np.savez(npz, x=np.zeros(3))
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("x.txt", "hi")
    for name, data in {"empty": b"", "text": b"hello world\n",
                       "random": np.random.default_rng(0).bytes(3000),
                       "truncated": whole.getvalue()[: len(whole.getvalue()) // 2],
                       "npz": npz.getvalue(), "zip": other_zip.getvalue()}.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=rf"{name}.pt: not a readable torch "
                                                  r"checkpoint \(\w+"):
            checkpoints.load_state_dict(path)
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "lr": 0.1}, other)
    with pytest.raises(CheckpointError, match=r"other.pt: expected a state dict .*"
                                              r"keys \['epoch', 'lr'\]"):
        checkpoints.load_state_dict(other)


def test_missing_checkpoint_names_every_way_to_give_it(monkeypatch):
    monkeypatch.delenv("MEDSAM2_BENCH_CHECKPOINT_MEDSAM2", raising=False)
    adapter = MedSAM2Adapter(settings={})
    with pytest.raises(CheckpointError) as err:
        adapter.load()
    text = str(err.value)
    for needle in ("[models.medsam2]", "checkpoint = ", "MEDSAM2_BENCH_CHECKPOINT_MEDSAM2",
                   "--checkpoint medsam2=PATH", "jiayuanz3/MedSAM2_pretrain", "--random-weights"):
        assert needle in text
    assert "\n" not in text


def test_absent_file_from_setting_or_environment(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(CheckpointError, match=r"nowhere.pth: checkpoint file not found "
                                              r"\(from \[models.medsam2\].checkpoint\)"):
        checkpoints.resolve_checkpoint("medsam2", str(missing), "hub")
    monkeypatch.setenv("MEDSAM2_BENCH_CHECKPOINT_SAM2", str(missing))
    with pytest.raises(CheckpointError, match=r"\(from MEDSAM2_BENCH_CHECKPOINT_SAM2\)"):
        checkpoints.resolve_checkpoint("sam2", "", "hub")
    real = tmp_path / "w.pt"
    real.write_bytes(b"x")
    monkeypatch.setenv("MEDSAM2_BENCH_CHECKPOINT_SAM2", str(real))
    assert checkpoints.resolve_checkpoint("sam2", "", "hub") == real
    chosen = tmp_path / "chosen.pt"
    chosen.write_bytes(b"x")
    # The setting (bench.toml or --checkpoint) wins over the environment.
    assert checkpoints.resolve_checkpoint("sam2", str(chosen), "hub") == chosen
    assert checkpoints.env_var("random-walker") == "MEDSAM2_BENCH_CHECKPOINT_RANDOM_WALKER"
