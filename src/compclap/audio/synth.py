"""Procedural sound events for the offline demo world: each type has its own spectral and temporal shape.

Every generator is `gen(rng, sample_rate, attributes) -> float32 mono waveform` where attributes
holds the words `loudness` (loud|soft), `pitch` (high|low) and `duration` (short|long). The
random draws a generator makes do not depend on loudness or pitch, so rendering the same seed
with only those attributes changed gives "the same event instance", louder or higher.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

Attributes = Mapping[str, str]
Generator = Callable[[np.random.Generator, int, Attributes], np.ndarray]

ATTRIBUTE_VALUES: dict[str, tuple[str, str]] = {
    "loudness": ("loud", "soft"),
    "pitch": ("high", "low"),
    "duration": ("short", "long"),
}
DEFAULT_ATTRIBUTES: dict[str, str] = {"loudness": "loud", "pitch": "low", "duration": "short"}

# Attribute ranges, wide apart so a small model hears the difference; jitter is drawn inside them.
DURATION_RANGE_S: dict[str, tuple[float, float]] = {"short": (0.3, 0.5), "long": (0.9, 1.3)}
# Level offsets relative to the type's reference loudness (see _finish): soft sits 18 dB below loud.
LEVEL_DB_RANGE: dict[str, tuple[float, float]] = {"loud": (-3.0, 0.0), "soft": (-21.0, -18.0)}
REFERENCE_RMS_DB = -14.0  # loud events aim at this RMS (dBFS) ...
MAX_PEAK = 0.95  # ... unless that would push their peak above this (spiky types: clicks, knocks, crackle)
PITCH_FACTOR: dict[str, float] = {"low": 1.0, "high": 2.8}
PITCH_JITTER = 0.06  # +-6 % around the factor
EDGE_FADE_S = 0.005  # kills clicks at the start and end of every event


class EventType(NamedTuple):
    """A registered event type: its generator and the noun phrase captions use ("a beep")."""

    generator: Generator
    noun_phrase: str


class _Draw(NamedTuple):
    n: int          # length in samples
    duration: float  # seconds
    pitch: float    # multiplier on the type's base frequency
    gain: float     # linear level offset relative to the reference loudness


def _draw(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> _Draw:
    """Draw duration, pitch factor and level offset; always three uniforms so the stream never depends on attributes."""
    attrs = {**DEFAULT_ATTRIBUTES, **dict(attributes)}
    for key, allowed in ATTRIBUTE_VALUES.items():
        if attrs[key] not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {attrs[key]!r}")
    u_dur, u_pitch, u_gain = rng.random(3)
    lo, hi = DURATION_RANGE_S[attrs["duration"]]
    duration = lo + (hi - lo) * u_dur
    pitch = PITCH_FACTOR[attrs["pitch"]] * (1.0 + PITCH_JITTER * (2.0 * u_pitch - 1.0))
    glo, ghi = LEVEL_DB_RANGE[attrs["loudness"]]
    gain = 10.0 ** ((glo + (ghi - glo) * u_gain) / 20.0)
    return _Draw(max(1, int(round(duration * sample_rate))), duration, pitch, gain)


def _finish(x: np.ndarray, sample_rate: int, gain: float) -> np.ndarray:
    """Fade the edges, bring the event to the reference loudness (RMS, capped by peak), then apply the level offset.

    The reference scale depends only on the waveform, never on the loudness word, so loud and
    soft renderings of one instance differ by exactly the drawn offset, and "loud" means similar
    energy whatever the type.
    """
    x = np.asarray(x, dtype=np.float64)
    fade = min(len(x) // 2, int(EDGE_FADE_S * sample_rate))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        level = float(np.sqrt(np.mean(x * x)))
        scale = min(10.0 ** (REFERENCE_RMS_DB / 20.0) / level, MAX_PEAK / peak)
        x = x * (scale * gain)
    return x.astype(np.float32)


def _time(n: int, sample_rate: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sample_rate


def _osc(freq: np.ndarray | float, n: int, sample_rate: int, phase: float = 0.0) -> np.ndarray:
    """Sine oscillator with a (possibly time-varying) frequency, by phase accumulation."""
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    return np.sin(phase + 2.0 * np.pi * np.cumsum(f) / sample_rate)


def _harmonics(f0: np.ndarray | float, n: int, sample_rate: int, amps: list[float],
               ratios: list[float] | None = None) -> np.ndarray:
    """Sum of partials at `ratios` (default 1, 2, 3, ...) of f0, skipping any above 0.45 * sample_rate."""
    ratios = ratios or [float(k + 1) for k in range(len(amps))]
    f0 = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    # One phase track serves every partial: the phase of r * f0 is r times the phase of f0.
    phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate
    out = np.zeros(n)
    nyq = 0.45 * sample_rate
    f_max = float(np.max(f0))
    for r, a in zip(ratios, amps):
        if r * f_max < nyq:
            out += a * np.sin(r * phase)
    return out


def _band_noise(rng: np.random.Generator, n: int, sample_rate: int, center: float, octaves: float) -> np.ndarray:
    """White noise shaped by a Gaussian band (in log frequency) around `center` Hz."""
    noise = rng.standard_normal(n)
    spec = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    logf = np.log2(np.maximum(freqs, 1.0) / center)
    spec *= np.exp(-0.5 * (logf / (octaves / 2.0)) ** 2)
    return np.fft.irfft(spec, n)


def _lowpass_noise(rng: np.random.Generator, n: int, sample_rate: int, cutoff: float) -> np.ndarray:
    """White noise through a smooth low-pass (Gaussian roll-off above `cutoff` Hz)."""
    noise = rng.standard_normal(n)
    spec = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spec *= np.exp(-0.5 * (freqs / cutoff) ** 2)
    return np.fft.irfft(spec, n)


def _attack_release(n: int, sample_rate: int, attack_s: float, release_s: float) -> np.ndarray:
    env = np.ones(n)
    a = min(n // 2, max(1, int(attack_s * sample_rate)))
    r = min(n // 2, max(1, int(release_s * sample_rate)))
    env[:a] = np.linspace(0.0, 1.0, a)
    env[n - r:] = np.minimum(env[n - r:], np.linspace(1.0, 0.0, r))
    return env


def _place(out: np.ndarray, start: int, grain: np.ndarray) -> None:
    """Add `grain` into `out` at `start`, cropping at the end."""
    end = min(len(out), start + len(grain))
    if start < end:
        out[start:end] += grain[: end - start]


# --- the event types -------------------------------------------------------------------------

def beep(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """Steady sine tone with a flat envelope (base 500 Hz)."""
    d = _draw(rng, sample_rate, attributes)
    f = 500.0 * d.pitch
    x = _harmonics(f, d.n, sample_rate, [1.0, 0.08])
    return _finish(x * _attack_release(d.n, sample_rate, 0.01, 0.01), sample_rate, d.gain)


def chirp(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A run of short rising sweeps, bird-like (each one octave up from a base of 700 Hz)."""
    d = _draw(rng, sample_rate, attributes)
    period = 0.12 + 0.06 * rng.random()  # seconds per chirp incl. its pause
    length = int(0.7 * period * sample_rate)
    out = np.zeros(d.n)
    f0 = 700.0 * d.pitch
    ramp = np.linspace(0.0, 1.0, length)
    one = _osc(f0 * 2.0 ** ramp, length, sample_rate) * np.sin(np.pi * ramp) ** 2
    for start in range(0, d.n, int(period * sample_rate)):
        _place(out, start, one)
    return _finish(out, sample_rate, d.gain)


def sweep(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """One continuous falling sweep over the whole event, two octaves down to a base of 220 Hz, with harmonics."""
    d = _draw(rng, sample_rate, attributes)
    f_end = 220.0 * d.pitch
    ramp = np.linspace(0.0, 1.0, d.n)
    f = f_end * 4.0 ** (1.0 - ramp)
    x = _harmonics(f, d.n, sample_rate, [1.0, 0.4, 0.2])
    return _finish(x * _attack_release(d.n, sample_rate, 0.02, 0.05), sample_rate, d.gain)


def siren(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A tone that wails up and down by +-30 % at 2.5-4 Hz (base 450 Hz)."""
    d = _draw(rng, sample_rate, attributes)
    rate = 2.5 + 1.5 * rng.random()
    phase = 2.0 * np.pi * rng.random()
    t = _time(d.n, sample_rate)
    f = 450.0 * d.pitch * (1.0 + 0.3 * np.sin(2.0 * np.pi * rate * t + phase))
    x = _harmonics(f, d.n, sample_rate, [1.0, 0.35, 0.15])
    return _finish(x * _attack_release(d.n, sample_rate, 0.03, 0.03), sample_rate, d.gain)


def noise_burst(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """Band-limited noise with a sharp attack and a decaying tail (band around 700 Hz, one and a half octaves wide)."""
    d = _draw(rng, sample_rate, attributes)
    x = _band_noise(rng, d.n, sample_rate, 700.0 * d.pitch, 1.5)
    t = _time(d.n, sample_rate)
    env = np.exp(-t / (0.35 * d.duration))
    return _finish(x * env * _attack_release(d.n, sample_rate, 0.003, 0.02), sample_rate, d.gain)


def click_train(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A regular train of tiny clicks at 14-22 per second, each a ringing resonance (base 1 kHz)."""
    d = _draw(rng, sample_rate, attributes)
    rate = 14.0 + 8.0 * rng.random()
    length = int(0.006 * sample_rate)
    tc = _time(length, sample_rate)
    f = 1000.0 * d.pitch
    click = np.sin(2.0 * np.pi * f * tc) * np.exp(-tc / 0.0012)
    click[0] += 0.3  # a touch of broadband transient
    out = np.zeros(d.n)
    for start in np.arange(0, d.n, sample_rate / rate).astype(int):
        _place(out, int(start), click)
    return _finish(out, sample_rate, d.gain)


def hum(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A low, dark harmonic drone with a slow waver (fundamental 70 Hz)."""
    d = _draw(rng, sample_rate, attributes)
    wobble_rate = 0.5 + rng.random()
    t = _time(d.n, sample_rate)
    f0 = 70.0 * d.pitch
    x = _harmonics(f0, d.n, sample_rate, [1.0 / k ** 1.5 for k in range(1, 9)])
    x *= 1.0 + 0.15 * np.sin(2.0 * np.pi * wobble_rate * t)
    return _finish(x * _attack_release(d.n, sample_rate, 0.06, 0.06), sample_rate, d.gain)


def knock(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A few dull knocks: short decaying thuds (base resonance 180 Hz) a quarter-second or so apart."""
    d = _draw(rng, sample_rate, attributes)
    spacing = 0.16 + 0.08 * rng.random()
    length = int(0.12 * sample_rate)
    tk = _time(length, sample_rate)
    thump_noise = _lowpass_noise(rng, length, sample_rate, 1500.0)
    f = 180.0 * d.pitch
    one = np.sin(2.0 * np.pi * f * tk) * np.exp(-tk / 0.025)
    one += 0.3 * thump_noise / (np.max(np.abs(thump_noise)) + 1e-9) * np.exp(-tk / 0.004)
    out = np.zeros(d.n)
    for start in np.arange(0, max(1, d.n - length // 2), spacing * sample_rate).astype(int):
        _place(out, int(start), one)
    return _finish(out, sample_rate, d.gain)


def whistle(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A pure, breathy whistle with gentle 5-6 Hz vibrato and a glide up at the start (base 1 kHz)."""
    d = _draw(rng, sample_rate, attributes)
    vib_rate = 5.0 + rng.random()
    t = _time(d.n, sample_rate)
    f0 = 1000.0 * d.pitch
    glide = 1.0 - 0.12 * np.exp(-t / 0.05)
    f = f0 * glide * (1.0 + 0.015 * np.sin(2.0 * np.pi * vib_rate * t))
    breath = _band_noise(rng, d.n, sample_rate, f0, 0.5)
    breath /= np.max(np.abs(breath)) + 1e-9
    x = _osc(f, d.n, sample_rate) + 0.08 * breath
    return _finish(x * _attack_release(d.n, sample_rate, 0.04, 0.04), sample_rate, d.gain)


def buzz(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A harsh band-limited sawtooth (fundamental 120 Hz) with a fast 25-35 Hz rattle."""
    d = _draw(rng, sample_rate, attributes)
    rattle = 25.0 + 10.0 * rng.random()
    t = _time(d.n, sample_rate)
    f0 = 120.0 * d.pitch
    k_max = max(1, int(0.45 * sample_rate / f0))
    x = _harmonics(f0, d.n, sample_rate, [1.0 / k for k in range(1, k_max + 1)])
    x *= 0.75 + 0.25 * np.sign(np.sin(2.0 * np.pi * rattle * t))
    return _finish(x * _attack_release(d.n, sample_rate, 0.01, 0.01), sample_rate, d.gain)


def bell(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A struck bell: inharmonic partials (1, 2, 2.76, 5.4, 8.93 x 350 Hz) ringing out, high ones faster."""
    d = _draw(rng, sample_rate, attributes)
    detune = 1.0 + 0.01 * (rng.random(5) - 0.5)
    t = _time(d.n, sample_rate)
    f0 = 350.0 * d.pitch
    ratios = [1.0, 2.0, 2.76, 5.40, 8.93]
    amps = [1.0, 0.6, 0.5, 0.3, 0.2]
    tau = 0.3 * d.duration
    x = np.zeros(d.n)
    for r, a, dt in zip(ratios, amps, detune):
        if r * f0 < 0.45 * sample_rate:
            x += a * np.sin(2.0 * np.pi * r * dt * f0 * t) * np.exp(-t * r ** 0.5 / tau)
    return _finish(x * _attack_release(d.n, sample_rate, 0.001, 0.02), sample_rate, d.gain)


def crackle(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """Irregular crackling: random grains of bright noise with random strengths (band around 1.4 kHz)."""
    d = _draw(rng, sample_rate, attributes)
    count = max(3, int(rng.poisson(70.0 * d.duration)))
    starts = rng.integers(0, d.n, size=count)
    amps = 0.3 + 0.7 * rng.random(count)
    lengths = rng.integers(int(0.003 * sample_rate), int(0.012 * sample_rate) + 1, size=count)
    field = _band_noise(rng, d.n, sample_rate, 1400.0 * d.pitch, 1.5)
    out = np.zeros(d.n)
    for s, a, ln in zip(starts, amps, lengths):
        env = np.exp(-np.arange(ln) / (0.3 * ln))
        seg = field[s:s + ln]
        out[s:s + len(seg)] += a * seg * env[: len(seg)]
    return _finish(out, sample_rate, d.gain)


def rumble(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """An engine-like rumble: low noise plus a pulsing firing tone at 35 Hz, throbbing at 3-6 Hz."""
    d = _draw(rng, sample_rate, attributes)
    throb = 3.0 + 3.0 * rng.random()
    noise = _lowpass_noise(rng, d.n, sample_rate, 200.0 * d.pitch)
    noise /= np.max(np.abs(noise)) + 1e-9
    t = _time(d.n, sample_rate)
    f0 = 35.0 * d.pitch
    pulses = _harmonics(f0, d.n, sample_rate, [1.0, 0.8, 0.6, 0.4, 0.3, 0.2])
    x = 0.6 * pulses / (np.max(np.abs(pulses)) + 1e-9) + 0.8 * noise
    x *= 0.7 + 0.3 * np.sin(2.0 * np.pi * throb * t)
    return _finish(x * _attack_release(d.n, sample_rate, 0.08, 0.08), sample_rate, d.gain)


# --- optional speech -------------------------------------------------------------------------

_SPEECH_WORDS = ("hello", "yes", "no", "stop", "go", "okay", "ready", "wait", "one", "two", "seven", "listen")


def speech_available() -> bool:
    """Whether the `espeak-ng` binary is on PATH (speech events are optional)."""
    return shutil.which("espeak-ng") is not None


def speech(rng: np.random.Generator, sample_rate: int, attributes: Attributes) -> np.ndarray:
    """A spoken word from espeak-ng (pitch, speed and level follow the attributes); needs the espeak-ng binary."""
    import soundfile as sf
    import soxr

    d = _draw(rng, sample_rate, attributes)
    words = " ".join(rng.choice(_SPEECH_WORDS, size=1 if d.duration < 0.7 else 3))
    espeak_pitch = 20 if d.pitch < 2.0 else 85
    speed = 260 if d.duration < 0.7 else 150
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed; speech events are unavailable")
    wav = subprocess.run([exe, "--stdout", "-p", str(espeak_pitch), "-s", str(speed), words],
                         check=True, capture_output=True).stdout
    x, sr = sf.read(io.BytesIO(wav), dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != sample_rate:
        x = soxr.resample(x, sr, sample_rate)
    nz = np.flatnonzero(np.abs(x) > 1e-3)
    if nz.size:
        x = x[nz[0]: nz[-1] + 1]
    return _finish(x[: int(1.3 * sample_rate)], sample_rate, d.gain)


EVENT_TYPES: dict[str, EventType] = {
    "beep": EventType(beep, "a beep"),
    "chirp": EventType(chirp, "a chirping"),
    "sweep": EventType(sweep, "a falling sweep"),
    "siren": EventType(siren, "a siren"),
    "noise_burst": EventType(noise_burst, "a noise burst"),
    "click_train": EventType(click_train, "a click train"),
    "hum": EventType(hum, "a hum"),
    "knock": EventType(knock, "a knocking"),
    "whistle": EventType(whistle, "a whistle"),
    "buzz": EventType(buzz, "a buzz"),
    "bell": EventType(bell, "a bell"),
    "crackle": EventType(crackle, "a crackle"),
    "rumble": EventType(rumble, "an engine rumble"),
}
# Kept out of EVENT_TYPES so a data set never silently depends on what is installed on a machine.
OPTIONAL_EVENT_TYPES: dict[str, EventType] = {"speech": EventType(speech, "a spoken word")}


def get_event_type(name: str) -> EventType:
    """Look up a registered (or optional) event type by name."""
    if name in EVENT_TYPES:
        return EVENT_TYPES[name]
    if name in OPTIONAL_EVENT_TYPES:
        return OPTIONAL_EVENT_TYPES[name]
    raise KeyError(f"unknown event type {name!r}; known: {sorted(EVENT_TYPES) + sorted(OPTIONAL_EVENT_TYPES)}")


def render_event(name: str, attributes: Attributes, seed: int | np.random.Generator,
                 sample_rate: int = 16000) -> np.ndarray:
    """Render one event of type `name` with the given attribute words; the same seed gives the same instance."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return get_event_type(name).generator(rng, sample_rate, attributes)


# --- compositions as plain data --------------------------------------------------------------
# A plan is built from builtins only ({"relation": "single"|"sequence"|"overlay", "events":
# [[type, attributes, seed], ...], "gaps_s": [...], "offsets_s": [...]}), so process-pool workers
# can render it after importing nothing but this light module.

_EVENT_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_EVENT_CACHE_SIZE = 8  # events of the last few plans: a swapped rendering follows its original job


def _cached_event(name: str, attributes: Attributes, seed: int, sample_rate: int) -> np.ndarray:
    """render_event through a small per-process LRU cache; entries are read-only so no caller can alter them."""
    key = (name, tuple(sorted(dict(attributes).items())), int(seed), sample_rate)
    if key in _EVENT_CACHE:
        _EVENT_CACHE.move_to_end(key)
        return _EVENT_CACHE[key]
    wave = render_event(name, attributes, seed, sample_rate)
    wave.setflags(write=False)
    _EVENT_CACHE[key] = wave
    while len(_EVENT_CACHE) > _EVENT_CACHE_SIZE:
        _EVENT_CACHE.popitem(last=False)
    return wave


def render_composition(plan: Mapping, sample_rate: int = 16000, crossfade_fraction: float = 0.1,
                       max_seconds: float | None = None, pad_to_seconds: float | None = None,
                       cache_events: bool = False) -> np.ndarray:
    """Render a plan: one event, a sequence (crossfades/gaps) or an overlay (onsets), keeping absolute levels.

    `max_seconds` crops; `pad_to_seconds` appends silence up to that length (a loader that
    repeat-pads short clips would otherwise turn "A then B" into "A B A B"). `cache_events` reuses
    events rendered for recent plans (same type, attributes and seed give the same samples), which
    makes the swapped renderings that follow their original nearly free of synthesis (an unpadded
    single-event result may then be a read-only view of the cached event).
    """
    from compclap.audio.mix import concat_crossfade, overlay

    render = _cached_event if cache_events else render_event
    clips = [render(name, attrs, seed, sample_rate) for name, attrs, seed in plan["events"]]
    relation = plan["relation"]
    if relation == "single":
        if len(clips) != 1:
            raise ValueError(f"a single-event plan needs exactly one event, got {len(clips)}")
        out = clips[0]
    elif relation == "sequence":
        gaps = list(plan.get("gaps_s") or [0.0] * (len(clips) - 1))
        # peak=None: normalising would turn two soft events into loud ones.
        out = concat_crossfade(clips, sample_rate, crossfade_fraction, gap_s=gaps, peak=None)
    elif relation == "overlay":
        offs = list(plan.get("offsets_s") or [0.0] * len(clips))
        out = overlay(clips, None, offsets=[int(round(o * sample_rate)) for o in offs])
    else:
        raise ValueError(f"unknown relation {relation!r}")
    if max_seconds is not None:
        out = out[: int(round(max_seconds * sample_rate))]
    if pad_to_seconds is not None:
        out = np.pad(out, (0, max(0, int(round(pad_to_seconds * sample_rate)) - len(out))))
    return np.asarray(out, dtype=np.float32)


def render_composition_to_file(job: Mapping) -> int:
    """Render a job dict (path, plan, sample_rate, and render_composition's keyword options) to 16-bit FLAC.

    Returns the number of samples written. Takes one plain dict so it can run in a process pool.
    """
    import soundfile as sf

    job = dict(job)
    path, plan, sample_rate = job.pop("path"), job.pop("plan"), job.pop("sample_rate")
    audio = render_composition(plan, sample_rate, cache_events=True, **job)
    # Encoding into memory first: libsndfile's FLAC finaliser is ~10x slower on a real file.
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="FLAC", subtype="PCM_16")
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return len(audio)
