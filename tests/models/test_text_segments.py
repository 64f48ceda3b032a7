"""Text towers: segment pooling keeps what is said first apart from what is said last; the frozen-feature cache."""

from __future__ import annotations

import pytest
import torch

from compclap.models import HFTextEncoder
from compclap.models.text import segment_pool
from tests.conftest import TINY_TEXT


def _tower(tokenizer_dir, **kwargs) -> HFTextEncoder:
    torch.manual_seed(0)
    return HFTextEncoder(str(tokenizer_dir), config=TINY_TEXT, max_length=32, **kwargs)


def test_segment_pool_against_a_loop() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 4)
    words = torch.tensor([[0, 1, 1, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    keep = words.clone()
    keep[2, 2] = False  # a masked token (ProLAP's partial view) is left out of its run, the runs stay put
    out = segment_pool(hidden, words, keep, 3).view(3, 3, 4)
    for b in range(3):
        positions = words[b].nonzero().flatten().tolist()
        for k in range(3):
            members = [p for j, p in enumerate(positions) if j * 3 // len(positions) == k and keep[b, p]]
            ref = hidden[b, members].mean(0) if members else torch.zeros(4)
            torch.testing.assert_close(out[b, k], ref)


def test_segments_tell_swapped_captions_apart_better_than_the_mean(tokenizer_dir) -> None:
    seg = _tower(tokenizer_dir, pooling="segments", segments=3).eval()
    mean = _tower(tokenizer_dir, pooling="mean").eval()
    pair = ["a high beep followed by a soft hum", "a soft hum followed by a high beep"]
    with torch.no_grad():
        s, m = seg(pair), mean(pair)
    assert s.shape == (2, 3 * seg.backbone.config.hidden_size) and seg.output_dim == s.shape[1]
    assert torch.cosine_similarity(s[0], s[1], 0) < torch.cosine_similarity(m[0], m[1], 0) - 0.05
    assert seg.spec()["init_args"]["segments"] == 3


def test_feature_cache_equals_the_tower_and_follows_new_weights(tokenizer_dir) -> None:
    cached = _tower(tokenizer_dir, pooling="segments", trainable_blocks=0, cache_features=True)
    plain = _tower(tokenizer_dir, pooling="segments", trainable_blocks=0)
    cached.train()
    assert not cached.backbone.training  # a frozen tower runs without dropout, so its features are fixed
    texts = ["a loud siren", "a bell rings twice", "a loud siren"]
    with torch.no_grad():
        ref = plain.eval()(texts)
    first = cached(texts)
    torch.testing.assert_close(first, ref)
    torch.testing.assert_close(cached(texts[:1]), ref[:1])
    # New weights (as init_from loads them after construction) must not meet features of the old ones.
    other = _tower(tokenizer_dir, pooling="segments", trainable_blocks=0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cached.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(cached(texts), other.eval()(texts))


def test_cache_needs_a_frozen_tower(tokenizer_dir) -> None:
    with pytest.raises(ValueError, match="cache_features needs a frozen text tower"):
        _tower(tokenizer_dir, trainable_blocks=1, cache_features=True)
    cached = _tower(tokenizer_dir, trainable_blocks=0, cache_features=True)
    cached.set_trainable_blocks(1)  # unfrozen later (a `pretrained` model with text_trainable_blocks): no cache
    assert not cached.cache_features
    features = cached(["a beep then a hum"])
    assert features.requires_grad  # computed by the tower, not read from the cache
    with pytest.raises(ValueError, match="segments must be >= 1"):
        _tower(tokenizer_dir, pooling="segments", segments=0)
