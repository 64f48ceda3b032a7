"""HTSAT temporal pooling: per-segment means in time order, the global mean unchanged when off."""

from __future__ import annotations

import pytest
import torch

from compclap.models import HTSATAudioEncoder
from tests.conftest import TINY_AUDIO, TINY_FRONTEND


def _pair(bins: int) -> tuple[HTSATAudioEncoder, HTSATAudioEncoder]:
    torch.manual_seed(0)
    plain = HTSATAudioEncoder(config=TINY_AUDIO, **TINY_FRONTEND).eval()
    binned = HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=bins, **TINY_FRONTEND).eval()
    binned.load_state_dict(plain.state_dict())
    return plain, binned


def _two_events(first_hz: float, second_hz: float) -> torch.Tensor:
    sr, n = TINY_FRONTEND["sample_rate"], int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"])
    t = torch.arange(n // 2) / sr
    return torch.cat([0.5 * torch.sin(2 * torch.pi * first_hz * t), 0.05 * torch.randn(n - n // 2)])[None]


def test_off_is_transformers_pooler_output() -> None:
    plain, _ = _pair(2)
    wave = torch.randn(3, int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"]))
    with torch.no_grad():
        ref = plain.backbone(input_features=plain.features(wave)).pooler_output
        assert torch.equal(plain(wave), ref)
    assert plain.output_dim == plain.backbone.config.hidden_size


def test_bins_are_time_ordered_segments_whose_mean_is_the_global_mean() -> None:
    plain, binned = _pair(2)
    wave = torch.randn(2, int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"]))
    with torch.no_grad():
        segments = binned(wave)
        hidden = binned.backbone(input_features=binned.features(wave)).last_hidden_state  # (B, C, F, T)
        glob = plain(wave)
    c = binned.backbone.config.hidden_size
    assert binned.output_dim == 2 * c and segments.shape == (2, 2 * c)
    half = hidden.shape[-1] // 2
    torch.testing.assert_close(segments[:, :c], hidden[..., :half].mean(dim=(2, 3)))
    torch.testing.assert_close(segments[:, c:], hidden[..., half:].mean(dim=(2, 3)))
    torch.testing.assert_close(segments.view(2, 2, c).mean(1), glob, atol=1e-5, rtol=1e-5)


def test_bins_tell_the_order_of_two_events_apart_where_the_mean_barely_does() -> None:
    plain, binned = _pair(4)
    torch.manual_seed(1)
    a_then_b = _two_events(600.0, 0.0)
    b_then_a = a_then_b.flip(-1)
    with torch.no_grad():
        cos_plain = torch.cosine_similarity(plain(a_then_b), plain(b_then_a)).item()
        cos_binned = torch.cosine_similarity(binned(a_then_b), binned(b_then_a)).item()
    assert cos_binned < cos_plain - 0.05


def test_spec_round_trip_and_bad_value() -> None:
    _, binned = _pair(3)
    args = binned.spec()["init_args"]
    assert args["temporal_bins"] == 3
    rebuilt = HTSATAudioEncoder(**args)
    assert rebuilt.output_dim == binned.output_dim
    with pytest.raises(ValueError, match="temporal_bins"):
        HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=-1, **TINY_FRONTEND)


def test_binned_tower_exports_as_compclap_not_hf(tokenizer_dir) -> None:
    from compclap.models import CLAPDualEncoder, HFTextEncoder
    from compclap.models.export import hf_exportable
    from tests.conftest import TINY_TEXT

    audio = HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=2, **TINY_FRONTEND)
    text = HFTextEncoder(str(tokenizer_dir), config=TINY_TEXT, pooling="pooler", max_length=32)
    reason = hf_exportable(CLAPDualEncoder(audio, text, embed_dim=8))
    assert reason is not None and "time segments" in reason


def test_masked_view_of_a_binned_tower_has_the_binned_shape() -> None:
    from compclap.models.masking import masked_htsat_pooled

    _, binned = _pair(2)
    wave = torch.randn(2, int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"]))
    token = torch.zeros(binned.backbone.config.patch_embeds_hidden_size)
    with torch.no_grad():
        full = masked_htsat_pooled(binned, wave, token, 0.0)
        masked = masked_htsat_pooled(binned, wave, token, 0.5, torch.Generator().manual_seed(0))
        torch.testing.assert_close(full, binned(wave))
    assert masked.shape == full.shape == (2, binned.output_dim) and not torch.allclose(masked, full)
