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
ANALYSIS_VERSION = 1


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that changes the content of a result row (fingerprinted)."""

    metadata_only: bool = False
    sample_rate: int = 22050
    excerpt_s: float | None = 90.0    # None: the whole track; 90 s from the middle holds tempo and key
    bpm_min: float = 78.0
    bpm_max: float = 180.0
    key_profile: str = "auto"
    file_timeout_s: float = 60.0      # per file, for reading tags and for the audio analysis
    file_memory_mb: float = 2048.0    # per file: memory the isolated reader may add beyond its start-up size

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
    for k, v in merged.items():
        kwargs[known[k]][k] = v
    try:
        s = Settings(analysis=AnalysisSettings(**kwargs["analysis"]), run=RunSettings(**kwargs["run"]))
    except TypeError as exc:
        raise FatalError(f"bad settings: {exc}") from None
    _validate(s)
    return s


def _validate(s: Settings) -> None:
    a, r = s.analysis, s.run
    if r.partition_size < 1:
        raise FatalError("partition_size must be at least 1")
    if r.workers is not None and r.workers < 1:
        raise FatalError("workers must be at least 1")
    if not (0 < a.bpm_min < a.bpm_max) or a.bpm_max < 2 * a.bpm_min * 0.99:
        raise FatalError("bpm range must satisfy 0 < bpm_min and bpm_max >= 2 * bpm_min (one octave)")
    if a.excerpt_s is not None and a.excerpt_s <= 0:
        raise FatalError("excerpt_s must be positive (or unset for the whole track)")
    if a.file_timeout_s <= 0:
        raise FatalError("file_timeout_s must be positive")
    if a.file_memory_mb < 16:
        raise FatalError("file_memory_mb must be at least 16 (MiB)")
