"""runproc serve's tests: one state made by real ``runproc`` runs for the session (read only
afterwards: a test that changes a state makes its own), and a test client on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.web.app import Settings
from tests.helpers.web import History, TestClient, app_client, make_history


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return make_history(tmp_path_factory.mktemp("web-history"))


@pytest.fixture
def client(history: History) -> Iterator[TestClient]:
    with app_client(Settings(state=history.state, procedures=history.procedures)) as test_client:
        yield test_client
