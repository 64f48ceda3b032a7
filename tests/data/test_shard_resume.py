"""ShardDataModule resumes exactly: same stream, same batches, same weights (the harness of test_exact_resume)."""

from __future__ import annotations

import pytest
from test_exact_resume import _crash_and_resume


@pytest.mark.parametrize("limit,every,crash_at,resumed_at,workers", [
    ("max_epochs", None, 6, 4, 0),  # epoch boundary: Lightning starts the loader before it restores current_epoch
    ("max_epochs", 3, 7, 6, 0),     # mid-epoch: the stream is replayed past the batches already run
    ("max_steps", 3, 7, 6, 2),
])
def test_shard_stream_resumes_exactly(tmp_path, tokenizer_dir, limit, every, crash_at, resumed_at, workers):
    """ShardDataModule: same ranks and workers, same stream after a resume, identical weights."""
    _crash_and_resume(tmp_path, tokenizer_dir, limit, every, crash_at, resumed_at, shards=True, num_workers=workers)
