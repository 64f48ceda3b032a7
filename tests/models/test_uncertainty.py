"""ProLAP uncertainty heads and masked views: off = the deterministic model, on = Gaussians; masking."""

from __future__ import annotations

import pytest
import torch

from compclap.models import HFTextEncoder
from compclap.models.masking import masked_htsat_pooled, random_token_mask
from conftest import TINY_TEXT, make_tiny_model

CAPS = ["a beep", "a high beep followed by a soft hum", "a dog barks"]


def _wave(n=3, seed=0):
    return torch.randn(n, 8000, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_heads_off_is_the_deterministic_model(tokenizer_dir):
    torch.manual_seed(0)
    plain = make_tiny_model(tokenizer_dir).eval()
    torch.manual_seed(0)
    off = make_tiny_model(tokenizer_dir, uncertainty=False).eval()
    assert set(off.state_dict()) == set(plain.state_dict())
    assert not any("logvar" in k or "mask_token" in k for k in off.state_dict())
    out = off(_wave(), CAPS)
    assert set(out) == {"audio_embeds", "text_embeds", "logit_scale"}
    torch.testing.assert_close(out["audio_embeds"], plain(_wave(), CAPS)["audio_embeds"])
    assert "uncertainty" not in off.spec()["init_args"]
    with pytest.raises(ValueError, match="uncertainty"):
        off.embed_text(CAPS, return_uncertainty=True)
    with pytest.raises(ValueError, match="uncertainty"):
        off.encode_audio_gaussian(_wave())


def test_heads_on_give_gaussians_whose_means_are_the_deterministic_embeddings(tokenizer_dir):
    from compclap.models.loading import load_strict

    torch.manual_seed(0)
    det = make_tiny_model(tokenizer_dir).eval()
    prob = make_tiny_model(tokenizer_dir, uncertainty=True, logvar_init=-3.0).eval()
    # A deterministic checkpoint initialises the shared weights; heads and mask token keep their init.
    load_strict(prob, det.state_dict(), "det", "test")
    out = prob(_wave(), CAPS)
    assert out["audio_logvar"].shape == out["text_logvar"].shape == (3, 12)
    torch.testing.assert_close(out["audio_logvar"], torch.full((3, 12), -3.0))
    torch.testing.assert_close(out["audio_embeds"], det.encode_audio(_wave()))
    torch.testing.assert_close(out["text_embeds"], det.encode_text(CAPS))
    torch.testing.assert_close(prob.encode_audio(_wave()), det.encode_audio(_wave()))

    mean, logvar = prob.embed_text(CAPS, return_uncertainty=True)
    torch.testing.assert_close(mean, det.embed_text(CAPS))
    assert logvar.shape == (3, 12) and not logvar.requires_grad
    amean, alogvar = prob.embed_audio([w.numpy() for w in _wave(2)], return_uncertainty=True)
    assert amean.shape == alogvar.shape == (2, 12)
    torch.testing.assert_close(amean, det.embed_audio([w.numpy() for w in _wave(2)]))

    # The heads are trainable: gradients reach them.
    m, lv = prob.encode_text_gaussian(CAPS)
    lv.sum().backward()
    assert prob.text_logvar_head.weight.grad.abs().sum() > 0


def test_optional_keys_only_for_uncertainty_parts(tokenizer_dir):
    from compclap.models.loading import CheckpointLayoutError, load_strict

    det = make_tiny_model(tokenizer_dir)
    prob = make_tiny_model(tokenizer_dir, uncertainty=True)
    state = {k: v for k, v in det.state_dict().items() if not k.startswith("text_projection.linear2")}
    with pytest.raises(CheckpointLayoutError, match="text_projection"):
        load_strict(prob, state, "det", "test")
    with pytest.raises(CheckpointLayoutError):  # a deterministic model does not accept the extra keys
        load_strict(det, prob.state_dict(), "prob", "test")


def test_spec_and_compclap_export_keep_the_heads(tokenizer_dir, tmp_path):
    from compclap.models.export import export_model, hf_exportable
    from compclap.models.loading import load_model

    torch.manual_seed(1)
    prob = make_tiny_model(tokenizer_dir, uncertainty=True).eval()
    with torch.no_grad():
        prob.audio_logvar_head.weight.normal_()
    assert prob.spec()["init_args"]["uncertainty"] is True
    assert "uncertainty" in (hf_exportable(prob) or "")
    assert export_model(prob, tmp_path / "out") == "compclap"
    back = load_model(tmp_path / "out")
    waves = [w.numpy() for w in _wave(2)]
    for a, b in zip(prob.embed_audio(waves, return_uncertainty=True), back.embed_audio(waves, return_uncertainty=True)):
        torch.testing.assert_close(a, b)


def test_random_token_mask_counts_and_determinism():
    maskable = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    a = random_token_mask(maskable, 0.75, torch.Generator().manual_seed(3))
    b = random_token_mask(maskable, 0.75, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not (a & ~maskable).any()
    # round(0.75 * n), but one maskable token always stays visible
    assert a.sum(1).tolist() == [3, 4, 0]
    assert not random_token_mask(maskable, 0.0).any()
    with pytest.raises(ValueError):
        random_token_mask(maskable, 1.0)


def test_masked_audio_view(tokenizer_dir):
    torch.manual_seed(0)
    model = make_tiny_model(tokenizer_dir, uncertainty=True).eval()
    x = _wave()
    encoder = model.audio.backbone.audio_encoder
    # ratio 0: every token visible, the pooling equals HTSAT's own average pooling
    torch.testing.assert_close(masked_htsat_pooled(model.audio, x, model.audio_mask_token, 0.0), model.audio(x))
    assert not encoder.patch_embed._forward_hooks and not encoder.norm._forward_hooks  # hooks removed

    # the patch embeddings of the chosen patches are replaced by the token
    seen = {}
    handle = encoder.layers[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    try:
        masked_htsat_pooled(model.audio, x, model.audio_mask_token, 0.5, torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    n_patches = encoder.patch_embed.num_patches
    mask = random_token_mask(torch.ones(3, n_patches, dtype=torch.bool), 0.5, torch.Generator().manual_seed(0))
    is_token = torch.isclose(seen["x"], model.audio_mask_token.detach()).all(-1)
    assert torch.equal(is_token, mask) and mask.sum(1).tolist() == [n_patches // 2] * 3

    m1, v1 = model.encode_audio_gaussian(x, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    m2, _ = model.encode_audio_gaussian(x, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(m1, m2)
    assert not torch.allclose(m1, model.encode_audio(x))
    m1.sum().backward()
    assert model.audio_mask_token.grad.abs().sum() > 0


def test_masked_text_view_pools_unmasked_tokens_only(tokenizer_dir):
    torch.manual_seed(0)
    tower = HFTextEncoder(str(tokenizer_dir), config=TINY_TEXT, pooling="mean").eval()
    masked = tower(CAPS, mask_ratio=0.5, generator=torch.Generator().manual_seed(7))
    enc = tower.tokenize(CAPS)
    special = torch.isin(enc["input_ids"], torch.tensor(tower.tokenizer.all_special_ids))
    drop = random_token_mask(enc["attention_mask"].bool() & ~special, 0.5, torch.Generator().manual_seed(7))
    assert drop.any() and not (drop & special).any()
    keep = enc["attention_mask"].masked_fill(drop, 0)
    hidden = tower.backbone(input_ids=enc["input_ids"], attention_mask=keep).last_hidden_state
    expected = (hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
    torch.testing.assert_close(masked, expected)
    torch.testing.assert_close(tower(CAPS, mask_ratio=0.0), tower(CAPS))


def test_masked_text_view_keeps_the_end_of_text_token_for_gpt2(tokenizer_dir):
    tower = HFTextEncoder(str(tokenizer_dir), config={"model_type": "gpt2", "n_embd": 16, "n_layer": 1,
                                                      "n_head": 2, "n_positions": 40}).eval()
    feats = tower(CAPS, mask_ratio=0.75, generator=torch.Generator().manual_seed(0))
    assert feats.shape == (3, tower.output_dim) and torch.isfinite(feats).all()
