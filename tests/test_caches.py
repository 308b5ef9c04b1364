"""What a long-running server keeps between calls has a size (issue 16: one process calling the
CLI 600 times grew from 230 MB to 830 MB)."""
import torch

from attn import caches
from attn.spec import AttentionSpec
from attn.variants import sdpa


def test_an_lru_forgets_its_least_recently_used_entry():
    cache = caches.LRU("test lru", 2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # a is now the most recent
    cache["c"] = 3
    assert list(cache) == ["a", "c"] and cache.get("b") is None
    assert caches.sizes()["test lru"] == (2, 2)


def test_every_cache_keyed_by_a_spec_stays_within_its_size(monkeypatch):
    # many shapes through sdpa's auto choice, with its timing replaced by a constant
    monkeypatch.setattr(sdpa, "_time_backend", lambda name, q, k, v, spec: 1.0)
    for seq in range(1, 700):
        spec = AttentionSpec(seq=seq, heads=1, head_dim=4)
        q = torch.zeros(1, 1, seq, 4)
        sdpa.choose_backend(q, q, q, spec)
    for name, (entries, maxsize) in caches.sizes().items():
        assert entries <= maxsize, name
    assert caches.sizes()["sdpa auto choice"] == (512, 512)
