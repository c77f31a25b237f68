"""Synthetic music with known answers: drum patterns at a known tempo, chords in a known key.

Pure numpy; used by the demo library and by tests. Not meant to sound good,
meant to have an unambiguous tempo and key.

>>> y = drum_pattern(bpm=128.0, seconds=4.0, sr=22050)
>>> y.dtype, y.shape
(dtype('float32'), (88200,))
"""

from __future__ import annotations

import numpy as np

PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def _env(n: int, sr: int, decay_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay_s * sr)).astype(np.float32)


def drum_pattern(*, bpm: float, seconds: float, sr: int = 22050, seed: int = 0, hats: bool = True) -> np.ndarray:
    """Four-on-the-floor kick, snare on 2 and 4, off-beat hats, at exactly ``bpm``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n, np.float32)
    beat = 60.0 / bpm
    kick_n = int(0.25 * sr)
    t = np.arange(kick_n) / sr
    kick = (np.sin(2 * np.pi * (50 + 80 * np.exp(-t * 30)) * t) * _env(kick_n, sr, 0.08)).astype(np.float32)
    snare_n = int(0.15 * sr)
    snare = (rng.standard_normal(snare_n).astype(np.float32) * _env(snare_n, sr, 0.04) * 0.5)
    hat_n = int(0.05 * sr)
    hat = np.diff(rng.standard_normal(hat_n + 1)).astype(np.float32) * _env(hat_n, sr, 0.01) * 0.15
    k = 0
    while True:
        start = k * beat
        i = int(round(start * sr))
        if i >= n:
            break
        _add(y, kick, i)
        if k % 2 == 1:
            _add(y, snare, i)
        if hats:
            _add(y, hat, int(round((start + beat / 2) * sr)))
        k += 1
    return y


def chord_progression(*, key: str, seconds: float, sr: int = 22050, bpm: float = 120.0) -> np.ndarray:
    """Sustained triads (I-IV-V-I or i-iv-V-i) with harmonic partials in ``key`` ("A minor", "F# major")."""
    tonic_name, mode = key.split()
    tonic = PITCH_CLASSES.index(tonic_name)
    minor = mode == "minor"
    third = 3 if minor else 4
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)]
    n = int(seconds * sr)
    y = np.zeros(n, np.float32)
    bar = int(4 * 60.0 / bpm * sr)
    t = np.arange(bar) / sr
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02).astype(np.float32)
    for b, i in enumerate(range(0, n, bar)):
        seg = np.zeros(bar, np.float32)
        for iv in chords[b % len(chords)]:
            f0 = 220.0 * 2 ** ((tonic - 9 + iv) / 12)   # around A3
            for h in range(1, 5):
                seg += (0.12 / h) * np.sin(2 * np.pi * f0 * h * t).astype(np.float32)
        _add(y, seg * fade, i)
    return y


def track(*, bpm: float, key: str, seconds: float, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """Drums plus chords: a tiny 'track' with a known tempo and key, peak-normalised to -1 dBFS."""
    y = drum_pattern(bpm=bpm, seconds=seconds, sr=sr, seed=seed) + chord_progression(
        key=key, seconds=seconds, sr=sr, bpm=bpm)
    return (y / max(float(np.abs(y).max()), 1e-9) * 0.89).astype(np.float32)


def _add(y: np.ndarray, x: np.ndarray, i: int) -> None:
    if i < 0 or i >= len(y):
        return
    m = min(len(x), len(y) - i)
    y[i:i + m] += x[:m]
