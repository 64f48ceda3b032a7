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


def _levelled(bins: int = 2, bands: int = 4) -> HTSATAudioEncoder:
    torch.manual_seed(0)
    return HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=bins, level_bands=bands, **TINY_FRONTEND).eval()


def _loud_then_soft(first_gain: float, second_gain: float) -> torch.Tensor:
    n = int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"])
    # broadband noise, so every mel band holds the event (a pure tone leaves most bands at the -100 dB floor)
    noise = torch.randn(n // 2, generator=torch.Generator().manual_seed(0))
    return torch.cat([first_gain * noise, second_gain * noise])[None]


def test_level_grid_is_the_normalised_log_mel_pooled_into_segments_and_bands() -> None:
    audio = _levelled(bins=2, bands=4)
    with torch.no_grad():
        audio.level_norm.running_mean.uniform_(-30.0, 0.0)
        audio.level_norm.running_var.uniform_(10.0, 50.0)
        wave = torch.randn(3, int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"]))
        out = audio(wave)
        logmel = audio.features(wave)[:, 0]  # (B, frames, mels)
    frames, mels = logmel.shape[1], logmel.shape[2]
    # exact halves/quarters only when they divide evenly; the tiny front end gives 101 frames, 16 mels
    first_half = logmel[:, : frames // 2 + 1, : mels // 4].mean(dim=(1, 2))
    norm = audio.level_norm
    expected = (first_half - norm.running_mean[0]) / torch.sqrt(norm.running_var[0] + norm.eps)
    hidden = audio.backbone.config.hidden_size
    assert audio.output_dim == 2 * hidden + 8 and out.shape == (3, audio.output_dim)
    torch.testing.assert_close(out[:, 2 * hidden], expected, atol=1e-4, rtol=1e-4)


def test_level_grid_tells_which_event_is_the_loud_one() -> None:
    audio = _levelled(bins=2, bands=4)
    with torch.no_grad():
        loud_first = audio(_loud_then_soft(0.8, 0.1))[0, -8:].view(2, 4)
        soft_first = audio(_loud_then_soft(0.1, 0.8))[0, -8:].view(2, 4)
    # 0.8 vs 0.1 is 18 dB: every band of the loud segment sits ~18 dB above the soft one (the running variance is
    # still 1, so the normalised grid is in dB); the boundary frame shared by both segments takes a little off
    assert bool((loud_first[0] - loud_first[1] > 15.0).all()), loud_first
    assert bool((soft_first[1] - soft_first[0] > 15.0).all()), soft_first


def test_level_bands_bad_values_and_spec_round_trip() -> None:
    with pytest.raises(ValueError, match="needs temporal_bins"):
        HTSATAudioEncoder(config=TINY_AUDIO, level_bands=4, **TINY_FRONTEND)
    with pytest.raises(ValueError, match=r"level_bands must be in \[0, 16\]"):
        HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=2, level_bands=17, **TINY_FRONTEND)
    with pytest.raises(ValueError, match="level_bands must be"):
        HTSATAudioEncoder(config=TINY_AUDIO, temporal_bins=2, level_bands=-1, **TINY_FRONTEND)
    audio = _levelled(bins=3, bands=2)
    rebuilt = HTSATAudioEncoder(**audio.spec()["init_args"]).eval()
    rebuilt.load_state_dict(audio.state_dict())  # the batch norm's statistics travel with the weights
    wave = torch.randn(2, int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"]))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(wave), audio(wave))


def test_masked_view_hides_the_same_share_of_level_cells() -> None:
    from compclap.models.masking import masked_htsat_pooled

    audio = _levelled(bins=2, bands=4)
    wave = torch.randn(2, int(TINY_FRONTEND["sample_rate"] * TINY_FRONTEND["clip_seconds"]))
    token = torch.zeros(audio.backbone.config.patch_embeds_hidden_size)
    with torch.no_grad():
        full = audio(wave)
        torch.testing.assert_close(masked_htsat_pooled(audio, wave, token, 0.0), full)
        masked = masked_htsat_pooled(audio, wave, token, 0.5, torch.Generator().manual_seed(0))
    grid, full_grid = masked[:, -8:], full[:, -8:]
    hidden = grid == 0
    assert hidden.sum(1).tolist() == [4, 4]
    torch.testing.assert_close(grid[~hidden], full_grid[~hidden])
