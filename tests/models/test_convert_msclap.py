"""MS-CLAP .pth checkpoints (2023: HTSAT + GPT-2, 2022: CNN14 + BERT) against an independent computation.

The reference re-implements MS-CLAP's inference from its published code: repeat-and-cut padding, log-mel by
transformers' numpy ClapFeatureExtractor (2023: the 32 kHz HTSAT filterbank on 44.1 kHz audio), HTSAT through
transformers' ClapAudioModel or CNN14 as plain tensor operations, GPT-2 at `(input_ids != 0).sum() - 1` with
" <|endoftext|>" appended and "!" (id 0) as padding, BERT's [CLS], and the residual projection.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compclap.models.loading import load_model
from test_convert_laion import randomise

TEXTS = ["a dog barks while a man speaks", "a loud siren", "rain falls on a roof twice"]
CORPUS = TEXTS * 10 + ["a high beep followed by a soft hum", "a bell rings", "the wind blows"] * 10


@pytest.fixture(scope="module")
def gpt2_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer laid out like GPT-2's: "!" is id 0, <|endoftext|> is the only special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    assert tok.token_to_id("!") == 0
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", model_max_length=1024)
    out = tmp_path_factory.mktemp("gpt2tok")
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer laid out like bert-base-uncased's ([PAD] = 0, [CLS] text [SEP])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials,
                                                              show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    out = tmp_path_factory.mktemp("berttok")
    fast.save_pretrained(out)
    return out


def _projection(d_in, d_out, seed):
    g = torch.Generator().manual_seed(seed)
    return {"linear1.weight": torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in),
            "linear2.weight": torch.randn(d_out, d_out, generator=g) / math.sqrt(d_out),
            "layer_norm.weight": 1 + 0.1 * torch.randn(d_out, generator=g),
            "layer_norm.bias": 0.1 * torch.randn(d_out, generator=g)}


def ref_projection(x, p):
    """MS-CLAP's Projection in eval mode: LayerNorm(e1 + linear2(gelu(e1))), e1 = linear1(x); no biases."""
    e1 = x @ p["linear1.weight"].T
    e2 = F.gelu(e1) @ p["linear2.weight"].T
    return F.layer_norm(e1 + e2, (e1.shape[-1],), p["layer_norm.weight"], p["layer_norm.bias"])


def repeat_and_cut(wave, n):
    """MS-CLAP's load_audio_into_tensor for clips up to the clip length."""
    return np.tile(wave, math.ceil(n / len(wave)))[:n] if len(wave) < n else wave[:n]


def ref_logmel(waves, sample_rate, mel_rate, n):
    from transformers import ClapFeatureExtractor

    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=mel_rate, hop_length=320, fft_window_size=1024,
                              frequency_min=50, frequency_max=14_000, truncation="rand_trunc")
    return fe([repeat_and_cut(w, n) for w in waves], max_length=n, return_tensors="pt")["input_features"].float()


def htsat_to_msclap(audio_model) -> dict:
    """ClapAudioModel weights under MS-CLAP's HTSAT names (audio_encoder.base.htsat.*), plus its unused keys."""
    out, state = {}, audio_model.state_dict()
    for key, value in state.items():
        rest = key[len("audio_encoder."):]
        m = re.match(r"(layers\.\d+\.blocks\.\d+)\.attention\.self\.(query|key|value)\.(weight|bias)$", rest)
        if m:
            if m.group(2) == "query":
                out[f"{m.group(1)}.attn.qkv.{m.group(3)}"] = torch.cat(
                    [state[f"audio_encoder.{m.group(1)}.attention.self.{p}.{m.group(3)}"] for p in ("query", "key", "value")])
            continue
        rest = (rest.replace("attention.self.", "attn.").replace("attention.output.dense", "attn.proj")
                .replace("intermediate.dense", "mlp.fc1").replace("output.dense", "mlp.fc2")
                .replace("layernorm_before", "norm1").replace("layernorm_after", "norm2").replace("batch_norm", "bn0"))
        out[rest] = value
    out["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
    out["spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(513, 1, 1024)
    out["logmel_extractor.melW"] = torch.randn(513, 64)
    out["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 64, 64)
    out["head.weight"], out["head.bias"] = torch.randn(527, 527), torch.randn(527)
    out["tscam_conv.weight"], out["tscam_conv.bias"] = torch.randn(527, 16, 2, 3), torch.randn(527)
    return {f"audio_encoder.base.htsat.{k}": v for k, v in out.items()}


def test_msclap_2023_htsat_gpt2(tmp_path, gpt2_tokenizer):
    from transformers import ClapAudioConfig, ClapAudioModel, GPT2Config, GPT2Model

    from compclap.text.tokenizer import load_tokenizer

    torch.manual_seed(0)
    htsat = ClapAudioModel(ClapAudioConfig(spec_size=256, num_mel_bins=64, depths=[2, 2], num_attention_heads=[1, 2],
                                           patch_embeds_hidden_size=8, window_size=8, hidden_size=16,
                                           num_hidden_layers=2)).eval()
    tok = load_tokenizer(gpt2_tokenizer)
    gpt2 = GPT2Model(GPT2Config(vocab_size=len(tok), n_embd=128, n_layer=2, n_head=2, n_positions=80, n_inner=64,
                                bos_token_id=len(tok) - 1, eos_token_id=len(tok) - 1)).eval()
    randomise(htsat, 1)
    randomise(gpt2, 2)
    audio_proj, text_proj = _projection(16, 32, 3), _projection(128, 32, 4)
    state = htsat_to_msclap(htsat)
    state.update({f"caption_encoder.base.{k}": v for k, v in gpt2.state_dict().items()})
    for i in range(2):  # legacy GPT-2 buffers of older transformers
        state[f"caption_encoder.base.h.{i}.attn.bias"] = torch.tril(torch.ones(80, 80, dtype=torch.bool))[None, None]
        state[f"caption_encoder.base.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    state.update({f"audio_encoder.projection.{k}": v for k, v in audio_proj.items()})
    state.update({f"caption_encoder.projection.{k}": v for k, v in text_proj.items()})
    state["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    torch.save({"model": state}, tmp_path / "CLAP_weights_2023.pth")

    ours = load_model(tmp_path / "CLAP_weights_2023.pth", tokenizer=gpt2_tokenizer)
    fe = ours.frontend_config
    assert (fe.sample_rate, fe.clip_seconds, fe.hop_length, fe.mel_sample_rate, fe.padding) == (44_100, 7.0, 320, 32_000, "repeat")
    assert fe.num_frames == 965 and ours.text.pooling == "eos" and ours.embed_dim == 32

    # text: " <|endoftext|>" appended, padded with "!" (id 0) to 77, hidden state at (ids != 0).sum() - 1
    ref_tok = load_tokenizer(gpt2_tokenizer)
    ref_tok.pad_token = "!"
    expected = []
    with torch.no_grad():
        for text in TEXTS:
            enc = ref_tok(text + " <|endoftext|>", max_length=77, padding="max_length", return_tensors="pt")
            hidden = gpt2(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            expected.append(hidden[0, int((enc["input_ids"][0] != 0).sum()) - 1])
        ref_text = F.normalize(ref_projection(torch.stack(expected), text_proj), dim=-1)
    torch.testing.assert_close(ours.embed_text(TEXTS), ref_text, atol=1e-5, rtol=1e-5)

    rng = np.random.default_rng(0)
    waves = [(0.2 * rng.standard_normal(44_100 * 3)).astype(np.float32),    # repeated and cut to 7 s
             (0.1 * np.sin(np.arange(44_100 * 7) / 5.0)).astype(np.float32)]
    feats = ref_logmel(waves, 44_100, 32_000, 7 * 44_100)  # (B, 1, 965, 64); HTSAT resizes to 1024 frames
    assert feats.shape[2] == 965
    with torch.no_grad():
        ref_audio = F.normalize(ref_projection(htsat(input_features=feats).pooler_output, audio_proj), dim=-1)
    torch.testing.assert_close(ours.embed_audio(waves), ref_audio, atol=1e-4, rtol=1e-4)


def _cnn14_state(channels, embed, seed):
    g = torch.Generator().manual_seed(seed)
    state = {}

    def bn(prefix, c):
        state.update({f"{prefix}.weight": 1 + 0.1 * torch.randn(c, generator=g), f"{prefix}.bias": 0.1 * torch.randn(c, generator=g),
                      f"{prefix}.running_mean": 0.1 * torch.randn(c, generator=g),
                      f"{prefix}.running_var": 0.5 + torch.rand(c, generator=g),
                      f"{prefix}.num_batches_tracked": torch.tensor(100)})

    bn("bn0", 64)
    cin = 1
    for i, c in enumerate(channels, start=1):
        state[f"conv_block{i}.conv1.weight"] = torch.randn(c, cin, 3, 3, generator=g) / math.sqrt(9 * cin)
        state[f"conv_block{i}.conv2.weight"] = torch.randn(c, c, 3, 3, generator=g) / math.sqrt(9 * c)
        bn(f"conv_block{i}.bn1", c)
        bn(f"conv_block{i}.bn2", c)
        cin = c
    state["fc1.weight"] = torch.randn(embed, cin, generator=g) / math.sqrt(cin)
    state["fc1.bias"] = 0.1 * torch.randn(embed, generator=g)
    state["fc_audioset.weight"], state["fc_audioset.bias"] = torch.randn(527, embed), torch.randn(527)
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
    state["spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(513, 1, 1024)
    state["logmel_extractor.melW"] = torch.randn(513, 64)
    return state


def ref_cnn14(logmel, s):
    """PANNs CNN14 (MS-CLAP 2022) in eval mode, written with functional ops on the raw state dict."""
    def bn(x, p):
        return F.batch_norm(x, s[f"{p}.running_mean"], s[f"{p}.running_var"], s[f"{p}.weight"], s[f"{p}.bias"], eps=1e-5)

    x = bn(logmel.transpose(1, 3), "bn0").transpose(1, 3)
    for i in range(1, 7):
        x = F.relu(bn(F.conv2d(x, s[f"conv_block{i}.conv1.weight"], padding=1), f"conv_block{i}.bn1"))
        x = F.relu(bn(F.conv2d(x, s[f"conv_block{i}.conv2.weight"], padding=1), f"conv_block{i}.bn2"))
        x = F.avg_pool2d(x, (2, 2) if i < 6 else (1, 1))
    x = x.mean(dim=3)
    x = x.max(dim=2).values + x.mean(dim=2)
    return F.relu(F.linear(x, s["fc1.weight"], s["fc1.bias"]))


def test_msclap_2022_cnn14_bert(tmp_path, bert_tokenizer):
    from transformers import BertConfig, BertModel

    from compclap.text.tokenizer import load_tokenizer

    tok = load_tokenizer(bert_tokenizer)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=128, pad_token_id=0)).eval()
    randomise(bert, 5)
    cnn = _cnn14_state([4, 8, 8, 16, 16, 32], 32, seed=6)
    audio_proj, text_proj = _projection(32, 24, 7), _projection(128, 24, 8)
    state = {f"audio_encoder.base.{k}": v for k, v in cnn.items()}
    state.update({f"caption_encoder.base.{k}": v for k, v in bert.state_dict().items()})
    state["caption_encoder.base.embeddings.position_ids"] = torch.arange(128)[None]  # legacy buffer
    state.update({f"audio_encoder.projection.{k}": v for k, v in audio_proj.items()})
    state.update({f"caption_encoder.projection.{k}": v for k, v in text_proj.items()})
    state["logit_scale"] = torch.tensor(2.5)
    torch.save({"model": state}, tmp_path / "CLAP_weights_2022.pth")

    ours = load_model(tmp_path / "CLAP_weights_2022.pth", tokenizer=bert_tokenizer)
    assert type(ours.audio).__name__ == "CNN14AudioEncoder" and ours.audio.output_dim == 32
    assert (ours.frontend_config.clip_seconds, ours.text.pooling, ours.text.max_length) == (5.0, "cls", 100)

    with torch.no_grad():
        enc = tok(TEXTS, max_length=100, padding="max_length", truncation=True, return_tensors="pt")
        cls = bert(**enc).last_hidden_state[:, 0]
        ref_text = F.normalize(ref_projection(cls, text_proj), dim=-1)
    torch.testing.assert_close(ours.embed_text(TEXTS), ref_text, atol=1e-5, rtol=1e-5)

    rng = np.random.default_rng(1)
    waves = [(0.2 * rng.standard_normal(44_100 * 2)).astype(np.float32),
             (0.1 * np.sin(np.arange(44_100 * 6) / 3.0)).astype(np.float32)]  # longer: head crop (MS-CLAP crops at random)
    with torch.no_grad():
        feats = ref_logmel(waves, 44_100, 44_100, 5 * 44_100)
        ref_audio = F.normalize(ref_projection(ref_cnn14(feats, cnn), audio_proj), dim=-1)
    torch.testing.assert_close(ours.embed_audio(waves), ref_audio, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.logit_scale.detach(), torch.tensor(2.5))
