"""One analysis run: plan, per-file stages, isolation, worker tasks, the Dask graph.

:mod:`~crate_dask.run.plan` cuts the library into stable partitions,
:mod:`~crate_dask.run.stages` is the only place where a file's problems become
row fields, :mod:`~crate_dask.run.isolation` runs audio analysis in a child
process with a time limit, :mod:`~crate_dask.run.tasks` is what a worker does
with one partition, :mod:`~crate_dask.run.graph` builds the bag of partitions,
:mod:`~crate_dask.run.cluster` starts or connects to a cluster, and
:mod:`~crate_dask.run.api` is the run API: it takes settings (and optionally a
client) and reports through events, never printing.
"""
