"""Log-mel front end: `LogMelSpectrogram` (torch, batched, on the model's device) vs transformers' ClapFeatureExtractor.

Usage: python benchmarks/bench_logmel.py [--batch 64] [--device cpu] [--repeats 5]

Times the log-mel of a batch of 64 10-s clips at 48 kHz (LAION-CLAP's front end: n_fft 1024, hop 480, 64 slaney
mels, 50 Hz - 14 kHz): ours on `--device` with torch's default threads and with one thread, theirs with
`ClapFeatureExtractor(truncation="rand_trunc")` (numpy, one thread, float64). Each side is warmed up, runs are
interleaved (both sides see the same machine load) and the best of `--repeats` runs counts. On CPU it also gives
the one-thread ratio in process CPU time, which other programs on a busy machine do not distort, and how far apart
the two outputs are in dB. Prints one JSON line; the target is ours / theirs <= 0.05 on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

TARGET = 0.05


def natural_batch(batch: int, sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Tones with vibrato and decays over coloured noise: neither silence nor white noise."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    out = np.empty((batch, n), dtype=np.float32)
    for i in range(batch):
        f0 = rng.uniform(100, 2000)
        tone = np.sin(2 * np.pi * f0 * t + 2 * np.sin(2 * np.pi * rng.uniform(2, 8) * t)) * np.exp(-t / rng.uniform(1, 8))
        noise = np.cumsum(rng.standard_normal(n)) * 1e-3
        noise -= np.convolve(noise, np.ones(512) / 512, mode="same")  # brown-ish noise without drift
        out[i] = 0.3 * tone + 0.1 * noise / max(1e-6, np.abs(noise).max())
    return out


def timed(fn, sync=lambda: None) -> tuple[float, float]:
    """Wall and process CPU seconds of one call."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - start, time.process_time() - start_cpu


def set_threads(n: int) -> None:
    """Torch intra-op threads."""
    torch.set_num_threads(n)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON line."""
    from transformers import ClapFeatureExtractor

    from compclap.audio.features import FrontendConfig, LogMelSpectrogram

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--theirs-repeats", type=int, default=3)
    args = parser.parse_args(argv)

    cfg = FrontendConfig()  # 48 kHz, 10 s, LAION-CLAP's rand_trunc front end
    load = round(os.getloadavg()[0], 2)
    waves = natural_batch(args.batch, cfg.sample_rate, cfg.clip_seconds)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ours_module = LogMelSpectrogram(cfg).to(device)
    batch = torch.from_numpy(waves).to(device)
    threads = torch.get_num_threads()
    fe = ClapFeatureExtractor(feature_size=cfg.n_mels, sampling_rate=cfg.sample_rate, hop_length=cfg.hop_length,
                              max_length_s=cfg.clip_seconds, fft_window_size=cfg.n_fft, frequency_min=cfg.f_min,
                              frequency_max=cfg.f_max, truncation="rand_trunc", padding="repeatpad")
    clips = list(waves)

    def ours_fn():
        with torch.inference_mode():
            return ours_module(batch)

    def theirs_fn():
        return fe(clips, sampling_rate=cfg.sample_rate, return_tensors="np")["input_features"][:, 0]

    ours_out, theirs_out = ours_fn().cpu().numpy(), theirs_fn()  # warm-up
    # Interleave the runs so that both sides see the same machine load; keep the best of each.
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "ours_1": [], "theirs": []}
    for r in range(max(args.repeats, args.theirs_repeats)):
        if r < args.repeats:
            runs["ours"].append(timed(ours_fn, sync))
            if device.type == "cpu":
                set_threads(1)
                runs["ours_1"].append(timed(ours_fn, sync))
                set_threads(threads)
        if r < args.theirs_repeats:
            runs["theirs"].append(timed(theirs_fn))
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items() if v}
    diff = np.abs(ours_out - theirs_out)
    ours, theirs, theirs_cpu = best["ours"][0], best["theirs"][0], best["theirs"][1]

    result = {"benchmark": "logmel", "batch": args.batch, "clip_seconds": cfg.clip_seconds,
              "sample_rate": cfg.sample_rate, "device": str(device), "torch_threads": threads,
              "cpu_count": os.cpu_count(), "load_avg": load, "ours_s": round(ours, 4), "theirs_s": round(theirs, 4),
              "ratio": round(ours / theirs, 4)}
    if device.type == "cpu":
        # One thread each, in CPU seconds: the work ratio, which a busy machine does not distort.
        ours_one, ours_one_cpu = best["ours_1"]
        result.update(ours_1_thread_s=round(ours_one, 4), ratio_1_thread=round(ours_one / theirs, 4),
                      ratio_1_thread_cpu_time=round(ours_one_cpu / theirs_cpu, 4))
    result.update(target_ratio=TARGET, meets_target=ours / theirs <= TARGET,
                  mean_abs_diff_db=float(f"{diff.mean():.2e}"), max_abs_diff_db=float(f"{diff.max():.2e}"))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
