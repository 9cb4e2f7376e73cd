"""Observing runs from outside: traces of a run exported over OTLP (docs/traces.md).

A listener of the run's event stream, beside ``engine.ui``'s console and report: the command
line wraps its console in ``tracing.TraceSink`` when tracing is on. This module decides
whether it is, from the ``--otel`` flag and the standard OpenTelemetry environment, with the
standard library only: ``runproc --version`` and every run without tracing never import the
OpenTelemetry SDK (tests/observe/test_traces.py checks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# the OTLP/HTTP default (the specification's): a collector on this machine
DEFAULT_ENDPOINT = "http://localhost:4318"
INSTALL_HINT = "pip install 'runproc[otel]'"


def _set(environ: Mapping[str, str], name: str) -> bool:
    return bool(environ.get(name, "").strip())


def tracing_wanted(flag: bool, environ: Mapping[str, str] | None = None) -> bool:
    """``--otel``, or an OTLP endpoint in the environment (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), as every OpenTelemetry SDK reads it.

    The environment's switches win over an endpoint set for other programs, never over the
    flag: ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn the environment's
    tracing off; ``--otel`` is the operator asking for this run.
    """
    if flag:
        return True
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return _set(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _set(env, "OTEL_EXPORTER_OTLP_ENDPOINT")


def traces_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """Where spans are sent, by the specification's rule (the SDK's exporter applies it too):
    the traces endpoint as given, else the base endpoint with ``/v1/traces``, else the default."""
    env = os.environ if environ is None else environ
    given = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if given:
        return given
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    return base.rstrip("/") + "/v1/traces"


def shown_endpoint(url: str) -> str:
    """The endpoint as messages say it: without a user or password it may carry."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<the OTLP endpoint>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
