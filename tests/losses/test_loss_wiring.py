"""The LightningModule's side of the losses: caption identities (normalised), text-negative identities, and
audio negatives encoded in one extra audio forward of the real slots; a training step runs with them, and a loss
that wants audio negatives names the missing manifest field."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from compclap.lit_module import CompClapModule
from compclap.losses import ContrastiveLoss, HardNegativeContrastiveLoss, ModularContrastiveLoss
from compclap.text.identity import text_ids
from conftest import make_tiny_model

WAVE = 8000  # one second at the tiny front end's 8 kHz


def _batch(with_audio_negatives=True):
    g = torch.Generator().manual_seed(0)
    batch = {"waveforms": torch.randn(3, WAVE, generator=g) * 0.1,
             "captions": ["A beep then a hum.", "a bell", "a beep then  a hum"], "caption_owner": torch.arange(3),
             "negatives": [[{"text": "a hum then a beep", "kind": "order"}], [],
                           [{"text": "A beep then a hum!", "kind": "order"},
                            {"text": "a hum then a beep", "kind": "order"}]],
             "positives": ["a beep then a hum", "a beep", "a hum", "a bell", "a beep then a hum", "a beep"],
             "positive_owner": torch.tensor([0, 0, 0, 1, 2, 2])}
    if with_audio_negatives:
        batch["negative_waveforms"] = torch.randn(3, 2, WAVE, generator=g) * 0.1
        batch["negative_waveform_mask"] = torch.tensor([[True, False], [False, False], [True, True]])
    return batch


def _audio_calls(module):
    sizes = []
    module.model.audio.register_forward_hook(lambda mod, args, out: sizes.append(args[0].shape[0]))
    return sizes


def test_every_loss_gets_normalised_caption_ids(tokenizer_dir):
    module = CompClapModule(make_tiny_model(tokenizer_dir), loss=ContrastiveLoss())
    out = module._embed_train_batch(_batch(False))
    ids = out["text_ids"]
    assert torch.equal(ids, text_ids(["a beep then a hum", "a bell", "a beep then a hum"]))
    assert ids[0] == ids[2] and ids[0] != ids[1]  # "A beep then a hum." and "a beep then  a hum" are one text


def test_hard_negative_batch_carries_negative_ids_and_audio_negatives(tokenizer_dir):
    torch.manual_seed(0)
    module = CompClapModule(make_tiny_model(tokenizer_dir), loss=HardNegativeContrastiveLoss(audio_negatives=True))
    module.eval()  # deterministic, so the scattered negatives can be compared with a direct encoding
    calls = _audio_calls(module)
    batch = _batch()
    out = module._embed_train_batch(batch)
    assert calls == [3, 3]  # the clips, then only the 3 real negatives in one forward
    mask = batch["negative_waveform_mask"]
    assert torch.equal(out["audio_negative_mask"], mask) and out["audio_negative_embeds"].shape == (3, 2, 12)
    assert torch.equal(out["audio_negative_embeds"][~mask], torch.zeros(3, 12))
    with torch.no_grad():
        direct = module.model.encode_audio(batch["negative_waveforms"][mask])
    torch.testing.assert_close(out["audio_negative_embeds"][mask], direct, atol=1e-5, rtol=1e-5)
    assert out["audio_negative_text"].tolist() == [0, 1, 2]
    # clip 2's first negative is its own caption up to punctuation: same identity, so the loss masks it
    assert out["negative_ids"][2, 0] == out["text_ids"][2] and out["negative_ids"][1].tolist() == [-1, -1]
    assert out["negative_ids"][0, 0] == out["negative_ids"][2, 1]
    terms = module.loss(**out)
    terms["hard_negative_loss"].backward()
    assert "t2a_audio_negative_acc" in terms


def test_max_audio_negatives_and_the_modular_full_caption_row(tokenizer_dir):
    loss = ModularContrastiveLoss(audio_negatives=True, max_audio_negatives=1)
    module = CompClapModule(make_tiny_model(tokenizer_dir), loss=loss)
    calls = _audio_calls(module)
    out = module._embed_train_batch(_batch())
    assert calls == [3, 2]
    assert out["audio_negative_mask"].tolist() == [[True], [False], [True]]
    assert out["audio_negative_text"].tolist() == [0, 3, 4]  # each clip's first positive
    assert torch.equal(out["text_owner"], _batch()["positive_owner"]) and out["text_ids"].shape == (6,)
    assert out["text_ids"][1] == out["text_ids"][5]  # "a beep" of clips 0 and 2


def test_a_training_step_runs_with_audio_negatives(tokenizer_dir):
    module = CompClapModule(make_tiny_model(tokenizer_dir), loss=HardNegativeContrastiveLoss(audio_negatives=True))
    trainer = L.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    before = {n: p.detach().clone() for n, p in module.model.audio.named_parameters()}
    trainer.fit(module, train_dataloaders=DataLoader([_batch()], batch_size=None))
    assert "train/t2a_audio_negative_acc" in trainer.callback_metrics
    assert "train/audio_negatives_per_clip" in trainer.callback_metrics
    assert any(not torch.equal(p, before[n]) for n, p in module.model.audio.named_parameters())


@pytest.mark.parametrize("loss", [HardNegativeContrastiveLoss(audio_negatives=True),
                                  ModularContrastiveLoss(audio_negatives=True)])
def test_missing_audio_negatives_name_the_manifest_field(tokenizer_dir, loss):
    module = CompClapModule(make_tiny_model(tokenizer_dir), loss=loss)
    with pytest.raises(ValueError, match="negative_audio"):
        module._embed_train_batch(_batch(False))
