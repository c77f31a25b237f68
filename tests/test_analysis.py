"""Tests of crate_dask.features.signal (the glue) and crate_dask.features.loudness, on generated signals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crate_dask.config import AnalysisSettings
from crate_dask.features.loudness import integrated_loudness
from crate_dask.features.signal import COLUMNS, analyze_signal, warm_up
from crate_dask.schema import AUDIO_COLUMNS

SR = 22050
SETTINGS = AnalysisSettings()


def _clicks(bpm: float, duration_s: float = 30.0, sr: int = SR) -> np.ndarray:
    y = np.zeros(int(duration_s * sr), np.float32)
    burst = np.hanning(400)[200:].astype(np.float32) * np.sin(2 * np.pi * 1500 * np.arange(200) / sr)
    for t in np.arange(0.1, duration_s - 0.1, 60.0 / bpm):
        i = int(t * sr)
        y[i:i + len(burst)] += burst
    return y


def _triad_song(bpm: float, root_hz: float, third: float, duration_s: float = 30.0) -> np.ndarray:
    """A sustained triad (third = 4 major, 3 minor semitones) under a kick on every beat."""
    t = np.arange(int(duration_s * SR)) / SR
    y = sum(0.1 * np.sin(2 * np.pi * root_hz * 2 ** (s / 12) * t) for s in (0, third, 7))
    return (y + 0.8 * _clicks(bpm, duration_s)).astype(np.float32)


def test_returns_exactly_the_schema_audio_columns():
    row = analyze_signal(_clicks(120.0), sr=SR, settings=SETTINGS)
    assert list(row) == COLUMNS == [c for c in AUDIO_COLUMNS if c not in ("analysis_s", "gapless_delay_s")]


@pytest.mark.parametrize("bpm", [96.0, 128.0, 174.0])
def test_click_track_has_its_tempo_and_no_key(bpm):
    row = analyze_signal(_clicks(bpm), sr=SR, settings=SETTINGS)
    assert row["bpm"] == pytest.approx(bpm, abs=0.5)
    assert row["bpm_alt"] in (pytest.approx(bpm * 2, rel=0.02), pytest.approx(bpm / 2, rel=0.02))
    assert 0.5 < row["bpm_confidence"] <= 1.0
    assert row["key"] is None and row["key_camelot"] is None and row["key_open"] is None
    assert row["key_confidence"] == 0.0
    assert row["analysis_note"] == "key: no tonal content"
    assert math.isfinite(row["loudness_lufs"])


def test_song_has_tempo_key_and_notations():
    row = analyze_signal(_triad_song(124.0, 220.0, 3), sr=SR, settings=SETTINGS)  # A minor
    assert row["bpm"] == pytest.approx(124.0, abs=0.5)
    assert (row["key"], row["key_camelot"], row["key_open"]) == ("A minor", "8A", "1m")
    assert 0.0 < row["key_confidence"] <= 1.0
    assert row["analysis_note"] is None


def test_tempo_is_folded_into_the_settings_range():
    fast = AnalysisSettings(bpm_min=60.0, bpm_max=120.0)
    row = analyze_signal(_clicks(140.0), sr=SR, settings=fast)
    assert row["bpm"] == pytest.approx(70.0, abs=0.5)


@pytest.mark.parametrize("y,note", [
    (np.zeros(SR * 30, np.float32), "silent"),
    (np.full(SR * 30, 1e-7, np.float32), "silent"),                   # -140 dBFS of DC
    (np.random.default_rng(0).normal(0, 1e-6, SR * 30).astype(np.float32), "silent"),
    (np.zeros(SR // 2, np.float32), "too short"),
    (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32), "too short"),
    (np.zeros(0, np.float32), "too short"),
])
def test_degenerate_signals_give_nan_none_and_a_reason(y, note):
    row = analyze_signal(y, sr=SR, settings=SETTINGS)
    assert math.isnan(row["bpm"]) and math.isnan(row["bpm_alt"]) and row["bpm_confidence"] == 0.0
    assert row["key"] is None and row["key_confidence"] == 0.0
    assert row["analysis_note"] == note


def _noise(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.2, SR * 30).astype(np.float32)


def test_white_noise_has_no_tempo():
    y = _noise()
    row = analyze_signal(y, sr=SR, settings=SETTINGS)
    assert math.isnan(row["bpm"]) and row["bpm_confidence"] == 0.0
    assert row["analysis_note"].startswith("tempo: ")
    assert row["loudness_lufs"] == pytest.approx(integrated_loudness(y, sr=SR, dual_mono=True), abs=0.01)


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_white_noise_has_no_key(seed):
    row = analyze_signal(_noise(seed), sr=SR, settings=SETTINGS)
    assert row["key"] is None and "key: " in row["analysis_note"]


def test_corrupt_samples_do_not_raise():
    y = _clicks(120.0)
    y[1000:1010] = np.nan
    y[5000] = np.inf
    row = analyze_signal(y, sr=SR, settings=SETTINGS)
    assert row["bpm"] == pytest.approx(120.0, abs=0.5)


def test_warm_up_returns_seconds():
    assert 0.0 < warm_up() < 30.0


# -- loudness ------------------------------------------------------------------------------------

def _sine(amplitude: float, freq: float = 997.0, duration_s: float = 5.0, sr: int = SR) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(duration_s * sr)) / sr)


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
def test_loudness_of_the_bs1770_reference_tone(sr):
    # EBU Tech 3341: a 1 kHz sine at -23 dBFS on both channels reads -23.0 LUFS.
    y = _sine(10 ** (-23 / 20), sr=sr)
    assert integrated_loudness(y, sr=sr, dual_mono=True) == pytest.approx(-23.0, abs=0.1)
    assert integrated_loudness(y, sr=sr) == pytest.approx(-26.0, abs=0.1)


def test_loudness_k_weighting_shapes_the_spectrum():
    # The high shelf adds ~4 dB above 2 kHz; the high-pass removes deep bass.
    at_1k = integrated_loudness(_sine(0.1), sr=SR)
    assert integrated_loudness(_sine(0.1, 5000.0), sr=SR) - at_1k == pytest.approx(3.6, abs=0.5)
    assert integrated_loudness(_sine(0.1, 20.0), sr=SR) < at_1k - 10


def test_loudness_gates_silence_and_quiet_parts():
    loud = _sine(0.1, duration_s=10.0)
    with_silence = np.concatenate([loud, np.zeros(SR * 20)])
    with_quiet = np.concatenate([loud, _sine(0.001, duration_s=20.0)])   # -40 dB: below the relative gate
    ref = integrated_loudness(loud, sr=SR)
    assert integrated_loudness(with_silence, sr=SR) == pytest.approx(ref, abs=0.2)
    assert integrated_loudness(with_quiet, sr=SR) == pytest.approx(ref, abs=0.2)


def test_loudness_nan_for_silence_and_short():
    assert math.isnan(integrated_loudness(np.zeros(SR * 3), sr=SR))
    assert math.isnan(integrated_loudness(_sine(0.5, duration_s=0.3), sr=SR))


@hsettings(max_examples=25, deadline=None)
@given(gain_db=st.floats(-40.0, 20.0))
def test_loudness_follows_gain(gain_db):
    y = np.random.default_rng(5).normal(0, 0.05, SR * 2)
    base = integrated_loudness(y, sr=SR)
    assert integrated_loudness(y * 10 ** (gain_db / 20), sr=SR) == pytest.approx(base + gain_db, abs=0.01)


# --- needs_review and weak beats (issue 9) --------------------------------------------------------

def _rubato_chords(seconds: float = 40.0, seed: int = 1) -> np.ndarray:
    """I-IV-V-I in C major, each chord swelling in and out over an irregular 2.5-6 s: music without a beat."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros(t.size)
    chords = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)]
    start, i = 0.0, 0
    while start < seconds:
        d = rng.uniform(2.5, 6.0)
        m = (t >= start) & (t < start + d)
        env = np.sin(np.pi * (t[m] - start) / d)
        for n in chords[i % 4]:
            y[m] += env * np.sin(2 * np.pi * 440 * 2 ** ((n - 69) / 12) * t[m])
        start, i = start + d, i + 1
    return (0.1 * y).astype(np.float32)


def test_needs_review_is_a_bool_and_false_for_a_clear_song():
    row = analyze_signal(_triad_song(124.0, 220.0, 3), sr=SR, settings=SETTINGS)
    assert row["needs_review"] is False
    assert row["bpm"] == pytest.approx(124.0, abs=0.1) and row["key"] == "A minor"


def test_music_without_a_beat_still_gets_a_bpm_with_low_confidence_and_review():
    row = analyze_signal(_rubato_chords(), sr=SR, settings=SETTINGS)
    assert row["key"] == "C major"
    assert math.isfinite(row["bpm"]) and 78.0 <= row["bpm"] <= 180.0
    assert 0.0 < row["bpm_confidence"] <= 0.1
    assert row["needs_review"] is True and row["analysis_note"] is None


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_stays_empty_and_is_not_flagged(seed):
    y = (0.1 * np.random.default_rng(seed).standard_normal(30 * SR)).astype(np.float32)
    row = analyze_signal(y, sr=SR, settings=SETTINGS)
    assert math.isnan(row["bpm"]) and row["key"] is None
    assert row["needs_review"] is False and "no periodic onsets" in row["analysis_note"]


def test_needs_review_flags_an_octave_toss_up_and_a_weak_key():
    from crate_dask.features.signal import needs_review

    clear = {"bpm": 128.0, "bpm_confidence": 0.9, "key": "A minor", "key_confidence": 0.8}
    assert not needs_review(clear, octave_ratio=0.2, key_agreement=1.0)
    assert needs_review(clear, octave_ratio=0.95, key_agreement=1.0)
    assert needs_review({**clear, "key_confidence": 0.05})
    assert needs_review(clear, key_agreement=0.25)
    assert not needs_review({"bpm": math.nan, "bpm_confidence": 0.0, "key": None, "key_confidence": 0.0})
