"""Secrets kept in a store: Vault/OpenBao KV (hvac), AWS Secrets Manager and SSM (boto3).

A procedure names where a secret is (``secrets: {db: {vault: {path, key}}}``); the value is
read here, on the machine that runs the step, once per run: a local run reads its secrets
when it starts (before any step, so a refusal or a missing path is exit 2 with the secret's
file:line:col, engine/format/params.py says where), a Temporal worker when a step of the run
first needs them (engine/distributed/activities.py, engine/execution/portable.py). Values
live only in memory: nothing here writes one anywhere, and an error names the secret's
source and the reason (permission denied, path missing, key missing), never a value.

Credentials come from the standard environment unless the source gives them:
``VAULT_ADDR``, ``VAULT_TOKEN`` (else ``~/.vault-token``, as the CLI does) or AppRole's
``VAULT_ROLE_ID``/``VAULT_SECRET_ID``, ``VAULT_NAMESPACE``, ``VAULT_CACERT``; for AWS the
standard chain and ``AWS_ENDPOINT_URL`` through awsclient's shared session setup.

hvac and boto3 are imported only when a procedure declares such a secret.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..format.params import SecretUnavailable, resolve_secrets
from ..format.suggest import did_you_mean

if TYPE_CHECKING:
    from ..format.model import AwsSecretsManagerSource, AwsSsmSource, Procedure, Secret, VaultSource

VAULT_TIMEOUT = 10  # seconds per request: an unreachable Vault must not hold the run's start for long
KEPT_RUNS = 8  # a worker keeps the secrets of its most recent runs (in memory) to read each once per run


class SecretStores:
    """One run's reader: each secret (a Vault path, an AWS secret) is fetched once, each store
    logged in to once; thread-safe, since a worker runs several steps of a run at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[Any, ...], Any] = {}  # what a store gave, by where it was read
        self._clients: dict[tuple[Any, ...], Any] = {}

    def read(self, spec: Secret) -> str:
        """The secret's value; SecretUnavailable (naming the source and why) when it cannot be had."""
        with self._lock:
            if spec.vault is not None:
                return _vault(self, spec.vault)
            if spec.aws_secretsmanager is not None:
                return _secretsmanager(self, spec.aws_secretsmanager)
            if spec.aws_ssm is not None:
                return _ssm(self, spec.aws_ssm)
        raise SecretUnavailable("not a secret kept in a store")

    def close(self) -> None:
        """Close the stores' connections; the values read stay (they are read once per run)."""
        with self._lock:
            for client in self._clients.values():
                close = getattr(client, "close", None) or getattr(getattr(client, "adapter", None), "close", None)
                if close is not None:
                    close()
            self._clients.clear()

    def _cached(self, key: tuple[Any, ...], fetch: Any) -> Any:
        if key not in self._values:
            self._values[key] = fetch()
        return self._values[key]


_runs: OrderedDict[str, SecretStores] = OrderedDict()
_runs_lock = threading.Lock()


def for_run(run_id: str | None) -> SecretStores:
    """The reader of one run on this machine (a fresh one when the run is not named)."""
    if not run_id:
        return SecretStores()
    with _runs_lock:
        stores = _runs.pop(run_id, None) or SecretStores()
        _runs[run_id] = stores
        while len(_runs) > KEPT_RUNS:
            _runs.popitem(last=False)
        return stores


def resolve(proc: Procedure, *, allow_missing: bool = False, offline: bool = False,
            run_id: str | None = None) -> dict[str, str | None]:
    """``resolve_secrets`` with the stores read from here: every secret of the procedure, a
    missing or refused one an error (exit 2) or, with ``allow_missing`` (a dry run), None.
    ``offline`` (a plan that connects to nothing) asks no store: their secrets are None."""
    if not any(spec.store for spec in proc.secrets.values()):
        return resolve_secrets(proc, allow_missing=allow_missing)
    if offline:
        return resolve_secrets(proc, allow_missing=True, read=_not_asked)
    stores = for_run(run_id)
    try:
        return resolve_secrets(proc, allow_missing=allow_missing, read=stores.read)
    finally:
        stores.close()


def _not_asked(spec: Secret) -> str:
    raise SecretUnavailable("not read offline")


def read_one(spec: Secret, run_id: str | None) -> str:
    """One store secret for a run on this machine (a worker rendering vars and ``when``)."""
    return for_run(run_id).read(spec)


# ---------------------------------------------------------------- Vault / OpenBao


def _vault(stores: SecretStores, src: VaultSource) -> str:
    address = src.address or os.environ.get("VAULT_ADDR") or ""
    where = f"vault {src.mount.strip('/')}/{src.path.strip('/')} ({src.engine}" + (f" at {address})" if address else ")")
    if not address:
        raise SecretUnavailable(f"{where}: no Vault address (set VAULT_ADDR, or give address: in the source)")
    try:
        import hvac  # noqa: F401 - only a procedure with a vault secret pays for it
        import requests
    except ImportError:
        raise SecretUnavailable(f"{where}: reading Vault needs the hvac package (pip install 'runproc[vault]')") \
            from None
    namespace = src.namespace or os.environ.get("VAULT_NAMESPACE") or None
    login = _vault_login(src)
    data_key = (address, namespace, login[:2], src.mount, src.path, src.engine, src.version)
    try:
        data = stores._cached(data_key, lambda: _vault_data(stores, src, address, namespace, login, where))
    except requests.RequestException as exc:
        raise SecretUnavailable(f"{where}: cannot reach Vault ({type(exc).__name__})") from None
    if src.key not in data:
        raise SecretUnavailable(f"{where}: key {src.key!r} missing{did_you_mean(src.key, data)}"
                                + (f" (its keys: {', '.join(sorted(map(str, data)))})" if data else ""),
                                absent=True)
    value = data[src.key]
    return value if isinstance(value, str) else json.dumps(value)


def _vault_login(src: VaultSource) -> tuple[str, tuple[str, ...], str, str]:
    """How to log in: (method, what names the credentials, token or role id, secret id), from
    the source or the standard environment; which method when ``auth`` is not given: a token if
    one is set, else AppRole."""
    token_var = src.token_env or "VAULT_TOKEN"
    secret_var = src.secret_id_env or "VAULT_SECRET_ID"
    token = os.environ.get(token_var) or ""
    if not token and src.token_env is None:
        try:  # what `vault login` / `bao login` leave for the CLI
            token = (Path.home() / ".vault-token").read_text().strip()
        except (OSError, ValueError, RuntimeError):
            token = ""
    role_id = src.role_id or os.environ.get("VAULT_ROLE_ID") or ""
    secret_id = os.environ.get(secret_var) or ""
    auth = src.auth or ("token" if token else "approle" if role_id or src.secret_id_env else None)
    if auth is None:
        raise SecretUnavailable(_where_src(src) + ": no Vault credentials (set VAULT_TOKEN, or VAULT_ROLE_ID and "
                                "VAULT_SECRET_ID for AppRole)")
    if auth == "token":
        if not token:
            raise SecretUnavailable(_where_src(src) + f": no Vault token (set {token_var})")
        return ("token", (token_var,), token, "")
    if not role_id or not secret_id:
        lacking = [name for name, have in (("VAULT_ROLE_ID (or role_id:)", role_id), (secret_var, secret_id))
                   if not have]
        raise SecretUnavailable(_where_src(src) + f": AppRole needs {' and '.join(lacking)}")
    return ("approle", (role_id, secret_var, src.approle_mount), role_id, secret_id)


def _where_src(src: VaultSource) -> str:
    return f"vault {src.mount.strip('/')}/{src.path.strip('/')} ({src.engine})"


def _vault_data(stores: SecretStores, src: VaultSource, address: str, namespace: str | None,
                login: tuple[str, tuple[str, ...], str, str], where: str) -> dict[str, Any]:
    from hvac import exceptions as vex

    client = _vault_client(stores, src, address, namespace, login, where)
    try:
        if src.engine == "kv2":
            answer = client.secrets.kv.v2.read_secret_version(path=src.path, mount_point=src.mount,
                                                              version=src.version, raise_on_deleted_version=True)
            data = (answer.get("data") or {}).get("data")
        else:
            data = client.secrets.kv.v1.read_secret(path=src.path, mount_point=src.mount).get("data")
    except vex.Forbidden:
        raise SecretUnavailable(f"{where}: permission denied (the token's policies do not allow reading it, or "
                                "the token is not valid)") from None
    except vex.InvalidPath:
        version = f" version {src.version}" if src.version is not None else ""
        raise SecretUnavailable(f"{where}: path missing (no secret{version} there, or no {src.engine} engine "
                                f"mounted at {src.mount!r})", absent=True) from None
    except vex.Unauthorized:
        raise SecretUnavailable(f"{where}: the credentials were refused") from None
    except (vex.VaultDown, vex.VaultNotInitialized):
        raise SecretUnavailable(f"{where}: Vault is sealed or not ready") from None
    except vex.VaultError as exc:
        raise SecretUnavailable(f"{where}: Vault answered {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise SecretUnavailable(f"{where}: path missing (no data there)", absent=True)
    return data


def _vault_client(stores: SecretStores, src: VaultSource, address: str, namespace: str | None,
                  login: tuple[str, tuple[str, ...], str, str], where: str) -> Any:
    import hvac
    from hvac import exceptions as vex

    method, names, first, second = login
    key = (address, namespace, method, names)
    if key in stores._clients:
        return stores._clients[key]
    # the token is given explicitly: hvac would otherwise read VAULT_TOKEN whatever the source says
    client = hvac.Client(url=address, token=first if method == "token" else "", namespace=namespace,
                         timeout=VAULT_TIMEOUT)
    if method == "approle":
        try:
            client.auth.approle.login(role_id=first, secret_id=second, mount_point=src.approle_mount)
        except (vex.InvalidRequest, vex.Forbidden, vex.Unauthorized):
            raise SecretUnavailable(f"{where}: AppRole login refused (the role id or secret id is not valid "
                                    f"at {src.approle_mount}/)") from None
        except vex.InvalidPath:
            raise SecretUnavailable(f"{where}: AppRole login failed: no AppRole auth mounted at "
                                    f"{src.approle_mount}/") from None
        except vex.VaultError as exc:
            raise SecretUnavailable(f"{where}: AppRole login failed ({type(exc).__name__})") from None
    stores._clients[key] = client
    return client


# ---------------------------------------------------------------- AWS


def _aws_client(stores: SecretStores, service: str, region: str | None, profile: str | None) -> Any:
    from .awsclient import open_session

    key = ("aws", profile, region)
    if key not in stores._clients:
        stores._clients[key] = open_session(profile=profile, region=region, endpoint_url=None)
    return stores._clients[key].client(service)


def _aws_call(stores: SecretStores, where: str, service: str, region: str | None, profile: str | None,
              call: Any) -> Any:
    """Call the service; its errors as SecretUnavailable (codes that say "not there" are absent)."""
    import botocore.exceptions as bex

    try:
        return call(_aws_client(stores, service, region, profile))
    except bex.ClientError as exc:
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "error")
        if code in ("ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"):
            raise SecretUnavailable(f"{where}: not found ({code})", absent=True) from None
        if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
            raise SecretUnavailable(f"{where}: permission denied ({code})") from None
        message = str(error.get("Message") or "").splitlines()[0] if error.get("Message") else ""
        raise SecretUnavailable(f"{where}: {code}" + (f": {message}" if message else "")) from None
    except bex.NoCredentialsError:
        raise SecretUnavailable(f"{where}: no AWS credentials found (the standard AWS environment, a profile "
                                "or an instance role)") from None
    except bex.NoRegionError:
        raise SecretUnavailable(f"{where}: no AWS region (set AWS_REGION, or give region: in the source)") \
            from None
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError):
        raise SecretUnavailable(f"{where}: cannot reach the AWS endpoint") from None
    except bex.ProfileNotFound:
        raise SecretUnavailable(f"{where}: AWS profile {profile!r} not found") from None
    except bex.BotoCoreError as exc:
        raise SecretUnavailable(f"{where}: {type(exc).__name__}") from None


def _secretsmanager(stores: SecretStores, src: AwsSecretsManagerSource) -> str:
    where = f"aws_secretsmanager {src.id}" + (f" ({src.region})" if src.region else "")

    def fetch() -> dict[str, Any]:
        args: dict[str, Any] = {"SecretId": src.id}
        if src.version_stage:
            args["VersionStage"] = src.version_stage
        answer = _aws_call(stores, where, "secretsmanager", src.region, src.profile,
                           lambda client: client.get_secret_value(**args))
        return {"text": answer.get("SecretString"), "binary": answer.get("SecretBinary")}

    got = stores._cached(("secretsmanager", src.profile, src.region, src.id, src.version_stage), fetch)
    text = got["text"]
    if text is None and got["binary"] is not None:
        try:
            text = bytes(got["binary"]).decode()
        except UnicodeDecodeError:
            raise SecretUnavailable(f"{where}: a binary secret that is not UTF-8 text") from None
    if text is None:
        raise SecretUnavailable(f"{where}: the secret has no value", absent=True)
    if src.key is None:
        return str(text)
    try:
        fields = json.loads(text)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise SecretUnavailable(f"{where}: key {src.key!r} asked of a secret that is not a JSON object")
    if src.key not in fields:
        raise SecretUnavailable(f"{where}: key {src.key!r} missing{did_you_mean(src.key, fields)}"
                                + (f" (its keys: {', '.join(sorted(map(str, fields)))})" if fields else ""),
                                absent=True)
    value = fields[src.key]
    return value if isinstance(value, str) else json.dumps(value)


def _ssm(stores: SecretStores, src: AwsSsmSource) -> str:
    where = f"aws_ssm {src.name}" + (f" ({src.region})" if src.region else "")

    def fetch() -> str:
        answer = _aws_call(stores, where, "ssm", src.region, src.profile,
                           lambda client: client.get_parameter(Name=src.name, WithDecryption=True))
        return str((answer.get("Parameter") or {}).get("Value") or "")

    return str(stores._cached(("ssm", src.profile, src.region, src.name), fetch))
