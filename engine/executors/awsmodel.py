"""What botocore's service models say about a call, read without starting botocore.

The ``aws`` executor checks its ``service``, ``op`` and top-level ``args`` when the procedure
is loaded (a typo is a file:line:col error before anything runs) and tells reads from writes
by the operation's name. Creating a botocore session for that costs ~150 ms; reading the
model file botocore would read (``<data path>/<service>/<newest version>/service-2.json[.gz]``,
the same search path: ``~/.aws/models``, ``AWS_DATA_PATH``, botocore's own ``data``) costs a
few milliseconds for most services. Only ``botocore.xform_name`` is imported (the
``ListBuckets`` -> ``list_buckets`` rule, which must be botocore's own).

The same models say which members are ``sensitive`` (passwords, secret strings, session
tokens): those are masked in plans and results (``mask``).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..format.suggest import did_you_mean

# Operations whose name says they only read. A whole word at the start of the API name:
# "GetItem" reads, "Getaway" would not match. Anything else is a write unless the step says
# ``readonly: true``. Receive* (SQS: hides the message), Test*/Invoke* (run code) and
# Generate*/Create*/Start* stay writes on purpose.
READ_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "Search", "Scan", "Query", "BatchGet")
# Read-looking names that change something: Cognito's GetId creates the identity it returns.
READ_LOOKING_WRITES: dict[str, frozenset[str]] = {
    "cognito-identity": frozenset({"GetId", "GetOpenIdTokenForDeveloperIdentity"}),
}
# Parameters botocore accepts although the model lacks them (its handlers consume or rename
# them before the request is built); the load-time check must not call them unknown.
INJECTED_PARAMS: dict[str, frozenset[str]] = {
    "rds": frozenset({"SourceRegion"}),
    "neptune": frozenset({"SourceRegion"}),
    "docdb": frozenset({"SourceRegion"}),
    "ec2": frozenset({"Filters", "SourceRegion"}),
    "logs": frozenset({"fromTime"}),
    "cloudsearchdomain": frozenset({"returnFields"}),
}
# Member names that hold credentials even where a model forgets the ``sensitive`` trait.
# Exact words at the end of the name: NextToken, ClientToken or SecretId are not secrets.
SECRET_NAME = re.compile(r"(password|passphrase|privatekey|secretaccesskey|secretstring|secretbinary"
                         r"|sessiontoken|authorizationtoken|accesstoken|refreshtoken|idtoken|clientsecret)$",
                         re.I)
MASK = "***"


class ModelError(InvalidInputError, ValueError):
    """A service, operation or parameter the installed botocore does not know (a ValueError
    too: raised inside the options' validators, it becomes a located problem)."""


# ---------------------------------------------------------------- finding models


def _data_paths() -> list[Path]:
    """botocore's search path, in its order: the user's models, AWS_DATA_PATH, the built-ins."""
    import importlib.util

    paths = [Path("~/.aws/models").expanduser()]
    paths += [Path(p).expanduser() for p in os.environ.get("AWS_DATA_PATH", "").split(os.pathsep) if p]
    spec = importlib.util.find_spec("botocore")  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise ModelError("the aws executor needs botocore (boto3), which is not installed")
    paths.append(Path(spec.origin).parent / "data")
    return [p for p in paths if p.is_dir()]


def service_names() -> list[str]:
    names: set[str] = set()
    for base in _data_paths():
        names.update(d.name for d in base.iterdir() if d.is_dir())
    return sorted(names)


def _model_file(service: str) -> Path | None:
    """The newest ``service-2`` file of a service across the search path (as botocore picks)."""
    found: list[tuple[str, int, Path]] = []
    for rank, base in enumerate(_data_paths()):
        folder = base / service
        if not folder.is_dir():
            continue
        for version in folder.iterdir():
            for name in ("service-2.json", "service-2.json.gz"):
                if (version / name).is_file():
                    # the newest API version wins; for one version, the earlier path wins
                    found.append((version.name, -rank, version / name))
                    break
    return max(found)[2] if found else None


@lru_cache(maxsize=64)
def service_model(service: str) -> dict[str, Any]:
    """The parsed ``service-2`` model of a service; a ModelError names close services."""
    path = _model_file(service)
    if path is None:
        raise ModelError(f"unknown AWS service {service!r}{did_you_mean(service, service_names())} "
                         "(a boto3 client name such as route53, rds, s3, sts)")
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return dict(json.load(f))


# ---------------------------------------------------------------- operations


@dataclass(frozen=True)
class Operation:
    service: str
    api_name: str  # ChangeResourceRecordSets
    method: str  # change_resource_record_sets
    input_shape: str | None
    output_shape: str | None


@lru_cache(maxsize=64)
def _methods(service: str) -> dict[str, str]:
    from botocore import xform_name  # botocore's own rule (ListObjectsV2 -> list_objects_v2)

    return {xform_name(api): api for api in service_model(service)["operations"]}


def operation(service: str, op: str) -> Operation:
    """The operation ``op`` (boto3's method name or the API name) of ``service``."""
    model = service_model(service)
    ops: dict[str, Any] = model["operations"]
    methods = _methods(service)
    api = op if op in ops else methods.get(op)
    if api is None:
        candidates = list(ops) if op[:1].isupper() else list(methods)
        raise ModelError(f"{service} has no operation {op!r}{did_you_mean(op, candidates)}")
    body = ops[api]
    method = next(m for m, a in methods.items() if a == api)
    return Operation(service, api, method, (body.get("input") or {}).get("shape"),
                     (body.get("output") or {}).get("shape"))


def is_read(op: Operation) -> bool:
    if op.api_name in READ_LOOKING_WRITES.get(op.service, frozenset()):
        return False
    for prefix in READ_PREFIXES:
        rest = op.api_name[len(prefix):]
        if op.api_name.startswith(prefix) and (not rest or rest[0].isupper() or rest[0].isdigit()):
            return True
    return False


def check_arg_names(op: Operation, names: list[str]) -> None:
    """Top-level argument names the operation does not take (nested ones are botocore's to
    check when the call is built: in a dry run's rehearsal, or before the request)."""
    shapes = service_model(op.service)["shapes"]
    members = shapes[op.input_shape].get("members", {}) if op.input_shape else {}
    allowed = set(members) | INJECTED_PARAMS.get(op.service, frozenset())
    unknown = [n for n in names if n not in allowed]
    if not unknown:
        return
    if not members:
        raise ModelError(f"{op.service} {op.method} takes no arguments")
    first = unknown[0]
    same = [m for m in members if m.lower() == first.lower()]  # HostedZoneID for HostedZoneId
    suggestion = f" (did you mean '{same[0]}'?)" if same else did_you_mean(first, members)
    if not suggestion:  # no close name: say what it does take (a long list shortened)
        names_ = sorted(members)
        shown = ", ".join(names_[:12]) + (f" and {len(names_) - 12} more" if len(names_) > 12 else "")
        suggestion = f" (it takes {shown})"
    raise ModelError(f"{op.service} {op.method} has no parameter {first!r}{suggestion}")


# ---------------------------------------------------------------- secrets


def mask(value: Any, op: Operation, which: str, found: Callable[[Any], None]) -> Any:
    """``value`` (arguments or a response, as JSON-like data) with its sensitive members
    replaced by ``***``; ``found`` hears each masked value (to protect it everywhere)."""
    shape = op.input_shape if which == "input" else op.output_shape
    shapes = service_model(op.service)["shapes"]
    return _mask(value, shapes.get(shape or "", {}), shapes, found)


def _mask(value: Any, shape: dict[str, Any], shapes: dict[str, Any], found: Callable[[Any], None]) -> Any:
    if value is None:
        return None
    if shape.get("sensitive"):
        _leaves(value, found)
        return MASK
    kind = shape.get("type")
    if isinstance(value, dict):
        if kind == "map":
            sub = shapes.get(shape.get("value", {}).get("shape", ""), {})
            return {k: _mask(v, sub, shapes, found) for k, v in value.items()}
        members = shape.get("members", {}) if kind == "structure" else {}
        out: dict[str, Any] = {}
        for key, item in value.items():
            ref = members.get(key, {})
            if ref.get("sensitive") or (SECRET_NAME.search(str(key)) and isinstance(item, str | bytes)):
                _leaves(item, found)
                out[key] = MASK if item is not None else None
            else:
                out[key] = _mask(item, shapes.get(ref.get("shape", ""), {}), shapes, found)
        return out
    if isinstance(value, list):
        sub = shapes.get(shape.get("member", {}).get("shape", ""), {}) if kind == "list" else {}
        return [_mask(v, sub, shapes, found) for v in value]
    return value


def _leaves(value: Any, found: Callable[[Any], None]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _leaves(v, found)
    elif isinstance(value, list):
        for v in value:
            _leaves(v, found)
    elif isinstance(value, str) and value:
        found(value)
