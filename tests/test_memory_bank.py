"""The official 2D confidence memory bank and weighted pick-up on hand-made tensors."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from bench.adapters.medsam2.memory_bank import (  # noqa: E402
    BANK_SIZE,
    REPLACE_MARGIN,
    BankEntry,
    ConfidenceBank,
    bank_insert,
    draw_entries,
    flatten_current,
    gather_memory,
    pickup_weights,
    replacement_candidate,
)


def entry(vector, confidence=0.5, frame=-1, embedding=None):
    """A bank entry whose memory features are ``vector`` laid out as (1, C, 1, 1)."""
    memory = torch.tensor(vector, dtype=torch.float32).reshape(1, -1, 1, 1)
    emb = torch.tensor(embedding if embedding is not None else vector, dtype=torch.float32)
    return BankEntry(memory, torch.zeros_like(memory), confidence, emb, frame)


def unit(degrees):
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_official_constants():
    assert BANK_SIZE == 16
    assert REPLACE_MARGIN == 0.1


def test_bank_appends_until_full_then_stays_at_its_size():
    bank = []
    for i in range(BANK_SIZE):
        bank, decision = bank_insert(bank, entry(unit(7 * i), frame=i))
        assert decision.action == "append"
    assert len(bank) == BANK_SIZE
    for i in range(10):
        bank, decision = bank_insert(bank, entry(unit(200 + 13 * i), confidence=0.9, frame=100 + i))
        assert decision.action != "append"
        assert len(bank) == BANK_SIZE


def test_replacement_rule_hand_computed():
    # M0 at 0 deg, M1 at 10 deg, M2 at 90 deg; m at 135 deg.
    # cos(M_i, m) = cos 135, cos 125, cos 45 -> j = 0 (least similar to m);
    # most similar to M0 among the others: M1 (cos 10) -> l = 1.
    # Diversity: cos(M0, m) = cos 135 < cos(M0, M1) = cos 10.
    bank = [entry(unit(0), 0.9, 0), entry(unit(10), 0.7, 1), entry(unit(90), 0.8, 2)]
    j, most, sim_new, sim_member = replacement_candidate(
        torch.stack([e.memory.reshape(-1) for e in bank]), torch.tensor(unit(135)))
    assert (j, most) == (0, 1)
    assert sim_new == pytest.approx(math.cos(math.radians(135)), abs=1e-6)
    assert sim_member == pytest.approx(math.cos(math.radians(10)), abs=1e-6)

    new, decision = bank_insert(bank, entry(unit(135), 0.65, 3), size=3)
    # 0.65 > 0.7 - 0.1: confident enough; l is removed and m appended at the end.
    assert decision.action == "replace" and decision.replaced == 1
    assert decision.least_similar == 0
    assert [e.frame for e in new] == [0, 2, 3]
    assert [e.frame for e in bank] == [0, 1, 2]  # the input list is untouched


def test_replacement_needs_confidence_above_member_minus_margin():
    bank = [entry(unit(0), 0.9, 0), entry(unit(10), 0.75, 1), entry(unit(90), 0.8, 2)]
    # Margin 0.25: the threshold is exactly 0.5 and the comparison is strict.
    kept, decision = bank_insert(bank, entry(unit(135), 0.5, 3), size=3, margin=0.25)
    assert decision.action == "keep-confidence"
    assert [e.frame for e in kept] == [0, 1, 2]
    replaced, decision = bank_insert(bank, entry(unit(135), 0.5001, 3), size=3, margin=0.25)
    assert decision.action == "replace"
    # A less confident entry may still replace a member (soft rule: within the margin).
    _, decision = bank_insert(bank, entry(unit(135), 0.66, 3), size=3)
    assert decision.action == "replace"


def test_replacement_needs_diversity():
    # M1 and M2 duplicate; m is orthogonal to all. cos(., m) ties at 0 -> j = 0;
    # the most similar to M0 is M1 (cos -1, tie with M2, first wins) -> l = 1.
    # cos(M0, m) = 0 is not < cos(M0, M1) = -1: the bank keeps its members.
    bank = [entry([1.0, 0.0, 0.0], 0.1, 0), entry([-1.0, 0.0, 0.0], 0.1, 1),
            entry([-1.0, 0.0, 0.0], 0.1, 2)]
    kept, decision = bank_insert(bank, entry([0.0, 1.0, 0.0], 0.99, 3), size=3)
    assert decision.action == "keep-diversity"
    assert (decision.least_similar, decision.sim_new, decision.sim_member) == (0, 0.0, -1.0)
    assert [e.frame for e in kept] == [0, 1, 2]


def test_similarity_is_cosine_not_dot_product():
    # Scaling a memory must not change the decision.
    bank = [entry(unit(0), 0.9, 0), entry([10 * v for v in unit(10)], 0.7, 1),
            entry([0.01 * v for v in unit(90)], 0.8, 2)]
    _, decision = bank_insert(bank, entry([5 * v for v in unit(135)], 0.65, 3), size=3)
    assert (decision.action, decision.replaced, decision.least_similar) == ("replace", 1, 0)


def test_pickup_weights_softmax_of_cosine_hand_computed():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    current = torch.tensor([[4.0, 0.0]])
    cosines = [1.0, 0.0, math.sqrt(0.5)]
    expected = [math.exp(c) / sum(math.exp(x) for x in cosines) for c in cosines]
    weights = pickup_weights(embeddings, current)
    assert weights.shape == (1, 3)
    assert weights[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_flatten_orders():
    # (HW=2, B=1, C=3) with value 10 * position + channel.
    feats = torch.tensor([[[0.0, 1.0, 2.0]], [[10.0, 11.0, 12.0]]])
    assert flatten_current(feats, "official")[0].tolist() == [0, 1, 2, 10, 11, 12]
    assert flatten_current(feats, "aligned")[0].tolist() == [0, 10, 1, 11, 2, 12]
    # A bank embedding is the (C, H, W) flatten of the same map: only "aligned" matches it.
    embedding = feats.permute(1, 2, 0).reshape(-1)
    aligned = pickup_weights(embedding[None], flatten_current(feats, "aligned"))
    assert float(torch.nn.functional.cosine_similarity(
        embedding, flatten_current(feats, "aligned")[0], dim=0)) == pytest.approx(1.0)
    assert float(torch.nn.functional.cosine_similarity(
        embedding, flatten_current(feats, "official")[0], dim=0)) < 0.99
    assert aligned.tolist() == [[1.0]]
    with pytest.raises(ValueError, match="flatten_order"):
        flatten_current(feats, "rows")


def test_draws_with_a_fixed_generator():
    weights = torch.tensor([[0.7, 0.2, 0.1, 0.0]])
    first = draw_entries(weights, 20_000, torch.Generator().manual_seed(3))
    again = draw_entries(weights, 20_000, torch.Generator().manual_seed(3))
    other = draw_entries(weights, 20_000, torch.Generator().manual_seed(4))
    assert first.shape == (1, 20_000)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    counts = torch.bincount(first[0], minlength=4).double() / 20_000
    assert counts.tolist() == pytest.approx([0.7, 0.2, 0.1, 0.0], abs=0.015)
    # With replacement: more draws than members.
    assert draw_entries(torch.tensor([[0.5, 0.5]]), 5, None).shape == (1, 5)


def test_gather_memory_layout_matches_the_official_indexing():
    # Three entries with memory (1, C=2, h=1, w=2); entry k holds 100k + 10c + position.
    bank = []
    for k in range(3):
        values = torch.tensor([[[[100 * k + 10 * c + p for p in range(2)]] for c in range(2)]],
                              dtype=torch.float32)
        bank.append(BankEntry(values, -values, 0.5, torch.ones(4), k))
    indices = torch.tensor([[2, 0], [1, 1]])  # B = 2 rows, 2 draws each (official: B draws)
    memory, pos = gather_memory(bank, indices)
    # The official code: stack entries as (N, hw, 1, C), index with (B, B), squeeze,
    # permute to (draw, hw, row, C) and merge (draw, hw).
    stacked = torch.stack([e.memory.flatten(2).permute(2, 0, 1) for e in bank])
    official = stacked[indices].squeeze(3).permute(1, 2, 0, 3).reshape(-1, 2, 2)
    assert memory.shape == (4, 2, 2)
    assert torch.equal(memory, official)
    assert torch.equal(pos, -official)
    # Row 0, first token: entry 2, channel values at position 0.
    assert memory[0, 0].tolist() == [200.0, 210.0]


def test_confidence_bank_pick_draws_similar_entries():
    # Entry embeddings: one parallel to the current feature, one opposite. With
    # cosines 1 and -1 the weights are e / (e + 1/e) and 1/e / (e + 1/e).
    current = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])  # (HW=2, B=1, C=2)
    flat = flatten_current(current, "official")[0]
    bank = ConfidenceBank(size=4, draws=3, generator=torch.Generator().manual_seed(0))
    bank.add(entry([1.0, 0.0], frame=0, embedding=flat.tolist()))
    bank.add(entry([0.0, 1.0], frame=1, embedding=(-flat).tolist()))
    weights = pickup_weights(torch.stack([e.embedding for e in bank.entries]), flat[None])
    p0 = math.e / (math.e + 1 / math.e)
    assert weights[0].tolist() == pytest.approx([p0, 1 - p0], abs=1e-6)
    memory, pos = bank.pick(current, frame=5)
    assert memory.shape == (3, 1, 2)  # 3 draws of 1 token of 2 channels
    expected = draw_entries(weights, 3, torch.Generator().manual_seed(0))[0].tolist()
    assert bank.picks == [(5, tuple(expected))]
    assert memory[:, 0].tolist() == [bank.entries[i].memory.reshape(-1).tolist()
                                     for i in expected]
