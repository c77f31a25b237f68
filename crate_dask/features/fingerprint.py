"""An audio fingerprint of a decoded excerpt, for finding the same recording in other files.

Pure numpy/scipy, computed from the signal the analysis has already decoded (no
second decode). The fingerprint is a few hundred bytes:

* a *profile*: the average log-energy difference between 33 adjacent bands
  (300-3000 Hz) as 32 float16 values, a coarse spectral shape used to find
  candidates quickly (nearest neighbours);
* *frame bits*: for about 24 s around the middle of the excerpt, every 0.19 s,
  32 bits saying whether each band difference is above its average over the
  excerpt (in the spirit of Haitsma & Kalker 2002). Band *differences* in log
  energy ignore gain and smooth equalisation; averaging over 0.37 s windows
  makes the bits survive lossy codecs and a frame grid shifted by trimmed
  silence.

Two files hold the same recording when the bit error rate of their frame bits,
at the best time shift, is far below the 0.5 of unrelated audio
(:func:`bit_error_rate`, :data:`SAME_RECORDING_BER`).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> sr = 22050
>>> y = rng.standard_normal(30 * sr).astype(np.float32) * np.repeat(rng.random(150), sr // 5)
>>> fp = fingerprint(y, sr)
>>> len(fp) == HEADER_BYTES + 4 * FRAMES
True
>>> bit_error_rate(fp, fingerprint(y[sr:] * 0.5, sr)) < SAME_RECORDING_BER     # quieter, 1 s trimmed
True
>>> bit_error_rate(fp, fingerprint(rng.standard_normal(30 * sr).astype(np.float32), sr)) > 0.3
True
"""

from __future__ import annotations

import numpy as np
import scipy.fft   # keeps float32 (numpy's FFT computes in float64: 6x slower here)

__all__ = ["fingerprint", "profile", "bit_error_rate", "SAME_RECORDING_BER", "FRAMES", "HEADER_BYTES"]

BANDS = 33                 #: band edges give 32 adjacent differences = one uint32 per frame
FRAMES = 128               #: frames kept around the middle (about 24 s)
HEADER_BYTES = 2 * (BANDS - 1)
FRAME_S = 0.372            #: analysis window (s): long enough that a shifted grid barely changes it
HOP_S = FRAME_S / 2
F_LO, F_HI = 300.0, 3000.0  # where every codec and bitrate keeps the music intact
MIN_SECONDS = 4.0
WINDOW_S = 40.0            #: seconds around the middle that are analysed (the frames kept plus shift room)
#: Bit error rate under which two fingerprints are the same recording (unrelated audio: about 0.5;
#: re-encodings measured in benchmarks/duplicates.py stay under 0.2).
SAME_RECORDING_BER = 0.3
MAX_SHIFT = 24             #: frames of time shift tried when comparing (about 4.5 s)
MIN_OVERLAP = 48


def fingerprint(y: np.ndarray, sr: int) -> bytes | None:
    """The fingerprint of a mono signal, or ``None`` when it is too short or silent to tell.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio, as decoded for the analysis.
    sr : int
        Sample rate of ``y``.

    Returns
    -------
    bytes or None
        ``HEADER_BYTES`` of profile (float16) then up to ``FRAMES`` little-endian uint32 frame words.

    Examples
    --------
    >>> import numpy as np
    >>> fingerprint(np.zeros(22050 * 10, np.float32), 22050) is None
    True
    """
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if len(y) < MIN_SECONDS * sr or not np.any(np.abs(y) > 1e-4):
        return None
    keep = int(WINDOW_S * sr)
    if len(y) > keep:                                    # only the middle is kept: no need to transform more
        y = y[(len(y) - keep) // 2:][:keep]
    win = int(2 ** np.ceil(np.log2(FRAME_S * sr)))
    hop = max(1, int(round(HOP_S * sr)))
    n = 1 + (len(y) - win) // hop
    if n < 8:
        return None
    freqs = np.fft.rfftfreq(win, 1.0 / sr)
    edges = np.geomspace(F_LO, min(F_HI, sr / 2 * 0.95), BANDS + 1)
    band = np.digitize(freqs, edges) - 1                 # -1 / BANDS: outside the range
    cols = np.flatnonzero((band >= 0) & (band < BANDS))
    to_bands = np.zeros((len(cols), BANDS), np.float32)
    to_bands[np.arange(len(cols)), band[cols]] = 1.0
    frames_view = np.lib.stride_tricks.sliding_window_view(y, win)[::hop][:n]
    spec = scipy.fft.rfft(frames_view * np.hanning(win).astype(np.float32), axis=1)[:, cols]
    energy = (spec.real ** 2 + spec.imag ** 2).astype(np.float32) @ to_bands
    loud = energy.sum(axis=1) > 1e-10 * win
    if loud.sum() < 8:
        return None
    # A floor 40 dB under each frame's total keeps nearly empty bands (tonal or band-limited audio) from
    # turning codec noise into bits.
    e = np.log10(energy + 1e-4 * energy.sum(axis=1, keepdims=True) + 1e-12)
    d = e[:, :-1] - e[:, 1:]                             # (n, 32): gain-free spectral shape per frame
    prof = d[loud].mean(axis=0)
    mid = n // 2
    lo = max(0, mid - FRAMES // 2)
    frames = d[lo:lo + FRAMES] > prof                    # the bits: shape above or below its average
    words = np.packbits(frames, axis=1, bitorder="little").view("<u4").reshape(-1)
    return prof.astype("<f2").tobytes() + words.astype("<u4").tobytes()


def profile(fp: bytes) -> np.ndarray:
    """The coarse spectral profile of a fingerprint (32 floats), for nearest-neighbour candidates."""
    return np.frombuffer(fp[:HEADER_BYTES], dtype="<f2").astype(np.float32)


def _bits(fp: bytes) -> np.ndarray:
    words = np.frombuffer(fp[HEADER_BYTES:], dtype="<u4")
    return np.unpackbits(words.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little").astype(bool)


def bit_error_rate(a: bytes, b: bytes, *, max_shift: int = MAX_SHIFT) -> float:
    """The smallest fraction of differing frame bits of two fingerprints over time shifts.

    1.0 when either is missing or they overlap too little to compare.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(1).standard_normal(22050 * 20).astype(np.float32)
    >>> bit_error_rate(fingerprint(y, 22050), fingerprint(y, 22050))
    0.0
    >>> bit_error_rate(None, fingerprint(y, 22050))
    1.0
    """
    if not a or not b:
        return 1.0
    x, y = _bits(a), _bits(b)
    best = 1.0
    for s in range(-max_shift, max_shift + 1):
        xa, ya = (x[s:], y) if s >= 0 else (x, y[-s:])
        m = min(len(xa), len(ya))
        if m < min(MIN_OVERLAP, len(x), len(y)) or m == 0:
            continue
        best = min(best, float(np.mean(xa[:m] != ya[:m])))
    return best
