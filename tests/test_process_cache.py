"""The adapters' process-wide memos: the embedding LRU, the memo, the file-digest cache."""

from __future__ import annotations

import hashlib
import os

import pytest

torch = pytest.importorskip("torch")

from bench.adapters.process_cache import (  # noqa: E402
    PROCESS_CACHE,
    EmbeddingCache,
    Memo,
    cached_sha256_file,
    shared_embedding_cache,
)


def tensors(n_floats: int, value: float = 0.0) -> list:
    return [torch.full((n_floats,), value, dtype=torch.float32)]  # 4 bytes per float


def test_embedding_lru_is_bounded_in_bytes_and_drops_the_least_recent():
    cache = EmbeddingCache(max_bytes=100)  # room for two 40-byte entries, not three
    cache.put("a", tensors(10, 1.0))
    cache.put("b", tensors(10, 2.0))
    assert cache.get("a")[0][0] == 1.0  # "a" is now the most recent
    cache.put("c", tensors(10, 3.0))
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2
    cache.put("huge", tensors(30))  # 120 bytes: over the whole budget, never kept
    assert "huge" not in cache and len(cache) == 2
    assert cache.get("b") is None
    disabled = EmbeddingCache(0)
    disabled.put("x", tensors(1))
    assert len(disabled) == 0 and disabled.get("x") is None


def test_embedding_disk_level_round_trips_and_leaves_no_partial_file(tmp_path):
    writer = EmbeddingCache(0)  # disk only
    writer.put("k", [torch.arange(6, dtype=torch.float32).reshape(2, 3)], tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["k.pt"]
    reader = EmbeddingCache(1 << 20)
    back = reader.get("k", tmp_path)
    assert torch.equal(back[0], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert "k" in reader  # promoted to memory
    assert reader.get("other", tmp_path) is None


def test_memo_builds_once_per_key():
    memo: Memo[int] = Memo()
    calls = []
    assert memo.get(("a", 1), lambda: calls.append(1) or 7) == 7
    assert memo.get(("a", 1), lambda: calls.append(1) or 8) == 7
    assert calls == [1] and ("a", 1) in memo and len(memo) == 1
    memo.clear()
    assert len(memo) == 0


def test_shared_budget_only_grows_and_clear_empties_every_memo(tmp_path):
    before = PROCESS_CACHE.embeddings.max_bytes
    try:
        grown = shared_embedding_cache(before / 2**20 + 1)
        assert grown is PROCESS_CACHE.embeddings
        assert grown.max_bytes == int((before / 2**20 + 1) * 2**20)
        assert shared_embedding_cache(0).max_bytes == grown.max_bytes
        path = tmp_path / "w.pt"
        path.write_bytes(b"weights")
        assert cached_sha256_file(path) == hashlib.sha256(b"weights").hexdigest()
        assert len(PROCESS_CACHE.file_digests) >= 1
        PROCESS_CACHE.clear()
        assert len(PROCESS_CACHE.file_digests) == 0 and len(PROCESS_CACHE.models) == 0
    finally:
        PROCESS_CACHE.embeddings.max_bytes = before


def test_file_digest_follows_a_rewritten_file(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"first")
    assert cached_sha256_file(path) == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"second!")  # another size: another key
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cached_sha256_file(path) == hashlib.sha256(b"second!").hexdigest()
