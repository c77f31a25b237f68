"""Signal in, numbers out: tempo, key, loudness, key notations, harmonic mixing.

Pure functions on numpy arrays in the style of librosa (keyword-only ``y``,
``sr``; ``ParameterError`` for bad arguments; a degenerate input is data with a
defined answer). Nothing here reads a file or knows of Dask;
:mod:`~crate_dask.features.signal` is the glue that turns one decoded signal
into the audio columns of a result row.
"""
