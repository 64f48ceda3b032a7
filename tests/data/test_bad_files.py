"""Bad audio files: a WAV cut short of its header's length is one; the stop error names every bad file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from compclap.audio.io import AudioDecodeError, declared_wav_frames, load_audio, load_clip
from compclap.data.bad_files import BadFileTracker, TooManyBadFilesError
from compclap.data.datasets import ManifestDataset, collate_clips

SR = 8000


def _wav(frames: int = 8000, subtype: str = "PCM_16", channels: int = 1) -> bytes:
    buf = io.BytesIO()
    data = np.random.default_rng(0).uniform(-0.5, 0.5, (frames, channels)).astype("float32")
    sf.write(buf, data, SR, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("subtype, channels", [("PCM_16", 1), ("PCM_24", 2), ("FLOAT", 1), ("ULAW", 2)])
def test_truncated_wav_is_a_decode_error(tmp_path, subtype, channels):
    whole = _wav(8000, subtype, channels)
    assert declared_wav_frames(whole) == 8000
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[: len(whole) * 3 // 8])
    assert sf.info(str(cut)).frames < 8000  # libsndfile alone would decode it as a shorter clip
    with pytest.raises(AudioDecodeError, match=r"cut\.wav.*truncated: its header declares 8000 frames"):
        load_audio(cut, SR)
    for source in (cut, cut.read_bytes(), io.BytesIO(cut.read_bytes())):
        with pytest.raises(AudioDecodeError, match="truncated"):
            load_clip(source, SR, 1000)  # even a crop that the short file could serve


def test_whole_and_other_files_still_load(tmp_path):
    path = tmp_path / "ok.wav"
    path.write_bytes(_wav(4000))
    assert load_audio(path, SR)[0].shape == (4000,)
    handle = io.BytesIO(_wav(4000))
    handle.seek(0)
    assert load_clip(handle, SR, 1000).shape == (1000,)
    flac = io.BytesIO()
    sf.write(flac, np.zeros(800, "float32"), SR, format="FLAC")
    assert declared_wav_frames(flac.getvalue()) is None
    adpcm = io.BytesIO()
    sf.write(adpcm, np.zeros(1000, "float32"), SR, format="WAV", subtype="IMA_ADPCM")
    assert declared_wav_frames(adpcm.getvalue()) is None  # blocks, not frames: not checked
    assert load_clip(adpcm.getvalue(), SR, 500).shape == (500,)
    streamed = bytearray(_wav(1000))
    streamed[40:44] = b"\xff\xff\xff\xff"  # a data size left unknown by a streaming writer
    assert declared_wav_frames(bytes(streamed)) is None
    assert declared_wav_frames(tmp_path / "missing.wav") is None


def test_truncated_wav_is_skipped_like_any_bad_file(tmp_path):
    good, cut = tmp_path / "good.wav", tmp_path / "cut.wav"
    good.write_bytes(_wav(4000))
    cut.write_bytes(_wav(8000)[:3000])
    ds = ManifestDataset([{"audio": str(good), "captions": ["a"]}, {"audio": str(cut), "captions": ["b"]}],
                         SR, 2000, train=False)
    with pytest.warns(UserWarning, match="skipping clip.*truncated"):
        batch = collate_clips([ds[0], ds[1]])
    assert batch["skipped"] == [str(cut)] and batch["waveforms"].shape[0] == 1


def test_too_many_bad_files_names_every_bad_file_seen():
    tracker = BadFileTracker(max_fraction=0.5)
    tracker.add_batch({"skipped": ["e0.wav"]}, "fit", share=100, epoch=0)
    tracker.add_batch({"skipped": ["v0.wav"]}, "validate", share=100, epoch=0)
    names = [f"bad{i:02d}.wav" for i in range(12)]
    for k in range(0, 10, 2):
        tracker.add_batch({"skipped": names[k:k + 2] + names[k:k + 1]}, "fit", share=20, epoch=1)
    assert tracker.bad["fit"] == names[:10]
    with pytest.raises(TooManyBadFilesError) as info:
        tracker.add_batch({"skipped": names[10:]}, "fit", share=20, epoch=1)
    message = str(info.value)
    assert "12 of ~20 files of the fit split" in message
    assert "bad files: " + ", ".join(names) in message  # all of them, not the first five
    assert message.endswith("; seen earlier in this run: e0.wav, v0.wav")
