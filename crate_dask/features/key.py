"""Global musical key of a mono excerpt: a fast peak-based chroma matched against key profiles.

Pure numpy/scipy (no librosa, no numba) so that a fresh worker pays no JIT compile cost.

Method
------
1. Frames of ~0.37 s (4096 points at 11025 Hz, 8192 at 22050 Hz), half overlapping, at most
   ``_MAX_FRAMES_ONE`` of them spread over one excerpt. The input may be several segments (the
   pipeline passes 48 windows of 1 s centred evenly over the whole track, or one per 5 s of a longer
   track up to 96, those inside the tempo excerpt cut from it): each gets an equal share of
   ``_MAX_FRAMES``, so the key is that of an even sample of the whole track rather than of its middle.
2. Spectral peaks between 50 Hz and 2 kHz that stand out of their neighbourhood (a local power
   maximum ``_PROMINENCE`` times above the local mean): drums and noise make few such peaks, so
   they barely count. Peak frequencies are refined by parabolic interpolation.
3. Tuning: the amplitude-weighted circular mean of the peaks' deviation from equal temperament
   (A4 = 440 Hz), so a track tuned to 432 or 446 Hz is read correctly.
4. Each peak adds its compressed amplitude (log, relative to the frame's loudest peak) to its pitch
   class with a cosine-squared weight on the distance to the nearest semitone, and less to the
   pitch classes of f/2 and f/3 (harmonic weighting: a partial is evidence for its fundamental).
   Frames are summed into one 12-bin chroma.
5. The chroma is correlated (Pearson) with the 24 rotations of a major and a minor key profile;
   the best rotation is the key. Confidence is the product of the share of the track's quarters
   (``N_WINDOWS`` consecutive groups of the segments; of one excerpt: its consecutive ~22 s
   windows) that have that key on their own (``Key.agreement``:
   low for modulating or ambiguous music), of how well the chroma fits the profile (the best
   correlation, 0 at 0.6, 1 at 1) and, more weakly, of the margin over the second-best key.

Choice by measurement
---------------------
Where the key is read (issue 9): ``benchmarks/tune_key_windows.py MUSIC_DIR``, the key of
a layout of windows against the key of the whole track, 47 real full-length tracks (3-14 min): the
middle 90 s alone 0.660; the same 90 s plus 2 x 15 s at 15/85 % 0.766 (ANALYSIS_VERSION 3); 48
windows of 1 s centred evenly over the track, 0.85-0.94 over three placements of the grid (the
default). Most of these tracks are long game-soundtrack pieces that change key: 2 x 15 s sample too
little of them, and a short window every 2 % of the track samples all of it for about the same
decoding (those in the middle 90 s are free). Over 20 placements of each grid
(``tune_key_windows.py MUSIC_DIR --placements 20``) 48 windows agree with the whole track on 40.7 of
47 tracks (86 %) on average, one per 5 s of a track longer than 4 minutes, up to 96, on 42.6 (91 %;
ANALYSIS_VERSION 6): a 4-minute track decodes what it did. README, "Accuracy", has the tables and the
pipeline's figures.

Against two peers (issue 9): ``benchmarks/accuracy.py DIR --direct --peer-keys CSV``, the key scored
against the key on which Essentia's KeyExtractor (bgate) and madmom's CNN model agree
(``benchmarks/peer_keys.py``), 55 of dev-real's 70 real recordings: this peak chroma with braw 0.896
(MIREX), an STFT chroma (Ellis's filterbank, as librosa's ``chroma_stft``) with braw 0.776, with bgate
0.796. The STFT chroma's lead on the 6 GTZAN labels (0.833 against 0.583) does not carry over to the
larger set, where both peers score 0.42-0.55 on those 6 themselves.

Issue 9 (real recordings): ``benchmarks/tune_key_real.py --labelled ../shared/eval/dev-real
../shared/eval/dev --stability MUSIC_DIR``: MIREX score on the 6 keyed GTZAN excerpts of dev-real
and the 20 rendered chorales of dev, and the label-free agreement of the default 90 s excerpt with
the whole track on 47 real full-length game-soundtrack tracks (``benchmarks/get_real_music.sh``).
Means over 13 chroma settings (fmin 30/50/80, fmax 1000/2000/3500, 1/3/5 harmonics, compression
1/10/100, 160/320/640 frames, prominence 2/4/8; one changed at a time):

==========  =======  ============  =============
profile     chorale  GTZAN (6)     excerpt=whole
==========  =======  ============  =============
braw        0.926    0.665         0.673
bgate       0.924    0.501         0.712
shaath      0.911    0.558         0.676
krumhansl   0.920    0.549         0.655
edma        0.850    0.532         0.682
kostka      0.905    0.404         0.666
==========  =======  ============  =============

Faraldo's *braw* profiles (pitch-class statistics of a corpus of real electronic music, before
the gating that gives *bgate*; as shipped in Essentia's KeyEDM) lead on both labelled sets with the
default chroma (chorale 0.940, GTZAN 0.583) and match the others on stability, so they are
``"auto"``. Only 6 real key labels exist here: one track moves the GTZAN column by 0.17, so the
choice leans on the chorales and on the stability check as much as on GTZAN; no chroma setting
raised stability above 0.75 for any profile (the excerpt and the whole track often hold different
music), which is why low agreement between windows lowers the confidence and sets ``needs_review``.

Before issue 9 (rendered and generated material only):
``benchmarks/tune_key.py DEV POP CLASSICAL --grid``, MIREX weighted score (mir_eval), 81 keyed items:
20 dev-set Bach chorales, 48 generated pop/EDM-style loops with drums in all 24 keys and 13 music21
classical openings (4 with drums), from ``benchmarks/make_key_corpus.py``:

==========  =====  =======  =====  ==========  ==========================
profile     all    chorale  pop    classical   mean over 24 chroma settings
==========  =====  =======  =====  ==========  ==========================
krumhansl   0.879  0.950    0.838  0.923       0.828
temperley   0.841  0.835    0.840  0.854       0.841
kostka      0.875  0.905    0.869  0.854       0.879
shaath      0.901  0.950    0.865  0.961       0.863
edma        0.849  0.855    0.838  0.884       0.781
bgate       0.874  0.950    0.844  0.869       0.867
==========  =====  =======  =====  ==========  ==========================

Shaath's profiles (Krumhansl's, retuned for popular and electronic music) are best with the chosen
chroma (50-2000 Hz, log compression 10, 3 harmonics) and near the top across settings, so they are
``"auto"``. Harmonic weighting helped every profile (+0.02 to +0.08); a band above 2 kHz and a boosted
bass band did not. Faraldo's edma was the weakest here, which may reflect synthetic material.
Most remaining errors are minor keys read as their relative major.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.fft
from scipy.ndimage import uniform_filter1d

from crate_dask.errors import ParameterError
from crate_dask.features.notation import PITCH_CLASSES, to_camelot, to_open_key

# Major and minor profiles, tonic first (published values).
PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # Krumhansl & Kessler 1982, probe-tone ratings
    "krumhansl": ((6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
                  (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)),
    # Temperley 1999, "What's key for key?"
    "temperley": ((5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0),
                  (5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0)),
    # Temperley 2007, Kostka-Payne corpus counts
    "kostka": ((0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400),
               (0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330)),
    # Shaath 2011, Krumhansl tuned for popular and electronic music
    "shaath": ((6.6, 2.0, 3.5, 2.3, 4.6, 4.0, 2.5, 5.2, 2.4, 3.7, 2.3, 3.4),
               (6.5, 2.7, 3.5, 5.4, 2.6, 3.5, 2.5, 5.2, 4.0, 2.7, 4.3, 3.2)),
    # Faraldo et al. 2016, "Key estimation in electronic dance music": edma (automatic)
    "edma": ((0.16519551, 0.04749026, 0.08293076, 0.06687112, 0.09994645, 0.09274123,
              0.05294487, 0.13159476, 0.05218986, 0.07443653, 0.06940723, 0.0642515),
             (0.17235348, 0.05336489, 0.0761009, 0.10043649, 0.05621498, 0.08527853,
              0.0497915, 0.13451001, 0.07458916, 0.05003023, 0.09187879, 0.05545106)),
    # bgate, an EDM-oriented profile set from Faraldo's work as shipped with Essentia
    "bgate": ((1.00, 0.00, 0.42, 0.00, 0.53, 0.37, 0.00, 0.77, 0.00, 0.38, 0.21, 0.30),
              (1.00, 0.00, 0.36, 0.39, 0.00, 0.38, 0.00, 0.74, 0.27, 0.00, 0.42, 0.23)),
    # braw: the same corpus statistics before gating out the non-diatonic degrees (Essentia KeyEDM)
    "braw": ((1.0000, 0.1573, 0.4200, 0.1570, 0.5296, 0.3669, 0.1632, 0.7711, 0.1676, 0.3827, 0.2113, 0.2965),
             (1.0000, 0.2330, 0.3615, 0.3905, 0.2925, 0.3777, 0.1961, 0.7425, 0.2701, 0.2161, 0.4228, 0.2272)),
}
AUTO_PROFILE = "braw"
#: Profiles whose correlations are averaged by ``profile="ensemble"``.
ENSEMBLE = ("shaath", "kostka", "bgate")

MIN_DURATION_S = 3.0
#: Parts whose keys are compared for ``Key.agreement``: consecutive windows of a single excerpt, or
#: consecutive groups of several segments (the quarters of the track the key windows sample).
N_WINDOWS = 4
_WINDOW_S = 20.0           # shortest window: a few bars, long enough to hold more than one chord
_SILENCE_RMS = 10 ** (-70 / 20)
_FMIN, _FMAX = 50.0, 2000.0
_MAX_FRAMES = 640          # over several segments (the key windows): 48 x 1 s hold 192, 96 x 1 s 384
#: Over one segment (an excerpt, or a whole track with ``excerpt_s`` unset): every frame of up to ~5 min
#: of audio. Fewer, spread over a whole track, gave another key than all of its frames on 3 of 47 tracks.
_MAX_FRAMES_ONE = 1600
_PROMINENCE = 4.0          # peak power over local mean power (6 dB)
_MIN_TONAL = 0.10          # tonal share of band power; white noise scores ~0.075, music >= 0.2
#: Between noise's tonal share (0.064-0.076) and ``_MIN_TONAL``, a chroma that fits a key profile this well
#: is music: noise fits at most 0.60 and the dev set's drum loops in that band at most 0.79, while a real
#: track under heavy drums read 0.085 / 0.91 from its key windows (README, "Accuracy").
_MIN_TONAL_FITTED = 0.06
_STRONG_FIT = 0.85
_MIN_CORR = 0.35           # best profile correlation below which the chroma is not key-like
_FIT_FLOOR = 0.6           # best correlation at which the confidence reaches 0 (real excerpts: 0.5-0.95)


@dataclass(frozen=True)
class Key:
    """A key estimate; every field is None (confidence 0) when there is no key, with ``note`` saying why."""

    key: str | None
    camelot: str | None
    open_key: str | None
    confidence: float
    note: str | None = None
    #: Share of the ``N_WINDOWS`` parts (of one excerpt: consecutive windows; of several segments:
    #: consecutive groups of them), weighted by their tonal mass, whose own best key is ``key``: 1 for
    #: a key that holds throughout, low for modulating or ambiguous music.
    agreement: float = 0.0

    @classmethod
    def none(cls, note: str) -> "Key":
        """The answer for audio without a key."""
        return cls(None, None, None, 0.0, note)


def estimate_key(y: np.ndarray | Sequence[np.ndarray], *, sr: float, profile: str = "auto") -> Key:
    """Estimate the global key of a mono excerpt.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)] or sequence of them
        Mono audio, typically 60-120 s from the middle of a track, or several segments of one
        track (windows from across it), each given the same weight.
    sr : float >= 8000
        Sample rate of ``y``.
    profile : str
        ``"auto"`` (the measured best, currently ``AUTO_PROFILE``), ``"ensemble"`` (mean correlation
        over ``ENSEMBLE``) or a name in ``PROFILES``.

    Returns
    -------
    Key
        ``key`` such as ``"A minor"`` with Camelot and Open Key codes and a confidence in [0, 1];
        or key None with ``note`` ``"silent"``, ``"too short"`` or ``"no tonal content"``.

    Raises
    ------
    ParameterError
        ``y`` is not a finite 1-D array, ``sr`` is below 8000 Hz or ``profile`` is unknown.

    Examples
    --------
    >>> sr = 11025
    >>> t = np.arange(8 * sr) / sr
    >>> chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63))  # A C E
    >>> k = estimate_key(chord.astype(np.float32), sr=sr)
    >>> k.key, k.camelot
    ('A minor', '8A')
    >>> estimate_key(np.zeros(10 * sr, np.float32), sr=sr).note
    'silent'
    """
    segments = [_validate(y, sr, profile)] if isinstance(y, np.ndarray) else [_validate(s, sr, profile) for s in y]
    n = sum(len(s) for s in segments)
    if n < MIN_DURATION_S * sr:
        return Key.none("too short")
    energy = sum(float(np.sum(np.square(s, dtype=np.float64))) for s in segments)
    if np.sqrt(energy / n) < _SILENCE_RMS:
        return Key.none("silent")
    frames, tonal, counts = _segment_chroma(segments, sr=sr)
    chroma = frames.sum(axis=0)
    if tonal < _MIN_TONAL_FITTED or not chroma.any():
        return Key.none("no tonal content")
    scores = key_scores(chroma, profile=profile)
    order = np.argsort(scores)[::-1]
    best, second = scores[order[0]], scores[order[1]]
    if best < _MIN_CORR or (tonal < _MIN_TONAL and best < _STRONG_FIT):
        return Key.none("no tonal content")
    name = f"{PITCH_CLASSES[order[0] % 12]} {'major' if order[0] < 12 else 'minor'}"
    if len(segments) > 1:      # windows from across the track: does each part of it have the key on its own?
        groups = np.array_split(np.arange(len(segments)), min(N_WINDOWS, len(segments)))
        ends = np.cumsum(counts)
        parts = [frames[(ends[g[0]] - counts[g[0]]):ends[g[-1]]] for g in groups]
    else:
        parts = np.array_split(frames, int(np.clip(n / sr // _WINDOW_S, 1, min(N_WINDOWS, max(1, len(frames))))))
    agreement = _window_agreement(parts, int(order[0]), profile)
    # On real full-length tracks, whether the excerpt's key is also the whole track's is predicted
    # best by the windows' agreement and by how well the chroma fits the profile at all (ROC AUC
    # 0.85 and 0.82 over 47 tracks), much less by the margin over the runner-up (0.66), which is
    # mostly a related key (README, "Accuracy"): the confidence is their product.
    fit = float(np.clip((best - _FIT_FLOOR) / (1.0 - _FIT_FLOOR), 0.0, 1.0))
    margin = float(np.clip((best - second) / 0.15, 0.0, 1.0))
    confidence = agreement * fit * (0.5 + 0.5 * margin)
    return Key(name, to_camelot(name), to_open_key(name), round(confidence, 4), None, round(agreement, 4))


def _window_agreement(parts: list[np.ndarray], index: int, profile: str) -> float:
    """Share of the tonal mass in the windows ``parts`` (frame blocks) whose own best key is key ``index``."""
    chromas = [w.sum(axis=0) for w in parts]
    mass = np.array([c.sum() for c in chromas])
    if mass.sum() <= 0:
        return 0.0
    same = np.array([c.any() and int(np.argmax(key_scores(c, profile=profile))) == index for c in chromas])
    return float(mass[same].sum() / mass.sum())


def chroma_profile(y: np.ndarray, *, sr: float, fmin: float = _FMIN, fmax: float = _FMAX,
                   prominence: float = _PROMINENCE, compress: float = 10.0,
                   harmonics: int = 3) -> tuple[np.ndarray, float]:
    """Tuning-corrected 12-bin chroma (sums to 1, C first) and the tonal share of band power.

    Examples
    --------
    >>> sr = 8000
    >>> t = np.arange(4 * sr) / sr
    >>> c, tonal = chroma_profile(np.sin(2 * np.pi * 445.0 * t), sr=sr)  # A4, 20 cents sharp
    >>> int(np.argmax(c)), tonal > 0.5
    (9, True)
    """
    frames, tonal = chroma_frames(y, sr=sr, fmin=fmin, fmax=fmax, prominence=prominence,
                                  compress=compress, harmonics=harmonics)
    chroma = frames.sum(axis=0)
    total = chroma.sum()
    return (chroma / total if total > 0 else chroma), tonal


def chroma_frames(y: np.ndarray | Sequence[np.ndarray], *, sr: float, fmin: float = _FMIN, fmax: float = _FMAX,
                  prominence: float = _PROMINENCE, compress: float = 10.0,
                  harmonics: int = 3) -> tuple[np.ndarray, float]:
    """Per-frame tuning-corrected chroma ``(n_frames, 12)`` (unnormalised) and the tonal share.

    The frames are the ``_MAX_FRAMES`` or fewer ~0.37 s frames spread evenly over ``y``, in time order.
    ``y`` may be a sequence of segments (windows from across a track): each gets the same share of
    the frames (all of its own if it has fewer) and one tuning is read from all of them.
    """
    return _segment_chroma(y, sr=sr, fmin=fmin, fmax=fmax, prominence=prominence, compress=compress,
                           harmonics=harmonics)[:2]


def _segment_chroma(y, *, sr, fmin=_FMIN, fmax=_FMAX, prominence=_PROMINENCE, compress=10.0,
                    harmonics=3) -> tuple[np.ndarray, float, list[int]]:
    """:func:`chroma_frames` plus the number of frames taken from each segment."""
    segments = [y] if isinstance(y, np.ndarray) else list(y)
    n_fft = int(2 ** round(np.log2(sr * 0.372)))
    hop = n_fft // 2
    avail = [max(0, 1 + (len(s) - n_fft) // hop) for s in segments]
    if sum(avail) < 1:
        return np.zeros((0, 12)), 0.0, [0] * len(segments)
    # Each segment gets the same number of frames (fewer if it is short): a long middle excerpt
    # does not outvote the windows from the rest of the track (README, "Accuracy").
    want = [min(a, (_MAX_FRAMES_ONE if len(segments) == 1 else _MAX_FRAMES) // len(segments)) for a in avail]
    counts = [w if a == 0 or w > 0 else 1 for a, w in zip(avail, want)]
    window = np.hanning(n_fft).astype(np.float32)
    frames = np.concatenate([
        s[np.linspace(0, len(s) - n_fft, c).astype(np.int64)[:, None] + np.arange(n_fft)[None, :]] * window
        for s, c in zip(segments, counts) if c > 0])
    lo = max(int(np.floor(fmin * n_fft / sr)), 2)
    hi = min(int(np.ceil(fmax * n_fft / sr)), n_fft // 2 - 2)
    spec = scipy.fft.rfft(frames, axis=1)[:, lo - 1:hi + 2]
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float64)
    band_power = power[:, 1:-1].sum()
    empty = np.zeros((len(frames), 12))
    if band_power <= 0:
        return empty, 0.0, counts
    # Local mean over ~+-30 Hz: a tone stands out of it, broadband noise and drum hits do not.
    width = max(3, int(round(60.0 * n_fft / sr)) | 1)
    local = uniform_filter1d(power, size=width, axis=1, mode="nearest")
    mid = power[:, 1:-1]
    is_peak = ((mid > power[:, :-2]) & (mid >= power[:, 2:]) & (mid > prominence * local[:, 1:-1])
               & (mid > 1e-10 * power.max()))
    fi, bi = np.nonzero(is_peak)
    if len(fi) == 0:
        return empty, 0.0, counts
    a, b, c = (np.log(power[fi, bi + j] + 1e-30) for j in (0, 1, 2))
    denom = a - 2 * b + c
    delta = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    freq = (lo + bi + np.clip(delta, -0.5, 0.5)) * sr / n_fft
    amp = np.sqrt(power[fi, bi + 1])
    # Tonal share: a Hann-windowed sinusoid spreads 1.5 times its peak-bin power (the window's
    # noise bandwidth), so 1.5 x peak power over band power is the share of energy in tones.
    tonal = float(min(1.0, 1.5 * np.sum(power[fi, bi + 1]) / band_power))
    midi = 12.0 * np.log2(freq / 440.0) + 69.0
    dev = midi - np.round(midi)
    tuning = np.angle(np.sum(amp * np.exp(2j * np.pi * dev))) / (2 * np.pi)
    midi = midi - tuning
    # Compress amplitudes per frame: loud notes count more, but not by orders of magnitude.
    frame_max = np.zeros(len(frames))
    np.maximum.at(frame_max, fi, amp)
    w = np.log1p(compress * amp / frame_max[fi])
    chroma = empty
    for h in range(1, harmonics + 1):
        m = midi - 12.0 * np.log2(h)
        near = np.round(m)
        weight = w * np.cos(np.pi * (m - near)) ** 2 * (0.6 ** (h - 1))
        np.add.at(chroma, (fi, near.astype(np.int64) % 12), weight)
    return chroma, tonal, counts


def key_scores(chroma: np.ndarray, *, profile: str = "auto") -> np.ndarray:
    """Pearson correlation of a 12-bin chroma with the 24 keys: 12 major keys (C..B), then 12 minor.

    Examples
    --------
    >>> major = np.array(PROFILES["temperley"][0])
    >>> int(np.argmax(key_scores(np.roll(major, 7), profile="temperley")))  # G major
    7
    """
    names = ENSEMBLE if profile == "ensemble" else (AUTO_PROFILE if profile == "auto" else profile,)
    c = np.asarray(chroma, dtype=np.float64)
    c = c - c.mean()
    cn = np.linalg.norm(c)
    out = np.zeros(24)
    for name in names:
        for mode, prof in enumerate(PROFILES[name]):
            p = np.asarray(prof) - np.mean(prof)
            rot = np.stack([np.roll(p, k) for k in range(12)])  # row k: profile with tonic k
            out[12 * mode:12 * mode + 12] += rot @ c / (np.linalg.norm(p) * cn + 1e-12)
    return out / len(names)


def _validate(y: np.ndarray, sr: float, profile: str) -> np.ndarray:
    """Check arguments; return y as contiguous float32."""
    if profile not in PROFILES and profile not in ("auto", "ensemble"):
        raise ParameterError(f"unknown key profile {profile!r}; expected 'auto', 'ensemble' or one of "
                             f"{sorted(PROFILES)}")
    try:
        sr_f = float(sr)
    except (TypeError, ValueError):
        raise ParameterError(f"sr must be a number, got {sr!r}") from None
    if not np.isfinite(sr_f) or sr_f < 8000:
        raise ParameterError(f"sr must be at least 8000 Hz, got {sr!r}")
    if not isinstance(y, np.ndarray) or y.ndim != 1:
        raise ParameterError("y must be a mono (1-D) numpy array")
    if not np.issubdtype(y.dtype, np.floating) and not np.issubdtype(y.dtype, np.integer):
        raise ParameterError(f"y must hold real numbers, got dtype {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        raise ParameterError("y contains NaN or infinite values")
    return y
