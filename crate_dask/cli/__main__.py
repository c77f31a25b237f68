"""``python -m crate_dask.cli``: the same as the ``crate-dask`` command."""

from crate_dask.cli.main import main

main(prog_name="crate-dask")
