"""On-disk embedding cache keyed by content hash and model identity.

`CachedEmbedder` wraps anything with ``embed_audio(items)`` / ``embed_text(texts)`` (a
`CLAPDualEncoder`, a fake model in tests) and stores every embedding it computes in one SQLite file:

* audio files are keyed by the SHA-1 of their bytes (renaming or moving a clip keeps its entry;
  editing it invalidates it); 1-D arrays by the SHA-1 of their samples and sample rate;
* captions are keyed by the SHA-1 of their UTF-8 text;
* every key is scoped by a *model identity*: `model_identity` hashes a checkpoint file's bytes or
  every file of a Hugging Face directory (weights, config, tokenizer), `module_identity` an
  in-memory module's parameters, buffers and architecture.

A request whose items are all in the cache never touches the model; with a *loader* (a callable
returning the model) the model is not even loaded. File hashes are memoised by (path, size,
mtime), so a re-run does not read a large checkpoint or a clip twice.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["CachedEmbedder", "EmbeddingCache", "file_sha1", "model_identity", "module_identity"]

CACHE_VERSION = "compclap-embed-v1"
_SQL_CHUNK = 500  # keys per `IN (...)` query, well below SQLite's variable limit
_READ_CHUNK = 1 << 20


class EmbeddingCache:
    """A SQLite store of embeddings (model, kind, key) -> float32 vector, plus a file-hash memo."""

    def __init__(self, path: str | os.PathLike) -> None:
        """Open (or create) the store at `path`: a directory (``embeddings.sqlite`` inside it) or a file."""
        path = Path(path)
        if path.suffix not in (".sqlite", ".db"):
            path = path / "embeddings.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = sqlite3.connect(str(path), timeout=60)
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS emb (model TEXT, kind TEXT, key TEXT, dim INTEGER, vec BLOB,"
                " PRIMARY KEY (model, kind, key));"
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " sha1 TEXT);"
                "CREATE TABLE IF NOT EXISTS models (model TEXT PRIMARY KEY, description TEXT, created REAL);"
            )
        except sqlite3.DatabaseError as err:
            raise ValueError(f"cannot open the embedding cache {path}: {err}") from err

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    # ------------------------------------------------------------------ embeddings
    def get(self, model: str, kind: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among `keys` (missing keys are absent from the result)."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _SQL_CHUNK):
            chunk = unique[start : start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, dim, vec FROM emb WHERE model = ? AND kind = ? AND key IN ({marks})"
            for key, dim, blob in self._db.execute(query, (model, kind, *chunk)):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.size == dim:
                    found[key] = vec
        return found

    def put(self, model: str, kind: str, items: dict[str, np.ndarray]) -> None:
        """Store vectors (committed at once, so an interrupted run keeps what it computed)."""
        rows = []
        for key, vec in items.items():
            arr = np.ascontiguousarray(vec, dtype=np.float32).reshape(-1)
            rows.append((model, kind, key, int(arr.size), arr.tobytes()))
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?, ?)", rows)

    def count(self, model: str | None = None, kind: str | None = None) -> int:
        """How many vectors are stored (for one model and/or kind)."""
        query, args = "SELECT COUNT(*) FROM emb WHERE 1", []
        if model is not None:
            query, args = query + " AND model = ?", [*args, model]
        if kind is not None:
            query, args = query + " AND kind = ?", [*args, kind]
        return int(self._db.execute(query, args).fetchone()[0])

    def describe_model(self, model: str, description: str) -> None:
        """Record a human-readable description of a model identity (first one wins)."""
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO models VALUES (?, ?, ?)", (model, description, time.time()))

    # ------------------------------------------------------------------ file hashes
    def file_sha1(self, path: str | os.PathLike) -> str:
        """SHA-1 of a file's bytes, memoised by (absolute path, size, mtime)."""
        path = Path(os.path.abspath(path))
        try:
            st = path.stat()
        except OSError as err:
            raise FileNotFoundError(f"audio file not found: {path}") from err
        row = self._db.execute("SELECT size, mtime_ns, sha1 FROM files WHERE path = ?", (str(path),)).fetchone()
        if row is not None and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return str(row[2])
        digest = file_sha1(path)
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                             (str(path), st.st_size, st.st_mtime_ns, digest))
        return digest


def file_sha1(path: str | os.PathLike) -> str:
    """SHA-1 hex digest of a file's bytes (streamed)."""
    h = hashlib.sha1()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def model_identity(path: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                   cache: EmbeddingCache | None = None) -> str:
    """Identity of a checkpoint: SHA-1 over its bytes (a file) or over every file of a directory.

    A directory (Hugging Face ClapModel folder, compclap export) contributes each file's relative path and
    content hash, so weights, config, preprocessor and tokenizer files all count; a training run directory
    stands for the checkpoint `load_model` reads (its best, else ``last.ckpt``). A `tokenizer` override directory
    (`load_model(..., tokenizer=)`) is hashed in too. Not covered: the tokenizer directory an older Lightning .ckpt
    merely records by path (newer ones carry the tokenizer files; pass ``--tokenizer`` or clear the cache then).
    """
    digest = hashlib.sha1(CACHE_VERSION.encode())
    for label, root in (("model", path), ("tokenizer", tokenizer)):
        if root is None:
            continue
        root = _run_dir_checkpoint(Path(root))
        if not root.exists():
            raise FileNotFoundError(f"checkpoint not found: {root}")
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                    p.relative_to(root).parts))
        if not files:
            raise ValueError(f"{label} directory {root} contains no files")
        for file in files:
            name = "" if file == root else file.relative_to(root).as_posix()  # a file: its bytes alone
            sha = cache.file_sha1(file) if cache is not None else file_sha1(file)
            digest.update(f"{label}\0{name}\0{sha}\n".encode())
    return digest.hexdigest()


def _run_dir_checkpoint(path: Path) -> Path:
    """The file a run directory stands for (its best checkpoint, else last.ckpt, as in `load_model`); other paths
    are returned as is. Hashing the whole run directory would hash every checkpoint and log file."""
    from compclap.models.run_dir import resolve_checkpoint

    return resolve_checkpoint(path).path


def module_identity(module: nn.Module) -> str:
    """Identity of an in-memory model: SHA-1 of its architecture (repr, front end) and every tensor of its state."""
    digest = hashlib.sha1(CACHE_VERSION.encode())
    digest.update(repr(module).encode())
    frontend = getattr(module, "frontend_config", None)
    if frontend is not None:
        digest.update(repr(frontend).encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    text = getattr(module, "text", None)
    tokenizer = getattr(text, "tokenizer", None)
    if tokenizer is not None:  # the vocabulary shapes the text embeddings as much as the weights do
        digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


class CachedEmbedder:
    """`embed_audio` / `embed_text` served from an `EmbeddingCache`, computing only the misses.

    Args:
        model: the wrapped model (anything with ``embed_audio(items)`` and ``embed_text(texts)``) or a
            zero-argument callable returning it, called only at the first cache miss.
        model_id: identity of the model (`model_identity`, `module_identity`, or any stable string).
        cache_dir: a directory for ``embeddings.sqlite``, a ``.sqlite`` file, or an open `EmbeddingCache`.
        batch_size: items per call to the model.
        progress: show tqdm progress bars while embedding.
        name: model name shown in the progress bars.
        sample_rate: sample rate of 1-D array items (None: the model's own rate).
    """

    def __init__(self, model: Any, model_id: str, cache_dir: str | os.PathLike | EmbeddingCache,
                 batch_size: int = 32, progress: bool = True, name: str | None = None) -> None:
        """Wrap `model` (or a loader of it) with the cache at `cache_dir`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model = model if hasattr(model, "embed_audio") else None
        self._loader: Callable[[], Any] | None = None if self._model is not None else model
        if self._model is None and not callable(model):
            raise TypeError("model must have embed_audio/embed_text or be a callable that returns such a model")
        self.model_id = model_id
        self.cache = cache_dir if isinstance(cache_dir, EmbeddingCache) else EmbeddingCache(cache_dir)
        self.batch_size = batch_size
        self.progress = progress
        self.name = name or model_id[:8]
        self.stats = {"audio_hits": 0, "audio_computed": 0, "text_hits": 0, "text_computed": 0}

    @property
    def model(self) -> Any:
        """The wrapped model, loaded on first use."""
        if self._model is None:
            assert self._loader is not None
            self._model = self._loader()
        return self._model

    @property
    def model_loaded(self) -> bool:
        """Whether the wrapped model has been loaded (a fully cached run never loads it)."""
        return self._model is not None

    def audio_key(self, item: Any, sample_rate: int | None = None) -> str:
        """Cache key of one audio item: content hash of a file, or of an array's samples and rate."""
        if isinstance(item, (str, os.PathLike)):
            return "file:" + self.cache.file_sha1(item)
        arr = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        h = hashlib.sha1(f"{arr.shape}|{sample_rate}|".encode())
        h.update(arr.tobytes())
        return "array:" + h.hexdigest()

    @staticmethod
    def text_key(text: str) -> str:
        """Cache key of one caption: SHA-1 of its UTF-8 bytes."""
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed_audio(self, items: Sequence[Any], sample_rate: int | None = None) -> torch.Tensor:
        """L2-normalised embeddings (N, D) of audio files or 1-D arrays, in order."""
        items = list(items)
        keys = [self.audio_key(item, sample_rate) for item in items]

        def compute(batch: list[Any]) -> torch.Tensor:
            if sample_rate is None:
                return self.model.embed_audio(batch)
            return self.model.embed_audio(batch, sample_rate=sample_rate)

        return self._embed("audio", items, keys, compute)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised embeddings (N, D) of captions, in order."""
        texts = [str(t) for t in texts]
        return self._embed("text", texts, [self.text_key(t) for t in texts], lambda b: self.model.embed_text(b))

    def _embed(self, kind: str, items: list[Any], keys: list[str],
               compute: Callable[[list[Any]], torch.Tensor]) -> torch.Tensor:
        if not items:
            raise ValueError(f"no {kind} items to embed")
        found = self.cache.get(self.model_id, kind, keys)
        todo: dict[str, Any] = {}
        for key, item in zip(keys, items):
            if key not in found and key not in todo:
                todo[key] = item
        self.stats[f"{kind}_hits"] += len(set(keys)) - len(todo)
        if todo:
            from tqdm.auto import tqdm

            pending = list(todo.items())
            with tqdm(total=len(pending), desc=f"embed {kind} [{self.name}]", unit=kind if kind == "text" else "clip",
                      disable=not self.progress, leave=False) as bar:
                for start in range(0, len(pending), self.batch_size):
                    batch = pending[start : start + self.batch_size]
                    emb = torch.as_tensor(compute([item for _, item in batch])).detach().float().cpu()
                    if emb.ndim != 2 or emb.shape[0] != len(batch):
                        raise ValueError(f"model returned {kind} embeddings of shape {tuple(emb.shape)} for "
                                         f"{len(batch)} inputs; expected (N, D)")
                    if not bool(torch.isfinite(emb).all()):  # never cached: a diverged model must not score 0.0
                        raise ValueError(f"model {self.name} gives non-finite {kind} embeddings (NaN/inf): its weights "
                                         "are probably not finite (a diverged run); refusing to evaluate it")
                    new = {key: emb[i].numpy() for i, (key, _) in enumerate(batch)}
                    self.cache.put(self.model_id, kind, new)
                    found.update(new)
                    bar.update(len(batch))
            self.stats[f"{kind}_computed"] += len(pending)
        dims = {found[k].size for k in keys}
        if len(dims) != 1:
            raise ValueError(f"cached {kind} embeddings of model {self.model_id} have mixed sizes {sorted(dims)}; "
                             f"delete {self.cache.path} and re-run")
        return torch.from_numpy(np.stack([found[k] for k in keys]).astype(np.float32, copy=True))
