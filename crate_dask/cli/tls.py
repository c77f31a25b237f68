"""The options that reach a TLS-secured Dask cluster, shared by ``analyze``, ``rename`` and ``tag``."""

from __future__ import annotations

import click

#: ``--tls-ca-file``, ``--tls-cert`` and ``--tls-key`` (README, "Several machines": the security recipe).
TLS_OPTIONS = [
    click.option("--tls-ca-file", default=None, metavar="FILE", help="TLS: the cluster's CA certificate."),
    click.option("--tls-cert", default=None, metavar="FILE", help="TLS: this client's certificate."),
    click.option("--tls-key", default=None, metavar="FILE", help="TLS: this client's private key."),
]
