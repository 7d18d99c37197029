"""The suite's permission model asked of Airflow's simple auth manager (the one of `make run`), per role."""

from __future__ import annotations

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi import HTTPException

from demobank.ui.permissions import Action, ensure, ensure_dag_access, is_allowed, may_access_dag, permissions_of

EXPECTED = {
    "viewer": {"read": True, "publish": False, "manage": False},
    "user": {"read": True, "publish": True, "manage": False},
    "op": {"read": True, "publish": True, "manage": True},
    "admin": {"read": True, "publish": True, "manage": True},
}


@pytest.fixture(scope="module")
def manager() -> SimpleAuthManager:
    return SimpleAuthManager()


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_gets_the_matrix_of_the_issue(manager: SimpleAuthManager, role: str) -> None:
    user = SimpleAuthManagerUser(username=f"someone-{role}", role=role)
    assert permissions_of(manager, user) == EXPECTED[role]
    assert may_access_dag(manager, user, "connect_transaction_alert", "GET")
    assert may_access_dag(manager, user, "connect_transaction_alert", "POST") is (role != "viewer")


def test_a_user_without_a_role_may_do_nothing(manager: SimpleAuthManager) -> None:
    user = SimpleAuthManagerUser(username="nobody", role=None)
    assert not any(is_allowed(manager, user, action) for action in Action)


def test_a_refusal_names_the_action_the_permission_and_the_user(manager: SimpleAuthManager) -> None:
    viewer = SimpleAuthManagerUser(username="viewer", role="viewer")
    with pytest.raises(HTTPException) as refused:
        ensure(manager, viewer, Action.MANAGE)
    assert refused.value.status_code == 403
    assert "'viewer' may not manage event targets" in refused.value.detail
    assert "PUT on Connections" in refused.value.detail
    with pytest.raises(HTTPException) as refused:
        ensure(manager, viewer, Action.PUBLISH)
    assert "POST on DAG runs of 'events_dispatch'" in refused.value.detail
    with pytest.raises(HTTPException) as refused:
        ensure_dag_access(manager, viewer, "connect_transaction_alert", "POST", "save an airflow_dag target for it")
    assert "may not save an airflow_dag target for it" in refused.value.detail
    assert "POST on DAG runs of 'connect_transaction_alert'" in refused.value.detail
    ensure(manager, SimpleAuthManagerUser(username="op", role="op"), Action.MANAGE)
