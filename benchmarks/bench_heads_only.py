"""How far the projection heads alone get: freeze a demo checkpoint's towers, cache their pooled features, and
train only the two heads with the hard-negative objective for many more steps than the demo's stage does.

Answers "do the towers' features carry order and attribute binding, or is the stage short of steps?" (issue 11).
The towers run once (a few minutes on 2 cores); an epoch over every (clip, caption) pair of the hard-negative
manifest then costs seconds. Epoch 0 scores the checkpoint as it is and must equal the demo report's figures.

    .venv/bin/python benchmarks/bench_heads_only.py CKPT WORLD [--epochs 30] [--lr 1e-3] [--cache FILE]

CKPT: the demo's hard-negative stage (checkpoints/demo_hard_negatives/checkpoints/last.ckpt); WORLD: its demo
world, which holds train_hard_negatives.jsonl (written by `make demo`). Prints CompA text/audio/group on the
held-out and training rows and test t2a R@1 every 5 epochs. The in-batch softmax here has no false-negative
masking (the demo's captions hold few duplicates); text and audio negatives are those the demo stage uses.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from compclap.audio.fusion import fit_length
from compclap.audio.io import load_audio
from compclap.data.manifest import read_manifest
from compclap.eval.compa import compa_scores
from compclap.eval.compa_csv import read_compa_csv
from compclap.models.loading import load_model

COMPA = ("compa_order", "compa_attribute", "compa_order_train", "compa_attribute_train")


@torch.no_grad()
def tower_features(model, paths: list[str], texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled (pre-head) features of audio files and texts, with the towers in eval mode."""
    cfg = model.frontend_config
    audio = [model.audio(torch.stack([fit_length(torch.from_numpy(load_audio(p, cfg.sample_rate)[0]),
                                                 cfg.num_samples, cfg.padding) for p in paths[i:i + 64]]))
             for i in range(0, len(paths), 64)]
    text = [model.text(texts[i:i + 256]) for i in range(0, len(texts), 256)]
    return torch.cat(audio), torch.cat(text)


def main() -> None:
    """Cache features, train the heads, print the scores."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("world", type=Path)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-negatives", type=int, default=4, help="text negatives per caption, as the demo stage")
    p.add_argument("--cache", type=Path, default=None, help="feature cache file (reused when present)")
    args = p.parse_args()
    torch.manual_seed(0)
    model = load_model(args.checkpoint).eval()
    world = args.world
    records = read_manifest(world / "train_hard_negatives.jsonl")
    test = read_manifest(world / "test.jsonl")
    compa = {name: read_compa_csv(world / f"{name}.csv", audio_root=world) for name in COMPA}
    paths = sorted({r["audio"] for r in records} | {r["audio"] for r in test}
                   | {n["audio"] for r in records for per in r.get("negative_audio") or [] for n in per}
                   | {str(f) for rows in compa.values() for row in rows for f in row.files[:2]})
    texts = sorted({c for r in records + test for c in r["captions"]}
                   | {n["text"] for r in records for per in r["negatives"] for n in per}
                   | {c for rows in compa.values() for row in rows for c in row.captions[:2]})
    cached = torch.load(args.cache, weights_only=True) if args.cache is not None and args.cache.is_file() else None
    # The cache holds the rows' keys: features of another checkpoint's world or file list are never reused.
    if cached is not None and (cached["paths"], cached["texts"], cached["checkpoint"]) == (paths, texts,
                                                                                          str(args.checkpoint)):
        audio_features, text_features = cached["audio"], cached["text"]
    else:
        t0 = time.time()
        audio_features, text_features = tower_features(model, paths, texts)
        print(f"tower features in {time.time() - t0:.0f} s: {len(paths)} clips, {len(texts)} texts", flush=True)
        if args.cache is not None:
            torch.save({"paths": paths, "texts": texts, "checkpoint": str(args.checkpoint), "audio": audio_features,
                        "text": text_features}, args.cache)
    audio_index = {p: i for i, p in enumerate(paths)}
    text_index = {t: i for i, t in enumerate(texts)}
    audio_head, text_head = copy.deepcopy(model.audio_projection), copy.deepcopy(model.text_projection)
    scale = model.scale().detach()
    # One sample per (clip, caption): its text negatives and the swapped renderings that caption rules out.
    samples = []
    for rec in records:
        negative_audio = rec.get("negative_audio") or [[] for _ in rec["captions"]]
        for j, caption in enumerate(rec["captions"]):
            samples.append((audio_index[rec["audio"]], text_index[caption],
                            [text_index[n["text"]] for n in rec["negatives"][j][:args.max_negatives]],
                            [audio_index[n["audio"]] for n in negative_audio[j]]))
    test_audio = torch.tensor([audio_index[r["audio"]] for r in test])
    test_text = torch.tensor([text_index[c] for r in test for c in r["captions"]])
    test_owner = torch.tensor([i for i, r in enumerate(test) for _ in r["captions"]])

    @torch.no_grad()
    def scores() -> dict:
        audio = F.normalize(audio_head(audio_features), dim=-1)
        text = F.normalize(text_head(text_features), dim=-1)
        out = {}
        for name, rows in compa.items():
            total = {"text": 0.0, "audio": 0.0, "group": 0.0}
            for row in rows:
                a0, a1 = (audio[audio_index[str(f)]] for f in row.files[:2])
                t0, t1 = (text[text_index[c]] for c in row.captions[:2])
                row_scores = compa_scores(t0 @ a0, t0 @ a1, t1 @ a0, t1 @ a1)  # sij = sim(caption i, audio j)
                for k in total:
                    total[k] += float(row_scores[k])
            out[name] = {k: round(v / len(rows), 1) for k, v in total.items()}
        best = (text[test_text] @ audio[test_audio].T).argmax(1)
        out["t2a_R@1"] = round(100 * float((best == test_owner).float().mean()), 1)
        return out

    print("epoch 0 (the checkpoint)", scores(), flush=True)
    optimiser = torch.optim.AdamW(list(audio_head.parameters()) + list(text_head.parameters()), lr=args.lr,
                                  weight_decay=args.weight_decay)
    size = args.batch_size
    labels = torch.arange(size)
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(samples))
        total = 0.0
        for start in range(0, len(samples) - size + 1, size):
            batch = [samples[int(i)] for i in order[start:start + size]]
            audio = F.normalize(audio_head(audio_features[[s[0] for s in batch]]), dim=-1)
            text = F.normalize(text_head(text_features[[s[1] for s in batch]]), dim=-1)
            text_negatives = torch.full((size, max(1, max(len(s[2]) for s in batch))), float("-inf"))
            audio_negatives = torch.full((size, max(1, max(len(s[3]) for s in batch))), float("-inf"))
            for i, (_, _, negative_texts, negative_clips) in enumerate(batch):
                if negative_texts:
                    text_negatives[i, :len(negative_texts)] = scale * (
                        F.normalize(text_head(text_features[negative_texts]), dim=-1) @ audio[i])
                if negative_clips:
                    audio_negatives[i, :len(negative_clips)] = scale * (
                        F.normalize(audio_head(audio_features[negative_clips]), dim=-1) @ text[i])
            a2t = F.cross_entropy(torch.cat([scale * audio @ text.T, text_negatives], 1), labels)
            t2a = F.cross_entropy(torch.cat([scale * text @ audio.T, audio_negatives], 1), labels)
            loss = (a2t + t2a) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
        if epoch % 5 == 0 or epoch == args.epochs:
            print(f"epoch {epoch} loss {total / (len(samples) // size):.3f} ({time.time() - t0:.0f} s)", scores(),
                  flush=True)


if __name__ == "__main__":
    main()
