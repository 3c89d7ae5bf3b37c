"""Every registered reader implements the one interface, and cards are strict models.

For each built-in reader a tiny dataset is written (or generated), its flows
are listed, and each flow re-read by id with :func:`bench.readers.read_flow`
must equal the flow :func:`bench.readers.read_flows` streamed, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_readers_support import revise

from bench.errors import ConfigError, DataError
from bench.readers import (
    FlowRef,
    Reader,
    card_from_table,
    card_to_table,
    get_reader,
    load_card,
    load_cards,
    option_reference,
    read_flow,
    read_flows,
    reader_names,
)
from bench.readers.cards import Card
from bench.types import Flow

CARDS = Path(__file__).resolve().parents[1] / "datasets"


def nii(path: Path, array: np.ndarray, spacing=(0.8, 0.8, 2.5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))


def _labels(shape, seed: int, values) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.asarray(values, np.uint8), size=shape)


# --------------------------------------------------------------------------- one dataset per reader


def _volumes(root: Path) -> Card:
    for case in ("0001", "0002"):
        nii(root / f"RawData/Training/img/img{case}.nii.gz",
            np.random.default_rng(int(case)).integers(-500, 500, (6, 5, 4)).astype(np.int16))
        nii(root / f"RawData/Training/label/label{case}.nii.gz",
            _labels((6, 5, 4), int(case), [0, 1, 6, 12, 13]))
    return load_card(CARDS / "btcv.toml")


def _pairs2d(root: Path) -> Card:
    for folder, count in (("Dataset 1", 2), ("Dataset 2", 1)):
        for i in range(1, count + 1):
            (root / folder).mkdir(parents=True, exist_ok=True)
            rgb = np.random.default_rng(i).integers(0, 256, (7, 6, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(root / folder / f"{i:03d}.bmp")
            Image.fromarray(_labels((7, 6), i, [0, 128, 255])).save(root / folder / f"{i:03d}.png")
    return load_card(CARDS / "wbc.toml")


def _nnunet(root: Path) -> Card:
    for case in ("liver_001", "liver_002"):
        nii(root / f"imagesTr/{case}_0000.nii.gz", np.full((4, 4, 3), 7, np.float32))
        nii(root / f"labelsTr/{case}.nii.gz", _labels((4, 4, 3), len(case), [0, 1, 2]))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumour": 2},
        "file_ending": ".nii.gz"}))
    return card_from_table({"name": "task", "reader": "nnunet", "kind": "volume",
                            "targets": []}, "task")


def _nnunet_2d(root: Path) -> Card:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, case in enumerate(("eye_001", "eye_002", "eye_003")):
        Image.fromarray(np.full((6, 5), 30 * i, np.uint8)).save(root / f"imagesTr/{case}_0000.png")
        Image.fromarray(_labels((6, 5), i, [0, 1, 2])).save(root / f"labelsTr/{case}.png")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "fundus"}, "labels": {"background": 0, "cup": 1, "disc": 2},
        "file_ending": ".png"}))
    return card_from_table({"name": "eyes", "reader": "nnunet-2d", "kind": "image-flow",
                            "targets": [], "options": {"chunk_size": 2}}, "eyes")


def _medsam2_btcv(root: Path) -> Card:
    for case in ("img0035", "img0036"):
        for i in range(3):
            frame = np.full((6, 7), 40 * i, np.uint8)
            (root / f"Test/image/{case}").mkdir(parents=True, exist_ok=True)
            (root / f"Test/mask/{case}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.stack([frame] * 3, -1)).save(root / f"Test/image/{case}/{i}.jpg")
            np.save(root / f"Test/mask/{case}/{i}.npy", _labels((6, 7), i, [0, 6, 12]).astype(
                np.int64))
    return load_card(CARDS / "official-btcv.toml")


def _hf(root: Path) -> Card:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
    images = [Image.fromarray(np.full((5, 4, 3), 10 * i, np.uint8)) for i in range(3)]
    masks = [Image.fromarray(_labels((5, 4), i, [0, 255])) for i in range(3)]
    datasets.Dataset.from_dict({"image": images, "mask": masks}, features=features
                               ).save_to_disk(str(root / "saved"))
    return card_from_table({"name": "hf-set", "reader": "hf", "kind": "image-flow",
                            "targets": ["lesion"],
                            "options": {"path": "saved", "threshold": 128, "chunk_size": 2}},
                           "hf-set")


def _demo(root: Path) -> Card:
    return revise(load_card(CARDS / "demo-ultrasound.toml"), options={"flows": 2, "frames": 3,
                                                                      "size": 64})


DATASETS: dict[str, Callable[[Path], Card]] = {
    "volumes": _volumes, "pairs2d": _pairs2d, "nnunet": _nnunet, "nnunet-2d": _nnunet_2d,
    "medsam2-btcv": _medsam2_btcv, "hf": _hf, "demo": _demo,
}


def assert_same_flow(a: Flow, b: Flow) -> None:
    assert (a.id, a.dataset, a.kind, a.spacing) == (b.id, b.dataset, b.kind, b.spacing)
    assert a.case_ids == b.case_ids and a.patient_ids == b.patient_ids
    assert len(a.frames) == len(b.frames)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert fa.dtype == fb.dtype and fa.shape == fb.shape and fa.tobytes() == fb.tobytes()
    assert list(a.masks) == list(b.masks)
    for target in a.masks:
        for ma, mb in zip(a.masks[target], b.masks[target], strict=True):
            assert ma.dtype == mb.dtype and ma.tobytes() == mb.tobytes()
    assert json.dumps(a.meta, default=repr, sort_keys=True) == json.dumps(
        b.meta, default=repr, sort_keys=True)


def test_every_builtin_reader_has_a_dataset_here():
    builtin = {name for name in reader_names()
               if type(get_reader(name)).__module__.startswith("bench.readers.")}
    assert builtin == set(DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_reader_lists_and_loads_one_flow_by_id(name, tmp_path):
    card = DATASETS[name](tmp_path)
    assert card.reader == name
    reader = get_reader(name)
    assert isinstance(reader, Reader) and isinstance(card.options, reader.options_model)
    root = tmp_path if reader.needs_root(card) else None
    refs = reader.list_flows(card, root)
    streamed = list(read_flows(card, root))
    assert len(streamed) >= 2 and all(isinstance(ref, FlowRef) for ref in refs)
    assert [ref.id for ref in refs] == [flow.id for flow in streamed]
    assert len({ref.id for ref in refs}) == len(refs)
    listings: dict = {}
    for position, flow in reversed(list(enumerate(streamed))):  # any order
        assert_same_flow(read_flow(card, root, flow.id, position, None, listings), flow)
        assert_same_flow(reader.load_flow(card, refs[position]), flow)
    assert list(listings) == [(card.name, str(root))]


def test_read_flow_refuses_a_flow_it_no_longer_lists(tmp_path):
    card = _volumes(tmp_path)
    assert read_flow(card, tmp_path, "img0002").id == "img0002"
    with pytest.raises(DataError, match=r"flow 'img0003' \(position 2\) of dataset 'btcv' "
                                        r"cannot be read again"):
        read_flow(card, tmp_path, "img0003", 2)
    with pytest.raises(DataError, match="flow 'img0002'"):
        read_flow(card, tmp_path, "img0002", 1, limit=1)  # the run read only the first flow
    with pytest.raises(ConfigError, match="limit must be non-negative"):
        read_flow(card, tmp_path, "img0001", limit=-1)


def test_read_flows_limit_counts_listed_flows(tmp_path):
    card = _volumes(tmp_path)
    assert [f.id for f in read_flows(card, tmp_path, limit=1)] == ["img0001"]
    assert list(read_flows(card, tmp_path, limit=0)) == []


# --------------------------------------------------------------------------- cards as models


def test_unknown_option_is_refused_with_a_suggestion():
    card = load_card(CARDS / "btcv.toml")
    with pytest.raises(ConfigError) as err:
        revise(card, options={"chunk_sise": 4})
    assert str(err.value) == (f"{CARDS / 'btcv.toml'}.options: unknown key 'chunk_sise' "
                              "(did you mean 'chunk_size'?)")
    with pytest.raises(ConfigError, match=r"tnmix.toml.options.sources.0: unknown key 'imag'"):
        revise(load_card(CARDS / "tnmix.toml"), options={"sources": [{"imag": "x"}]})


def test_wrong_option_type_names_the_key():
    card = load_card(CARDS / "btcv.toml")
    with pytest.raises(ConfigError) as err:
        revise(card, options={"chunk_size": "4"})
    text = str(err.value)
    assert text.startswith(f"{CARDS / 'btcv.toml'}.options.chunk_size") and "(got '4')" in text
    with pytest.raises(ConfigError, match=r"options.labels.liver: .* \(got 6.5\)"):
        revise(card, options={"labels": {"liver": 6.5}})
    with pytest.raises(ConfigError, match=r"options.check_geometry: .* \(got 1\)"):
        revise(card, options={"check_geometry": 1})  # TOML gives booleans: 1 is a typo


def test_card_keys_and_reader_are_checked():
    card = load_card(CARDS / "btcv.toml")
    with pytest.raises(ConfigError, match=r"btcv.toml.reader: unknown reader 'volume' "
                                          r"\(did you mean 'volumes'\?\)"):
        revise(card, reader="volume")
    with pytest.raises(ConfigError, match=r"btcv.toml: unknown key 'kinds'"):
        revise(card, kinds="volume")
    with pytest.raises(ConfigError, match=r"btcv.toml.one_prompt_kind: .* \(got 'pointt'\)"):
        revise(card, one_prompt_kind="pointt")
    with pytest.raises(ConfigError, match=r"pairs2d' reads 2D images; kind must be 'image-flow'"):
        revise(load_card(CARDS / "wbc.toml"), kind="volume")


def test_every_card_round_trips_through_its_table():
    for card in load_cards(CARDS).values():
        table = card_to_table(card)
        assert json.loads(json.dumps(table)) == table  # JSON-ready
        again = card_from_table(table, "recorded")
        assert again.model_dump() == card.model_dump() and again.options == card.options
        assert again.path is None and card.path == CARDS / f"{card.name}.toml"


# --------------------------------------------------------------------------- options reference


def test_option_reference_lists_every_option_of_every_reader():
    rows = option_reference()
    assert all(set(row) == {"name", "type", "default", "description", "reader"} for row in rows)
    assert all(row["description"] for row in rows)
    accepted: dict[str, set[str]] = {}
    for row in rows:
        for reader in row["reader"].split(", "):
            accepted.setdefault(reader, set()).add(row["name"])
    for name in reader_names():
        model = get_reader(name).options_model
        top = {n for n in accepted.get(name, set()) if "[]." not in n}
        assert top == set(model.model_fields), name
    by_name = {row["name"]: row for row in rows}
    assert by_name["generator"]["default"] == "required" and by_name["generator"]["reader"] == (
        "demo")
    assert "pairs2d" in by_name["sources[].image"]["reader"]
    labels = by_name["labels"]["reader"].split(", ")
    assert set(labels) == {"hf", "medsam2-btcv", "nnunet", "nnunet-2d", "pairs2d", "volumes"}
    only_volumes = option_reference(["volumes"])
    assert {row["reader"] for row in only_volumes} == {"volumes"}
    with pytest.raises(ConfigError, match="unknown reader 'volume'"):
        option_reference(["volume"])
