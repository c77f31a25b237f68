"""Beat grid: phase of the first beat on signals with known beats, through real encoders and the project's decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crate_dask.config import AnalysisSettings
from crate_dask.demo import write_audio
from crate_dask.features.beats import beat_phase_error, estimate_beat_grid
from crate_dask.features.signal import analyze_signal
from crate_dask.library.audio import load_excerpt
from crate_dask.synth import drum_pattern, track

SR = 22050


def clicks(bpm: float, seconds: float, first: float, sr: int = SR) -> np.ndarray:
    y = np.zeros(int(seconds * sr), np.float32)
    for t in np.arange(first, seconds - 0.1, 60 / bpm):
        i = int(round(t * sr))
        y[i:i + 80] = 0.7
    return y


@pytest.mark.parametrize("bpm,first", [(128.0, 0.0), (97.3, 0.21), (174.0, 0.333)])
def test_click_phase_within_5ms(bpm, first):
    g = estimate_beat_grid(clicks(bpm, 30, first), sr=SR, bpm=bpm)
    assert beat_phase_error(g.beat_offset_s, first, bpm) < 0.005
    assert 0 <= g.beat_offset_s < 60 / bpm


def test_drum_pattern_phase_with_offbeat_hats_and_excerpt_offset():
    # Off-beat hats must not pull the grid half a beat off; the excerpt offset is added back.
    bpm, lead = 131.0, 1.7
    y = np.concatenate([np.zeros(int(lead * SR), np.float32), drum_pattern(bpm=bpm, seconds=40, sr=SR, seed=3)])
    off = 11.0
    g = estimate_beat_grid(y[int(off * SR):], sr=SR, bpm=bpm, offset_s=off)
    assert beat_phase_error(g.beat_offset_s, lead, bpm) < 0.010


def test_downbeat_told_when_chords_change_on_the_bar_and_not_on_a_plain_loop():
    bpm, lead = 122.0, 0.9
    y = np.concatenate([np.zeros(int(lead * SR), np.float32),
                        track(bpm=bpm, key="D minor", seconds=80, sr=SR, seed=2)])
    g = estimate_beat_grid(y, sr=SR, bpm=bpm)
    bar = 4 * 60 / bpm
    assert math.isfinite(g.downbeat_offset_s)
    assert beat_phase_error(g.downbeat_offset_s, lead, bpm / 4) < 0.010
    assert 0 <= g.downbeat_offset_s < bar
    # A click on every beat, all alike: no beat of the bar stands out.
    assert math.isnan(estimate_beat_grid(clicks(bpm, 40, lead), sr=SR, bpm=bpm).downbeat_offset_s)


@pytest.mark.parametrize("ext", ["mp3", "m4a", "flac"])
def test_phase_through_encoder_delay(tmp_path, ext):
    # MP3 (LAME, with its gapless header) and AAC (priming samples, edit list) shift the decoded
    # audio unless the decoder removes the delay; the grid must land on the beats as encoded.
    bpm, lead, sr = 126.0, 0.61, 44100
    y = np.concatenate([np.zeros(int(lead * sr), np.float32), drum_pattern(bpm=bpm, seconds=70, sr=sr, seed=1)])
    p = tmp_path / f"beats.{ext}"
    write_audio(p, y * 0.8, sr)
    ex = load_excerpt(p, sr=SR, excerpt_s=30.0)       # from the middle: the seek must keep file time
    assert ex.offset_s > 10
    # What the decoder skipped per the LAME header (rekordbox does not skip it); AAC/FLAC: nothing.
    assert round(ex.gapless_delay_s * sr) == (576 + 529 if ext == "mp3" else 0)
    row = analyze_signal(ex.y, sr=ex.sr, settings=AnalysisSettings(), offset_s=ex.offset_s)
    assert abs(row["bpm"] - bpm) < 0.1
    assert beat_phase_error(row["beat_offset_s"], lead, bpm) < 0.010


def test_no_grid_without_tempo():
    assert math.isnan(estimate_beat_grid(clicks(120, 30, 0), sr=SR, bpm=math.nan).beat_offset_s)
    assert math.isnan(estimate_beat_grid(np.zeros(SR * 10, np.float32), sr=SR, bpm=120.0).beat_offset_s)
    assert math.isnan(estimate_beat_grid(clicks(120, 2, 0), sr=SR, bpm=120.0).beat_offset_s)
    row = analyze_signal(np.zeros(SR * 10, np.float32), sr=SR, settings=AnalysisSettings())
    assert math.isnan(row["beat_offset_s"]) and math.isnan(row["downbeat_offset_s"])
