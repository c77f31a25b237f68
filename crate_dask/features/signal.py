"""Pure glue from a decoded excerpt to the audio columns of a result row.

:func:`analyze_signal` runs the tempo, key and loudness estimators on one mono
signal and returns exactly the schema's audio columns (except ``analysis_s``,
which the stage that times the work fills in). No I/O, no dask: a degenerate
signal (silence, noise, a two-second clip) is valid input whose answer is
NaN/None plus a reason in ``analysis_note``.

>>> import numpy as np
>>> from crate_dask.config import AnalysisSettings
>>> row = analyze_signal(np.zeros(22050 * 10, np.float32), sr=22050, settings=AnalysisSettings())
>>> row["bpm"], row["key"], row["analysis_note"]
(nan, None, 'silent')
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from crate_dask.config import AnalysisSettings
from crate_dask.features.beats import estimate_beat_grid
from crate_dask.features.fingerprint import fingerprint
from crate_dask.features.key import estimate_key
from crate_dask.features.loudness import integrated_loudness
from crate_dask.features.tempo import estimate_tempo
from crate_dask.schema import AUDIO_COLUMNS

__all__ = ["analyze_signal", "warm_up", "COLUMNS", "needs_review"]

#: The columns :func:`analyze_signal` returns, in schema order (the stage adds the timing and the
#: decoder's gapless delay, facts of the file rather than of the signal).
COLUMNS: list[str] = [c for c in AUDIO_COLUMNS if c not in ("analysis_s", "gapless_delay_s")]

#: Confidence of a tempo that failed the noise test but belongs to tonal music (a beat is there, weakly).
WEAK_BPM_CONFIDENCE = 0.05
#: needs_review thresholds (README, "Accuracy"): below these a value is wrong often enough to check by ear.
REVIEW_BPM_CONFIDENCE = 0.3
REVIEW_OCTAVE_RATIO = 0.8
REVIEW_KEY_CONFIDENCE = 0.2
# With the key read from windows across the track (README, "Accuracy"): at least two thirds of their
# tonal mass, counted by quarters of the track, must hold the key. On 47 real full-length tracks a key
# that held in every quarter agreed with the whole track on 15/15; with the flag for either value,
# 21/23 unflagged rows and 20/24 flagged ones agreed (benchmarks/accuracy.py --stability).
REVIEW_KEY_AGREEMENT = 2 / 3


def analyze_signal(y: np.ndarray, *, sr: int, settings: AnalysisSettings, offset_s: float = 0.0,
                   key_windows: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    """Estimate tempo, key, beat grid and loudness of a mono excerpt.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio (an :class:`crate_dask.library.audio.Excerpt`'s ``y``).
    sr : int
        Sample rate of ``y`` (at least 8000 Hz).
    settings : AnalysisSettings
        ``bpm_min``/``bpm_max`` (the octave the tempo is folded into) and ``key_profile``.
    offset_s : float
        Where ``y`` starts in the file (the excerpt's ``offset_s``): the grid is in file time.
    key_windows : sequence of np.ndarray
        Short windows spread evenly over the whole track (the excerpt's ``key_windows``): when given,
        the key is read from them alone, else from ``y``; tempo, grid and loudness from ``y``.

    Returns
    -------
    dict
        ``bpm, bpm_alt, bpm_confidence, key, key_camelot, key_open, key_confidence,
        beat_offset_s, downbeat_offset_s, needs_review, loudness_lufs, analysis_note, fingerprint``. Without a
        tempo the bpm fields are NaN, without a key
        the key fields are None; ``analysis_note`` says why (``"silent"``, ``"too short"``,
        ``"tempo: no periodic onsets; key: no tonal content"``) and is None when both were found.
        Tonal music whose beat is too weak for the noise test (a chorale, a rubato ballad) still gets
        the best-fitting tempo, at confidence ``WEAK_BPM_CONFIDENCE``. ``needs_review`` is True
        when a value that was found is likely wrong (see :func:`needs_review`).

    Raises
    ------
    crate_dask.errors.ParameterError
        Only for invalid arguments (``sr`` below 8000 Hz, unknown key profile), never for the
        content of ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from crate_dask.config import AnalysisSettings
    >>> sr = 22050
    >>> y = np.zeros(20 * sr, np.float32)
    >>> for t in np.arange(0, 19.5, 60 / 124):   # a click every beat at 124 BPM
    ...     y[int(t * sr):int(t * sr) + 200] = 0.5
    >>> row = analyze_signal(y, sr=sr, settings=AnalysisSettings())
    >>> round(row["bpm"]), row["key"], row["analysis_note"]
    (124, None, 'key: no tonal content')
    """
    y = _as_mono_float(y)
    tempo = estimate_tempo(y, sr=sr, bpm_range=_bpm_range(settings))
    key = estimate_key([_as_mono_float(w) for w in key_windows] if len(key_windows) else y,
                       sr=sr, profile=settings.key_profile)
    lufs = integrated_loudness(y, sr=sr, dual_mono=True)
    bpm, bpm_alt, bpm_conf, tempo_note = tempo.bpm, tempo.bpm_alt, tempo.confidence, tempo.note
    weak = tempo.note == "no periodic onsets" and key.key is not None and math.isfinite(tempo.weak_bpm)
    if weak:
        # Noise has no key; music with a key but a beat too weak for the noise test is still music.
        bpm, bpm_conf, tempo_note = tempo.weak_bpm, WEAK_BPM_CONFIDENCE, None
        low, high = _bpm_range(settings)
        bpm_alt = bpm * 2.0 if bpm * 2.0 <= high else bpm / 2.0
    # The grid is fitted with the rounded BPM that is stored and exported, so that the DJ
    # software's grid (anchor + k * 60 / bpm) lands on the beats where they were measured.
    bpm = round(float(bpm), 2)
    grid = estimate_beat_grid(y, sr=sr, bpm=bpm, offset_s=offset_s)
    row = {
        "bpm": bpm,                           # sub-BPM precision is what the estimator resolves
        "bpm_alt": round(float(bpm_alt), 2),
        "bpm_confidence": round(float(bpm_conf), 4),
        "key": key.key,
        "key_camelot": key.camelot,
        "key_open": key.open_key,
        "key_confidence": round(float(key.confidence), 4),
        "needs_review": False,
        "beat_offset_s": round(grid.beat_offset_s, 4),
        "downbeat_offset_s": round(grid.downbeat_offset_s, 4),
        "loudness_lufs": round(lufs, 2) if math.isfinite(lufs) else math.nan,
        "analysis_note": _join_notes(tempo_note, key.note),
        "fingerprint": fingerprint(y, sr),          # same decode: finds re-encodings (explore/duplicates.py)
    }
    row["needs_review"] = needs_review(row, octave_ratio=0.0 if weak else tempo.octave_ratio,
                                       key_agreement=getattr(key, "agreement", 1.0))
    return row


def needs_review(row: dict[str, Any], *, octave_ratio: float = 0.0, key_agreement: float = 1.0) -> bool:
    """True when a bpm or key that was found is likely wrong.

    A bpm is flagged when its confidence is below ``REVIEW_BPM_CONFIDENCE`` (weak or irregular beat,
    or a competing octave almost as salient) or when the runner-up octave in range scores at least
    ``REVIEW_OCTAVE_RATIO`` of the chosen one (a toss-up between e.g. 85 and 170). A key is flagged
    when its confidence (margin over the runner-up key) is below ``REVIEW_KEY_CONFIDENCE`` or when
    fewer than ``REVIEW_KEY_AGREEMENT`` of the track's quarters (as sampled by the key windows) have
    that key on their own. Missing values are not flagged: they carry
    ``analysis_note`` instead.

    >>> needs_review({"bpm": 128.0, "bpm_confidence": 0.9, "key": "A minor", "key_confidence": 0.6})
    False
    >>> needs_review({"bpm": 87.0, "bpm_confidence": 0.9, "key": None, "key_confidence": 0.0}, octave_ratio=0.95)
    True
    """
    bpm_found = isinstance(row.get("bpm"), float) and math.isfinite(row["bpm"])
    bpm_doubt = bpm_found and (row["bpm_confidence"] < REVIEW_BPM_CONFIDENCE or octave_ratio >= REVIEW_OCTAVE_RATIO)
    key_doubt = row.get("key") is not None and (row["key_confidence"] < REVIEW_KEY_CONFIDENCE
                                                or key_agreement < REVIEW_KEY_AGREEMENT)
    return bool(bpm_doubt or key_doubt)


def warm_up(*, sr: int = 22050, settings: AnalysisSettings | None = None) -> float:
    """Run :func:`analyze_signal` once on a few seconds of synthetic music; return the seconds taken.

    Called when a worker starts, so that lazy imports, FFT plans and caches are
    ready before the first real file (whose ``analysis_s`` would otherwise
    include them).

    Examples
    --------
    >>> warm_up() < 30
    True
    """
    t0 = time.perf_counter()
    n = int(6 * sr)
    t = np.arange(n) / sr
    # An A minor triad over a kick every half second: exercises every estimator's full path.
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63)) * 0.1
    beat = np.arange(0, n, sr // 2)
    for b in beat:
        y[b:b + 400] += np.hanning(800)[400:]
    analyze_signal(y.astype(np.float32), sr=sr, settings=settings or AnalysisSettings())
    return time.perf_counter() - t0


def _as_mono_float(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2:  # (channels, n) as librosa gives it: a caller convenience, not an error
        y = y.mean(axis=0)
    y = np.ascontiguousarray(y.reshape(-1), dtype=np.float32)
    if not np.isfinite(y).all():
        # A few corrupt samples must not cost the whole row.
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    return y


def _bpm_range(settings: AnalysisSettings) -> tuple[float, float]:
    # The settings accept a range 1 % short of an octave; the estimator needs a full one.
    lo = float(settings.bpm_min)
    return lo, max(float(settings.bpm_max), 2.0 * lo)


def _join_notes(tempo_note: str | None, key_note: str | None) -> str | None:
    if tempo_note == key_note:
        return tempo_note                       # "silent", "too short" or None
    parts = [f"tempo: {tempo_note}" if tempo_note else None, f"key: {key_note}" if key_note else None]
    return "; ".join(p for p in parts if p)
