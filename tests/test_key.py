"""Tests for crate_dask.features.key: generated harmonic audio in every key, degenerate input, validation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from crate_dask.errors import ParameterError
from crate_dask.features.key import (
    PROFILES,
    Key,
    chroma_profile,
    estimate_key,
    key_scores,
)
from crate_dask.features.notation import KEYS, PITCH_CLASSES, to_camelot, to_open_key

SR = 11025
RNG = np.random.default_rng(0)


def tone(midi: float, dur_s: float, sr: int = SR, n_partials: int = 6, cents: float = 0.0) -> np.ndarray:
    """A note with decaying harmonic partials (a plucked/organ-like timbre), as real instruments have."""
    t = np.arange(int(dur_s * sr)) / sr
    f0 = 440.0 * 2 ** ((midi - 69 + cents / 100) / 12)
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, n_partials + 1) if k * f0 < sr / 2)
    env = np.minimum(1.0, t / 0.02) * np.exp(-t * 0.8)
    return y * env


def chord(midis, dur_s, **kw) -> np.ndarray:
    return sum(tone(m, dur_s, **kw) for m in midis)


def cadence(tonic_pc: int, mode: str, sr: int = SR, cents: float = 0.0, repeats: int = 2) -> np.ndarray:
    """I-IV-V-I (major) or i-iv-V-i (harmonic minor) in close position with the root in the bass."""
    third = 4 if mode == "major" else 3
    t = 48 + tonic_pc  # tonic in octave 3
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)]
    parts = []
    for _ in range(repeats):
        for root, a, b in chords:
            parts.append(chord((t + root - 12, t + root, t + a, t + b), 1.5, sr=sr, cents=cents))
    return (np.concatenate(parts) * 0.2).astype(np.float32)


def scale_over_drone(tonic_pc: int, mode: str) -> np.ndarray:
    """An ascending and descending scale over a tonic pedal; natural minor, the minor of pop and EDM."""
    steps = (0, 2, 4, 5, 7, 9, 11, 12) if mode == "major" else (0, 2, 3, 5, 7, 8, 10, 12)
    t = 60 + tonic_pc
    melody = np.concatenate([tone(t + s, 0.5) for s in steps + steps[::-1]])
    drone = tone(t - 24, len(melody) / SR, n_partials=4) * 0.7
    drone *= np.exp(np.arange(len(drone)) / SR * 0.8)  # undo the decay: a held pedal
    return (0.2 * (melody + drone)).astype(np.float32)


def split(key: str) -> tuple[int, str]:
    pc, mode = key.split()
    return PITCH_CLASSES.index(pc), mode


@pytest.mark.parametrize("key", KEYS)
def test_cadence_in_every_key(key):
    pc, mode = split(key)
    k = estimate_key(cadence(pc, mode), sr=SR)
    assert k.key == key
    assert k.camelot == to_camelot(key) and k.open_key == to_open_key(key)
    assert 0.0 < k.confidence <= 1.0 and k.note is None


@pytest.mark.parametrize("key", KEYS)
def test_scale_over_tonic_pedal_in_every_key(key):
    pc, mode = split(key)
    assert estimate_key(scale_over_drone(pc, mode), sr=SR).key == key


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 44100])
def test_any_sample_rate(sr):
    assert estimate_key(cadence(2, "minor", sr=sr), sr=sr).key == "D minor"


@pytest.mark.parametrize("cents", [-32.0, 25.0, 45.0])
def test_detuned_recording(cents):
    # -32 cents is A4 = 432 Hz; +45 cents is nearly a quarter tone sharp.
    assert estimate_key(cadence(7, "major", cents=cents), sr=SR).key == "G major"


@pytest.mark.parametrize("profile", [*PROFILES, "auto", "ensemble"])
def test_every_profile_finds_a_plain_cadence(profile):
    assert estimate_key(cadence(9, "minor"), sr=SR, profile=profile).key == "A minor"


def test_key_survives_drums_and_noise():
    y = cadence(4, "major", repeats=3)
    beat = int(0.5 * SR)
    hits = np.zeros_like(y)
    burst = RNG.standard_normal(int(0.05 * SR)) * np.exp(-np.arange(int(0.05 * SR)) / SR * 60)
    for s in range(0, len(y) - len(burst), beat):
        hits[s:s + len(burst)] += burst
    noisy = y + 0.5 * hits + 0.01 * RNG.standard_normal(len(y))
    assert estimate_key(noisy.astype(np.float32), sr=SR).key == "E major"


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "cadence.flac"
    sf.write(path, cadence(11, "minor"), SR)
    y, sr = sf.read(path, dtype="float32")
    assert estimate_key(y, sr=sr).key == "B minor"


def test_confidence_is_higher_for_clear_harmony():
    clear = estimate_key(cadence(0, "major"), sr=SR)
    # A bare fifth C-G: C major and C minor fit equally well.
    fifth = estimate_key((0.2 * chord((48, 55, 60, 67), 8.0)).astype(np.float32), sr=SR)
    assert 0.0 <= fifth.confidence < clear.confidence <= 1.0


def test_key_from_windows_spread_over_a_track():
    a_minor = cadence(9, "minor")
    k = estimate_key([a_minor, a_minor, a_minor], sr=SR)
    assert k.key == "A minor" and k.agreement == 1.0
    # One window in an unrelated key: the key of the others, with less agreement and less confidence.
    mixed = estimate_key([a_minor, cadence(3, "major"), a_minor], sr=SR)       # E flat major: a tritone away
    assert mixed.key == "A minor" and mixed.agreement < 0.8 and mixed.confidence < k.confidence
    # Silence around the music does not change it; windows that are all silent are silence.
    assert estimate_key([np.zeros(5 * SR, np.float32), a_minor], sr=SR).key == "A minor"
    assert estimate_key([np.zeros(5 * SR, np.float32)] * 3, sr=SR).note == "silent"


def test_many_short_windows_are_judged_by_quarters_of_the_track():
    a_minor, e_flat = cadence(9, "minor"), cadence(3, "major")

    def chords(y):  # 1.5 s windows, one per chord: four of them (a quarter of 16) hold i-iv-V-i
        return [y[int(j * 1.5 * SR):int((j + 1) * 1.5 * SR)] for j in range(4)]
    windows = chords(a_minor) * 4
    k = estimate_key(windows, sr=SR)
    assert k.key == "A minor" and k.agreement == 1.0
    # The last quarter of the windows in another key: the key holds in three quarters of the track.
    mixed = estimate_key(windows[:12] + chords(e_flat), sr=SR)
    assert mixed.key == "A minor" and mixed.agreement == pytest.approx(0.75, abs=0.1)
    assert mixed.confidence < k.confidence


def test_the_key_windows_of_a_file_give_the_key_of_the_whole_track(tmp_path):
    """A track in A minor with a middle section in E flat major: the excerpt alone hears E flat major."""
    from crate_dask.library.audio import load_excerpt

    a_minor, e_flat = cadence(9, "minor"), cadence(3, "major")
    p = tmp_path / "modulates.flac"
    sf.write(p, np.concatenate([a_minor, a_minor, e_flat, a_minor, a_minor]), SR)   # 5 x 12 s
    ex = load_excerpt(p, sr=SR, excerpt_s=12.0, key_window_s=1.0, key_windows=20)
    assert estimate_key(ex.y, sr=SR).key == "D# major"
    assert len(ex.key_windows) == 20 and estimate_key(list(ex.key_windows), sr=SR).key == "A minor"


def test_silence_and_near_silence():
    assert estimate_key(np.zeros(10 * SR, np.float32), sr=SR) == Key(None, None, None, 0.0, "silent")
    quiet = (1e-5 * RNG.standard_normal(10 * SR)).astype(np.float32)
    assert estimate_key(quiet, sr=SR).note == "silent"


def test_too_short():
    k = estimate_key(cadence(0, "major")[: SR], sr=SR)
    assert k.key is None and k.note == "too short" and k.confidence == 0.0
    assert estimate_key(np.zeros(0, np.float32), sr=SR).note == "too short"


def test_white_noise_has_no_key():
    k = estimate_key((0.3 * RNG.standard_normal(20 * SR)).astype(np.float32), sr=SR)
    assert k.key is None and k.note == "no tonal content"


def test_a_key_heard_through_loud_noise_is_kept_and_noise_alone_has_none():
    # A tonal share between noise's (~0.075) and _MIN_TONAL: a strong fit to a key profile decides.
    rng = np.random.default_rng(1)
    chords = cadence(9, "minor")
    buried = (chords + 8 * np.std(chords) * rng.standard_normal(len(chords))).astype(np.float32)
    _, tonal = chroma_profile(buried, sr=SR)
    assert 0.06 < tonal < 0.10
    assert estimate_key(buried, sr=SR).key == "A minor"
    drowned = (chords + 16 * np.std(chords) * rng.standard_normal(len(chords))).astype(np.float32)
    assert estimate_key(drowned, sr=SR).note == "no tonal content"


def test_unpitched_drums_have_no_key():
    n, beat = 20 * SR, int(60 / 124 * SR)
    y = np.zeros(n)
    t = np.arange(int(0.15 * SR)) / SR
    kick = RNG.standard_normal(len(t)) * np.exp(-t * 40)
    kick = np.convolve(kick, np.ones(8) / 8, mode="same")  # low-passed noise thump
    hat = np.diff(RNG.standard_normal(len(t) // 4 + 1)) * np.exp(-t[: len(t) // 4] * 80) * 0.3
    for s in range(0, n - len(t) - beat, beat):
        y[s:s + len(kick)] += kick
        y[s + beat // 2:s + beat // 2 + len(hat)] += hat
    k = estimate_key(y.astype(np.float32), sr=SR)
    assert k.key is None and k.note == "no tonal content"


def test_chroma_profile_reads_tuning():
    t = np.arange(5 * SR) / SR
    chroma, tonal = chroma_profile(np.sin(2 * np.pi * 432.0 * t), sr=SR)  # A at 432 Hz tuning
    assert int(np.argmax(chroma)) == 9 and chroma.max() > 0.6 and tonal > 0.5
    assert chroma.sum() == pytest.approx(1.0)


def test_key_scores_rotate_with_the_chroma():
    chroma, _ = chroma_profile(cadence(0, "major"), sr=SR)
    base = key_scores(chroma)
    for shift in range(12):
        s = key_scores(np.roll(chroma, shift))
        assert np.argmax(s) == shift
        assert s[shift] == pytest.approx(base[0])


@pytest.mark.parametrize("bad", [
    dict(y=np.zeros((2, SR * 5), np.float32), sr=SR),
    dict(y=np.full(SR * 5, np.nan, np.float32), sr=SR),
    dict(y=np.zeros(SR * 5, np.float32), sr=4000),
    dict(y=np.zeros(SR * 5, np.float32), sr=float("nan")),
    dict(y=np.zeros(SR * 5, np.float32), sr=SR, profile="nope"),
    dict(y=[0.0] * SR * 5, sr=SR),
])
def test_validation(bad):
    with pytest.raises(ParameterError):
        estimate_key(**bad)


# --- real recordings (issue 9): only where the development sets are checked out beside the repo ---

import os  # noqa: E402
from pathlib import Path  # noqa: E402

_DEV_REAL = Path(os.environ.get("CRATE_DASK_EVAL", Path(__file__).resolve().parents[2] / "shared" / "eval")) / "dev-real"


@pytest.mark.parametrize("name, key", [
    ("gtzan_extra7__metal.00000.mp3", "G minor"),
    ("gtzan_extra7__reggae.00000.mp3", "F# minor"),
    ("gtzan_extra7__rock.00000.mp3", "D minor"),
])
def test_real_recordings_have_their_labelled_key(name, key):
    path = _DEV_REAL / "audio" / name
    if not path.is_file():
        pytest.skip(f"real-recording dev set not present ({_DEV_REAL}); set CRATE_DASK_EVAL to its parent")
    from crate_dask.library.audio import load_excerpt

    assert estimate_key(load_excerpt(path, sr=SR, excerpt_s=90.0).y, sr=SR).key == key
