"""Who may do what in the suite's pages and API, in the terms of Airflow's auth manager.

Every route of the plugin app depends on :func:`require` with one :class:`Action`. The check asks Airflow's
configured auth manager (``is_authorized_*``), so the suite follows whatever the deployment uses (the simple auth
manager of ``make run``, FAB, Keycloak, …) and needs no role table of its own. Each action is one question to the
auth manager, chosen so that the suite's rights sit where Airflow already puts the same power:

================  ======================================================================  ===========================
action            asked of the auth manager                                               simple auth manager roles
================  ======================================================================  ===========================
``read``          ``is_authorized_custom_view(GET, "Demo Bank")``: the suite's pages and  Viewer, User, Op, Admin
                  read APIs (targets, deliveries, event types, sandbox outbox)
``publish``       ``is_authorized_dag(POST, RUN, events_dispatch)``: publishing an event  User, Op, Admin
                  starts the dispatcher DAG, so it is the right to trigger that DAG
``manage``        ``is_authorized_connection(PUT)``: a target (or a Monte Carlo report)   Op, Admin
                  decides where the bank's data goes, like a connection does
``trigger_dag``   ``is_authorized_dag(POST, RUN, <dag_id>)``: saving, enabling, pinging   User, Op, Admin
                  or replaying an ``airflow_dag`` target starts that DAG (the DAG of the  (with ``manage``: Op, Admin)
                  body when saving, the target's otherwise)
================  ======================================================================  ===========================

Reads of a DAG's own records (the Data Quality tab) also ask ``is_authorized_dag(GET, RUN, <dag_id>)``, as
Airflow's own run endpoints do (:func:`require_dag_access`, :func:`ensure_dag_access`).

:func:`checks_of` lists a route's permission dependencies; ``tests/ui/test_route_permissions.py`` uses it to fail
for any route of the plugin app without one, or missing from the expectation table ``tests/ui/route_matrix.py``.

A refusal is ``403`` with a message naming the action, the question asked of the auth manager and the user; never a
bare "Forbidden". Tests replace the auth manager with :func:`use_auth_manager` (FastAPI dependency override).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager, ResourceMethod
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

SUITE_VIEW = "Demo Bank"
"""The custom view (Airflow's ``is_authorized_custom_view`` resource name) of the suite's pages."""

DISPATCH_DAG_ID = "events_dispatch"
"""Publishing an event starts this DAG: the right to publish is the right to trigger it."""


class Action(StrEnum):
    """What a route does, as far as permissions go."""

    READ = "read"
    PUBLISH = "publish"
    MANAGE = "manage"


@dataclass(frozen=True)
class Question:
    """One ``is_authorized_*`` call: what it is about, and how a refusal describes it."""

    action: str
    """What the user tried, for the message ("manage event targets")."""
    permission: str
    """The permission in Airflow's terms ("PUT on Connections"), for the message."""


_QUESTIONS: dict[Action, Question] = {
    Action.READ: Question("read the Demo Bank pages and API", f"GET on the custom view {SUITE_VIEW!r}"),
    Action.PUBLISH: Question("publish events", f"POST on DAG runs of {DISPATCH_DAG_ID!r} (trigger the dispatcher)"),
    Action.MANAGE: Question("manage event targets and requeue dead letters",
                            "PUT on Connections (Airflow's Op or Admin role)"),
}


def auth_manager() -> BaseAuthManager:
    """Airflow's auth manager of this API server (a FastAPI dependency: tests override it)."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def _current_user() -> Any:
    # Imported here so that this module (and the routes' signatures) import without a configured Airflow.
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


AuthManagerDep = Annotated[Any, Depends(auth_manager)]
"""A route parameter: the auth manager (a real object, so that it resolves in any module's signatures)."""


def is_allowed(manager: BaseAuthManager, user: BaseUser, action: Action, *, conn_id: str | None = None) -> bool:
    """Whether ``user`` may do ``action`` (see the table of the module docstring)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        ConnectionDetails,
        DagAccessEntity,
        DagDetails,
    )

    if action is Action.READ:
        return manager.is_authorized_custom_view(method="GET", resource_name=SUITE_VIEW, user=user)
    if action is Action.PUBLISH:
        return manager.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                         details=DagDetails(id=DISPATCH_DAG_ID), user=user)
    return manager.is_authorized_connection(method="PUT", details=ConnectionDetails(conn_id=conn_id), user=user)


def may_access_dag(manager: BaseAuthManager, user: BaseUser, dag_id: str, method: ResourceMethod) -> bool:
    """Whether ``user`` may read (``GET``) or trigger (``POST``) runs of ``dag_id``."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return manager.is_authorized_dag(method=method, access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id),
                                     user=user)


def forbidden(user: BaseUser, action: str, permission: str) -> HTTPException:
    """The 403 of a refused action: what was tried, the permission it needs, who asked."""
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"forbidden: user {user.get_name()!r} may not {action}; it needs {permission}. Ask an administrator for a "
        "role that has it.",
    )


def ensure(manager: BaseAuthManager, user: BaseUser, action: Action, *, conn_id: str | None = None) -> None:
    """Raise the 403 of ``action`` unless ``user`` may do it."""
    if not is_allowed(manager, user, action, conn_id=conn_id):
        question = _QUESTIONS[action]
        raise forbidden(user, question.action, question.permission)


def ensure_dag_access(manager: BaseAuthManager, user: BaseUser, dag_id: str, method: ResourceMethod,
                      why: str) -> None:
    """Raise a 403 unless ``user`` may read (``GET``) or trigger (``POST``) runs of ``dag_id``.

    :param why: what the user tried, e.g. "save an airflow_dag target for it".
    """
    if not may_access_dag(manager, user, dag_id, method):
        verb = "read runs of" if method == "GET" else "trigger"
        raise forbidden(user, why, f"{method} on DAG runs of {dag_id!r} (the right to {verb} that DAG)")


def _dependency(check: Any, **parameters: Any) -> Any:
    """``Depends(check)`` with the user and the auth manager as its dependencies.

    The annotations are set as objects, not the strings of ``from __future__ import annotations``: FastAPI resolves
    string annotations in this module's globals, where Airflow's ``get_user`` (imported lazily) is not, and would
    take the parameters for query parameters.
    """
    check.__annotations__ = {**parameters, "user": Annotated[Any, Depends(_current_user())],
                             "manager": Annotated[Any, Depends(auth_manager)], "return": Any}
    return Depends(check)


def require(action: Action) -> Any:
    """A route dependency: the signed-in user (401 without one) may do ``action`` (403 otherwise); returns the user.

    The dependency carries ``required_action`` (see :func:`checks_of`).
    """

    def check(user: Any, manager: Any) -> Any:
        ensure(manager, user, action)
        return user

    check.required_action = action  # type: ignore[attr-defined]
    check.__name__ = f"require_{action.value}"
    return _dependency(check)


def require_dag_access(method: ResourceMethod, why: str) -> Any:
    """A route dependency for a route with a ``{dag_id}`` path parameter: the user may read (``GET``) or trigger
    (``POST``) that DAG's runs (403 with the suite's message otherwise); returns the user.

    :param why: what the route does, for the message ("read the data quality record of this DAG").
    """

    def check(dag_id: str, user: Any, manager: Any) -> Any:
        ensure_dag_access(manager, user, dag_id, method, why)
        return user

    check.required_dag_access = method  # type: ignore[attr-defined]
    check.__name__ = f"require_dag_{method.lower()}"
    return _dependency(check, dag_id=str)


def checks_of(route: Any) -> list[str]:
    """The permission checks among a route's dependencies (its router's included): ``"read"``, ``"publish"``,
    ``"manage"`` for :func:`require`, ``"dag GET"``/``"dag POST"`` for :func:`require_dag_access`; in order.

    Checks that depend on the request's body (the DAG of an ``airflow_dag`` target) are made in the handler and are
    not listed here.
    """
    found: list[str] = []

    def walk(dependant: Any) -> None:
        for dependency in dependant.dependencies:
            call = dependency.call
            if getattr(call, "required_action", None) is not None:
                found.append(call.required_action.value)
            elif getattr(call, "required_dag_access", None) is not None:
                found.append(f"dag {call.required_dag_access}")
            walk(dependency)

    walk(route.dependant)
    return found


def question_of(action: Action) -> Question:
    """What ``action`` is and the permission it needs, in the words of the 403 (for pages that explain)."""
    return _QUESTIONS[action]


def permissions_of(manager: BaseAuthManager, user: BaseUser) -> dict[str, bool]:
    """What the user may do, for the pages (which hide what the user cannot do; the API still checks)."""
    return {action.value: is_allowed(manager, user, action) for action in Action}


def use_auth_manager(app: Any, manager: BaseAuthManager, user: BaseUser | None = None) -> None:
    """Tests: answer permission questions with ``manager`` (and, with ``user``, sign every request in as it)."""
    app.dependency_overrides[auth_manager] = lambda: manager
    if user is not None:
        app.dependency_overrides[_current_user()] = lambda: user
