"""Frozen settings and their precedence: defaults < TOML config file < CLI flags.

Settings are built once, at the edge (CLI, pipeline script or notebook), and
passed explicitly to every stage. Two groups matter for provenance:
``AnalysisSettings`` changes what a row contains, so it is fingerprinted and
recorded with every partition; ``RunSettings`` only changes how the run is
executed (cluster, progress), so it never invalidates results.

>>> s = build_settings(cli={"partition_size": 500, "metadata_only": True})
>>> s.run.partition_size, s.analysis.metadata_only
(500, True)
>>> s.analysis.fingerprint() == build_settings(cli={"metadata_only": True}).analysis.fingerprint()
True
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from crate_dask.errors import FatalError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: Settings that bound the work on one file: they change no successful row, so they are not in the
#: fingerprint; an error row records the limit it hit and is retried when the setting is raised.
LIMITS = ("file_timeout_s", "file_memory_mb")

#: Bumped whenever an algorithm change makes old rows incomparable with new ones.
ANALYSIS_VERSION = 6     # 2: tempo backbeat guard (since reverted); 3: the key is read from windows across the track;
#                         4: from 48 short windows spread evenly over it; 5: a strong fit keeps a key under loud drums;
#                         6: one key window per 5 s of a track longer than 4 min (up to 96)


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that changes the content of a result row (fingerprinted)."""

    metadata_only: bool = False
    sample_rate: int = 22050
    excerpt_s: float | None = 90.0    # None: the whole track; 90 s from the middle holds tempo and key
    # The key is read from key_windows windows of this length spread evenly over the whole track (None:
    # from the excerpt alone): one key for the whole track, not for its middle (README, "Accuracy").
    # A track longer than key_windows x key_window_spacing_s (4 min) gets one window per spacing, up to
    # twice key_windows (None: always key_windows).
    key_window_s: float | None = 1.0
    key_windows: int = 48
    key_window_spacing_s: float | None = 5.0
    bpm_min: float = 78.0
    bpm_max: float = 180.0
    key_profile: str = "auto"
    file_timeout_s: float = 60.0      # per file, for reading tags and for the audio analysis
    file_memory_mb: float = 2048.0    # per file: memory the isolated reader may add beyond its start-up size

    def excerpt_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`crate_dask.library.audio.load_excerpt` that these settings fix.

        >>> AnalysisSettings(excerpt_s=30.0).excerpt_options()["excerpt_s"]
        30.0
        """
        return {"sr": self.sample_rate, "excerpt_s": self.excerpt_s, "key_window_s": self.key_window_s,
                "key_windows": self.key_windows, "key_window_spacing_s": self.key_window_spacing_s}

    def fingerprint(self) -> str:
        """A short stable hash of the settings that produced a row.

        In metadata-only mode the audio parameters do not matter, so they are
        left out: changing ``excerpt_s`` does not invalidate metadata results.
        """
        return hashlib.sha256(json.dumps(self.provenance(), sort_keys=True).encode()).hexdigest()[:16]

    def provenance(self) -> dict[str, Any]:
        """The settings that matter for the rows, as a JSON-able dict."""
        from crate_dask import __version__
        from crate_dask.schema import SCHEMA_VERSION

        d: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "metadata_only": self.metadata_only}
        if not self.metadata_only:
            d.update({f.name: getattr(self, f.name) for f in fields(self)
                      if f.name not in ("metadata_only", *LIMITS)})
            d["analysis_version"] = ANALYSIS_VERSION
        d["crate_dask_version"] = __version__.split("+")[0].rsplit(".", 1)[0]  # major.minor
        return d


@dataclass(frozen=True)
class RunSettings:
    """How a run is executed; never part of the results' provenance."""

    partition_size: int = 1000
    workers: int | None = None          # None: one per core
    scheduler: str | None = None        # address of an existing cluster
    sequential: bool = False
    progress: bool = True
    force: bool = False
    retry_errors: bool = False          # recompute the error rows (quarantined files included), reuse the rest
    dashboard_port: int = 8787
    chunk_size: int | None = None       # files per task; None: chosen from the measured rate
    path_map: tuple[tuple[str, str], ...] = ()   # (client prefix, worker prefix), see run/paths.py
    nice: bool = False                  # local workers at low CPU and I/O priority
    memory_limit: str = "auto"          # per local worker: "auto" (RAM / workers), "4GiB", ...
    tls_ca_file: str | None = None      # --scheduler tls://...: Dask's TLS security settings
    tls_cert: str | None = None
    tls_key: str | None = None
    no_workers_timeout_s: float = 300.0  # a run whose cluster has had no worker this long stops (rerun resumes)


@dataclass(frozen=True)
class Settings:
    """The one settings object of a run."""

    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    run: RunSettings = field(default_factory=RunSettings)


def default_config_path() -> Path | None:
    """The config file used when none is given: ``$CRATE_DASK_CONFIG`` or ``~/.config/crate-dask/config.toml``."""
    env = os.environ.get("CRATE_DASK_CONFIG")
    if env:
        return Path(env)
    p = Path(os.path.expanduser("~/.config/crate-dask/config.toml"))
    return p if p.is_file() else None


def load_config_file(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a TOML config file into a flat dict (sections ``[analysis]``, ``[run]`` or top level)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise FatalError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FatalError(f"config file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    return flat


def build_settings(*, config_file: str | os.PathLike | None = None,
                   cli: Mapping[str, Any] | None = None) -> Settings:
    """Merge defaults < config file < CLI values (``None`` CLI values mean "not given")."""
    merged: dict[str, Any] = dict(load_config_file(config_file))
    merged.update({k: v for k, v in (cli or {}).items() if v is not None})
    groups = {"analysis": AnalysisSettings, "run": RunSettings}
    known = {f.name: g for g, cls in groups.items() for f in fields(cls)}
    unknown = sorted(set(merged) - set(known))
    if unknown:
        raise FatalError(f"unknown setting(s): {', '.join(unknown)}")
    kwargs: dict[str, dict[str, Any]] = {g: {} for g in groups}
    types = {f.name: f.type for cls in groups.values() for f in fields(cls)}
    for k, v in merged.items():
        kwargs[known[k]][k] = _typed(k, v, types[k])
    try:
        s = Settings(analysis=AnalysisSettings(**kwargs["analysis"]), run=RunSettings(**kwargs["run"]))
    except TypeError as exc:
        raise FatalError(f"bad settings: {exc}") from None
    _validate(s)
    return s


def parse_path_maps(items: Any) -> tuple[tuple[str, str], ...]:
    """``["A=B", ...]`` -> ((A, B), ...), longest client prefix first (a bad item is a one-line error)."""
    if isinstance(items, str):
        items = [items]
    pairs = []
    for item in items:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            client, sep, worker = str(item[0]), "=", str(item[1])
        else:
            client, sep, worker = str(item).partition("=")
        if not sep or not client.strip() or not worker.strip():
            raise FatalError(f"bad path map {item!r}: expected CLIENT_PREFIX=WORKER_PREFIX")
        pairs.append((_strip_slash(client), _strip_slash(worker)))
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))


def _strip_slash(p: str) -> str:
    p = p.strip()
    return p if p == "/" else p.rstrip("/")


def _typed(name: str, value: Any, annotation: str) -> Any:
    """``value`` checked against the field's type, so that a bad config value is one line like a bad flag.

    >>> _typed("workers", 2, "int | None"), _typed("excerpt_s", 30, "float | None")
    (2, 30.0)
    >>> _typed("partition_size", "abc", "int")
    Traceback (most recent call last):
    ...
    crate_dask.errors.FatalError: bad setting partition_size = 'abc': expected a whole number
    """
    if name == "path_map":
        return parse_path_maps(value)
    kinds = [t.strip() for t in str(annotation).split("|")]
    if value is None and "None" in kinds:
        return None
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
        raise FatalError(f"bad setting {name} = {value!r}: expected true or false")
    if "int" in kinds:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise FatalError(f"bad setting {name} = {value!r}: expected a whole number")
    if "float" in kinds:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise FatalError(f"bad setting {name} = {value!r}: expected a number")
    if "str" in kinds:
        if isinstance(value, str):
            return value
        raise FatalError(f"bad setting {name} = {value!r}: expected a string")
    return value


def _validate(s: Settings) -> None:
    a, r = s.analysis, s.run
    if r.partition_size < 1:
        raise FatalError("partition_size must be at least 1")
    if r.workers is not None and r.workers < 1:
        raise FatalError("workers must be at least 1")
    if r.no_workers_timeout_s <= 0:
        raise FatalError("no_workers_timeout_s must be positive")
    if r.chunk_size is not None and r.chunk_size < 1:
        raise FatalError("chunk_size must be at least 1")
    if r.scheduler and "://" in r.scheduler and not r.scheduler.startswith(("tcp://", "tls://", "ws://", "wss://",
                                                                            "ucx://")):
        raise FatalError(f"bad scheduler address {r.scheduler!r}: expected tcp://HOST:PORT or tls://HOST:PORT")
    if not (0 < a.bpm_min < a.bpm_max) or a.bpm_max < 2 * a.bpm_min * 0.99:
        raise FatalError("bpm range must satisfy 0 < bpm_min and bpm_max >= 2 * bpm_min (one octave)")
    if a.excerpt_s is not None and a.excerpt_s <= 0:
        raise FatalError("excerpt_s must be positive (or unset for the whole track)")
    if a.key_window_s is not None and a.key_window_s <= 0:
        raise FatalError("key_window_s must be positive (or unset for the excerpt alone)")
    if a.key_windows < 1:
        raise FatalError("key_windows must be at least 1")
    if a.key_window_spacing_s is not None and a.key_window_spacing_s <= 0:
        raise FatalError("key_window_spacing_s must be positive (or unset for always key_windows)")
    if a.file_timeout_s <= 0:
        raise FatalError("file_timeout_s must be positive")
    if a.file_memory_mb < 16:
        raise FatalError("file_memory_mb must be at least 16 (MiB)")
