"""Short-time power spectrum of a mono signal at a low rate: the front end of the tempo and beat estimators.

Pure numpy/scipy, like the estimators that use it. Onsets need no more than ~5 kHz of bandwidth, so
the signal is first decimated by summing ``q`` neighbouring samples (a cheap anti-alias filter that
makes the STFT 2-4x cheaper), then framed with a Hann window of a few hops.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


def stft_power(y: np.ndarray, sr: float, *, max_sr: float, fps: float,
               win_hops: int) -> tuple[np.ndarray, np.ndarray, float, int, int]:
    """Power spectrogram ``(n_frames, n_bins)`` of ``y`` decimated to at most about ``max_sr``.

    Returns the power (float32 for float32 input: scipy.fft keeps single precision), the frequency
    of each bin, the decimated rate, the hop and the window length (``win_hops`` hops), in samples
    at that rate; frames are ``fps`` a second.

    Examples
    --------
    >>> sr = 22050
    >>> y = np.sin(2 * np.pi * 1000.0 * np.arange(sr) / sr).astype(np.float32)
    >>> power, freqs, sr_d, hop, n_win = stft_power(y, sr, max_sr=11025, fps=100, win_hops=4)
    >>> sr_d, hop, n_win, power.dtype
    (11025.0, 110, 440, dtype('float32'))
    >>> round(float(freqs[np.argmax(power[10])]))     # the loudest bin is within one bin (25 Hz) of 1 kHz
    1002
    """
    q = max(1, int(sr // max_sr))
    n = y.size // q
    x = y[: n * q : q].copy()
    for i in range(1, q):
        x += y[i : n * q : q]
    sr_d = sr / q
    hop = max(1, int(round(sr_d / fps)))
    n_win = win_hops * hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_win)[::hop]
    spec = scipy.fft.rfft(frames * np.hanning(n_win).astype(np.float32), axis=1)
    power = spec.real**2 + spec.imag**2
    return power, np.arange(power.shape[1]) * sr_d / n_win, sr_d, hop, n_win
