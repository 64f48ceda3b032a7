"""Frozen HTSAT towers that cache their pooled features by waveform content (heads-only stages)."""

from __future__ import annotations

import pytest
import torch

from compclap.models import HTSATAudioEncoder
from compclap.models.feature_cache import waveform_digests
from tests.conftest import TINY_AUDIO, TINY_FRONTEND

NUM_SAMPLES = int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"])


def _towers(**kwargs) -> tuple[HTSATAudioEncoder, HTSATAudioEncoder]:
    """A caching frozen tower and a plain one with the same weights (the level grid on, so its norm is covered)."""
    torch.manual_seed(0)
    plain = HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=2, level_bands=4, **TINY_FRONTEND, **kwargs).eval()
    cached = HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=2, level_bands=4, trainable_blocks=0,
                               cache_features=True, **TINY_FRONTEND)
    cached.load_state_dict(plain.state_dict())
    return plain, cached


def _count_backbone_calls(tower: HTSATAudioEncoder) -> list[int]:
    """A list whose entries are the batch sizes the backbone was run on."""
    calls: list[int] = []
    tower.backbone.register_forward_hook(lambda _m, args, kwargs, _out: calls.append(kwargs["input_features"].shape[0]),
                                         with_kwargs=True)
    return calls


def test_cached_features_equal_the_towers_and_each_clip_runs_once() -> None:
    plain, cached = _towers()
    calls = _count_backbone_calls(cached)
    torch.manual_seed(1)
    waves = torch.randn(3, NUM_SAMPLES)
    batch = torch.stack([waves[0], waves[1], waves[0]])  # a clip twice in one batch
    cached.train()  # a training step: the features must still be the eval-mode ones
    with torch.no_grad():
        reference = plain(waves)
    out = cached(batch)
    torch.testing.assert_close(out, reference[[0, 1, 0]])
    assert calls == [2]
    again = cached(torch.stack([waves[2], waves[1]]))
    torch.testing.assert_close(again, reference[[2, 1]])
    assert calls == [2, 1]  # only the new clip
    assert cached.training and not out.requires_grad


def test_new_weights_are_never_served_old_features() -> None:
    plain, cached = _towers()
    waves = torch.randn(2, NUM_SAMPLES)
    before = cached(waves)
    torch.manual_seed(5)
    other = HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=2, level_bands=4, **TINY_FRONTEND).eval()
    cached.load_state_dict(other.state_dict())
    with torch.no_grad():
        reference = other(waves)
    after = cached(waves)
    torch.testing.assert_close(after, reference)
    assert not torch.allclose(after, before)


def test_digests_tell_crops_apart_and_match_equal_content() -> None:
    wave = torch.randn(NUM_SAMPLES + 10)
    rows = torch.stack([wave[:NUM_SAMPLES], wave[10:], wave[:NUM_SAMPLES].clone()])
    first, shifted, copy = waveform_digests(rows)
    assert first == copy and first != shifted and len(first) == 20
    with pytest.raises(ValueError, match=r"expected a \(B, T\) waveform batch"):
        waveform_digests(wave)


def test_caching_needs_a_frozen_tower_freezes_the_level_grid_and_ends_when_unfrozen() -> None:
    with pytest.raises(ValueError, match="cache_features needs a frozen audio tower"):
        HTSATAudioEncoder(config=TINY_AUDIO, cache_features=True, **TINY_FRONTEND)
    _, cached = _towers()
    assert not any(p.requires_grad for p in cached.parameters())  # the level grid's norm too
    cached.set_trainable_blocks(None)  # e.g. fine-tuning from a heads-only checkpoint: it trains, uncached
    assert not cached.cache_features and all(p.requires_grad for p in cached.parameters())
    trainable = HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=2, level_bands=4, trainable_blocks=1,
                                  **TINY_FRONTEND)
    assert trainable.level_norm.weight.requires_grad
