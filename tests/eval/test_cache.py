"""Embedding cache: hits skip the model entirely, keys follow file content and model identity."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from compclap.eval.cache import CachedEmbedder, EmbeddingCache, model_identity, module_identity


class CountingModel:
    """Embeds a file by its bytes and a text by its characters; counts every item it sees."""

    def __init__(self, dim: int = 4) -> None:
        self.dim = dim
        self.audio_calls: list[list] = []
        self.text_calls: list[list] = []

    def _vec(self, data: bytes) -> torch.Tensor:
        rng = np.random.default_rng(int.from_bytes(data[:8].ljust(8, b"\0"), "little") + len(data))
        return torch.nn.functional.normalize(torch.tensor(rng.normal(size=self.dim), dtype=torch.float32), dim=0)

    def embed_audio(self, items: list) -> torch.Tensor:
        self.audio_calls.append(list(items))
        return torch.stack([self._vec(Path(i).read_bytes()) for i in items])

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        self.text_calls.append(list(texts))
        return torch.stack([self._vec(t.encode()) for t in texts])


def _files(root: Path, n: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = root / f"clip{i}.wav"
        path.write_bytes(bytes([i + 1]) * (10 + i))
        out.append(path)
    return out


def test_second_run_is_a_cache_hit(tmp_path: Path) -> None:
    files = _files(tmp_path / "audio", 5)
    texts = ["a dog", "a cat", "a dog", "rain"]
    model = CountingModel()
    first = CachedEmbedder(model, "model-a", tmp_path / "cache", batch_size=2, progress=False)
    a1, t1 = first.embed_audio(files), first.embed_text(texts)
    assert [len(c) for c in model.audio_calls] == [2, 2, 1]  # batched
    assert sum(len(c) for c in model.text_calls) == 3  # the duplicate caption is embedded once
    assert first.stats == {"audio_hits": 0, "audio_computed": 5, "text_hits": 0, "text_computed": 3}
    torch.testing.assert_close(t1[0], t1[2])

    # A new process would build a new embedder on the same folder: nothing reaches the model.
    fresh = CountingModel()
    second = CachedEmbedder(fresh, "model-a", tmp_path / "cache", progress=False)
    a2, t2 = second.embed_audio(list(reversed(files))), second.embed_text(texts)
    assert fresh.audio_calls == [] and fresh.text_calls == []
    assert second.stats["audio_hits"] == 5 and second.stats["text_hits"] == 3
    torch.testing.assert_close(a2, a1.flip(0))
    torch.testing.assert_close(t2, t1)


def test_loader_is_not_called_on_a_full_hit(tmp_path: Path) -> None:
    files = _files(tmp_path / "audio", 3)
    CachedEmbedder(CountingModel(), "m", tmp_path / "c", progress=False).embed_audio(files)
    loads = []

    def loader() -> CountingModel:
        loads.append(1)
        return CountingModel()

    lazy = CachedEmbedder(loader, "m", tmp_path / "c", progress=False)
    lazy.embed_audio(files)
    assert loads == [] and not lazy.model_loaded
    lazy.embed_text(["new caption"])
    assert loads == [1] and lazy.model_loaded


def test_keys_follow_content_and_model(tmp_path: Path) -> None:
    files = _files(tmp_path / "audio", 2)
    model = CountingModel()
    CachedEmbedder(model, "m", tmp_path / "c", progress=False).embed_audio(files)

    copy = tmp_path / "elsewhere" / "renamed.flac"
    copy.parent.mkdir()
    copy.write_bytes(files[0].read_bytes())
    model.audio_calls.clear()
    emb = CachedEmbedder(model, "m", tmp_path / "c", progress=False)
    emb.embed_audio([copy])
    assert model.audio_calls == []  # same bytes, other name: hit

    files[1].write_bytes(b"edited" * 7)
    st = files[1].stat()
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    emb.embed_audio(files)
    assert [Path(p) for p in model.audio_calls[0]] == [files[1]]  # edited file: miss

    model.audio_calls.clear()
    CachedEmbedder(model, "other-model", tmp_path / "c", progress=False).embed_audio(files)
    assert len(model.audio_calls[0]) == 2  # another model never sees the first model's vectors


def test_array_items_and_sample_rate(tmp_path: Path) -> None:
    class ArrayModel:
        def __init__(self) -> None:
            self.seen: list[int | None] = []

        def embed_audio(self, items: list, sample_rate: int | None = None) -> torch.Tensor:
            self.seen.append(sample_rate)
            return torch.stack([torch.tensor([float(np.sum(i)), 1.0]) for i in items])

        def embed_text(self, texts: list[str]) -> torch.Tensor:
            raise AssertionError

    model = ArrayModel()
    emb = CachedEmbedder(model, "m", tmp_path / "c", progress=False)
    wave = np.ones(100, dtype=np.float32)
    emb.embed_audio([wave], sample_rate=16000)
    emb.embed_audio([wave.copy()], sample_rate=16000)
    emb.embed_audio([wave], sample_rate=8000)  # another rate is another key
    assert model.seen == [16000, 8000]


def test_bad_model_output_and_empty_input(tmp_path: Path) -> None:
    class Bad(CountingModel):
        def embed_text(self, texts: list[str]) -> torch.Tensor:
            return torch.zeros(len(texts) + 1, 3)

    emb = CachedEmbedder(Bad(), "m", tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match=r"expected \(N, D\)"):
        emb.embed_text(["x"])
    with pytest.raises(ValueError, match="no text items"):
        emb.embed_text([])
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        emb.embed_audio([tmp_path / "missing.wav"])
    with pytest.raises(TypeError):
        CachedEmbedder(object(), "m", tmp_path / "c")


def test_model_identity(tmp_path: Path) -> None:
    ckpt = tmp_path / "a.ckpt"
    ckpt.write_bytes(b"weights-1")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"w")
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.json").write_text("{}")

    cache = EmbeddingCache(tmp_path / "c")
    ids = {model_identity(ckpt), model_identity(hf), model_identity(hf, tokenizer=tok)}
    assert len(ids) == 3
    assert model_identity(ckpt, cache=cache) == model_identity(ckpt)  # memoised hash is the same hash
    before = model_identity(hf)
    (hf / "model.safetensors").write_bytes(b"w2")
    assert model_identity(hf) != before
    with pytest.raises(FileNotFoundError):
        model_identity(tmp_path / "nope.ckpt")

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights-1")
    (run / "events.out").write_text("log")
    # A run directory is its last.ckpt: new log lines do not change it.
    assert model_identity(run) == model_identity(run / "checkpoints" / "last.ckpt") == model_identity(ckpt)
    (run / "events.out").write_text("more log")
    assert model_identity(run) == model_identity(ckpt)


def test_module_identity_tracks_weights() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    first = module_identity(net)
    assert module_identity(net) == first
    with torch.no_grad():
        net.weight[0, 0] += 1e-3
    assert module_identity(net) != first
