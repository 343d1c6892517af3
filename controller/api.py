"""The operator API under /api/v1 (docs/api.md): bearer tokens with roles, CORS for the
configured origins, JSON in and out, `{"error": "..."}` with the status that says why.

`viewer` tokens may GET; `operator` tokens may also act. Every operator action is an event
(`api.action`: who, what, result) and a count in pvebalance_api_actions_total. The routes only
translate HTTP: what they read and do is controller/operations.py.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response

from controller.config import ApiSettings, Role
from controller.endpoints import Endpoints
from controller.httpio import json_response, read_body
from controller.operations import AUTOMATION_SCHEMA, MIGRATIONS_SCHEMA, PLAN_OVERRIDES_SCHEMA, ApiRefusal
from pveapi.errors import PvebalanceError

log = structlog.get_logger("pvebalance.api")

PREFIX = "/api/v1"


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """A route's request body for /openapi.json (the route reads and checks it itself)."""
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}



def caller(api: ApiSettings, authorization: str, need: Role) -> str | Response:
    """The name of the token sent, if it may do what `need` allows; else the 401 or 403 answer.
    Every token is compared, in constant time, so the answer's timing tells nothing."""
    scheme, _, sent = authorization.partition(" ")
    found = None
    for token in api.tokens:
        if hmac.compare_digest(sent.strip().encode(), token.secret.reveal().encode()) and scheme.lower() == "bearer":
            found = token
    if found is None:
        return json_response(401, {"error": "missing or wrong bearer token (Authorization: Bearer <token>)"},
                             {"WWW-Authenticate": "Bearer"})
    if need == "operator" and found.role != "operator":
        return json_response(403, {"error": f"token {found.name!r} is a viewer token; this needs an operator token"})
    return found.name


def add_api(app: FastAPI, endpoints: Endpoints) -> None:
    api, operations = endpoints.api, endpoints.operations
    if api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(api.cors_origins), allow_methods=["GET", "POST", "PUT"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)

    async def read(request: Request, action: str, answer: Callable[[], Any]) -> Response:
        who = caller(api, request.headers.get("authorization", ""), "viewer")
        if isinstance(who, Response):
            endpoints.count_action(action, "unauthorized")
            return who
        try:
            return json_response(200, await run_in_threadpool(answer))
        except ApiRefusal as exc:
            return json_response(exc.status, {"error": str(exc)})
        except PvebalanceError as exc:
            return json_response(502, {"error": str(exc)})

    async def act(request: Request, action: str, do: Callable[[Any, str], Any], status: int = 202) -> Response:
        """An operator action: authorised, its JSON body read (none: {}), logged and counted."""
        who = caller(api, request.headers.get("authorization", ""), "operator")
        if isinstance(who, Response):
            result = "unauthorized" if who.status_code == 401 else "forbidden"
            endpoints.count_action(action, result)
            log.warning("api.refused", action=action, result=result, client=request.client.host if request.client else None)
            return who
        body = await read_body(request)
        if isinstance(body, Response):
            answer, result = body, "refused"
        else:
            try:
                payload = json.loads(body) if body.strip() else {}
                answer, result = json_response(status, await run_in_threadpool(do, payload, who)), "ok"
            except ValueError:
                answer, result = json_response(400, {"error": "the body is not JSON"}), "refused"
            except ApiRefusal as exc:
                answer, result = json_response(exc.status, {"error": str(exc)}), "refused"
            except PvebalanceError as exc:
                answer, result = json_response(502, {"error": str(exc)}), "error"
        endpoints.count_action(action, result)
        detail = json.loads(bytes(answer.body))
        (log.info if result == "ok" else log.warning)("api.action", who=who, action=action, result=result,
                                                      status=answer.status_code, detail=detail)
        return answer

    @app.post(f"{PREFIX}/plan", summary="A fresh plan, optionally what-if: window, statistic, trigger, max_moves, drain, leave_out",
              openapi_extra=_body(PLAN_OVERRIDES_SCHEMA, required=False))
    async def make_plan(request: Request) -> Response:
        return await act(request, "plan", lambda body, who: operations.make_plan(body), status=200)

    @app.post(f"{PREFIX}/plan/{{plan_id}}/apply", summary="Carry out that exact plan; 409 when it no longer holds")
    async def apply_plan(plan_id: str, request: Request) -> Response:
        return await act(request, "apply_plan", lambda body, who: operations.apply_plan(plan_id, who))

    @app.post(f"{PREFIX}/migrations", summary='One migration {"vmid", "target"} or a batch {"migrations": [...]}',
              openapi_extra=_body(MIGRATIONS_SCHEMA))
    async def migrate(request: Request) -> Response:
        return await act(request, "migrate", operations.migrate)

    @app.post(f"{PREFIX}/cycle", summary="Plan now (and act, in automatic mode)")
    async def cycle(request: Request) -> Response:
        def start(body: Any, who: str) -> dict[str, Any]:
            endpoints.trigger(f"api: {who}")
            return {"triggered": True}
        return await act(request, "cycle", start)

    @app.put(f"{PREFIX}/automation", summary='{"mode": "manual" | "automatic" | "paused"}, kept across restarts',
             openapi_extra=_body(AUTOMATION_SCHEMA))
    async def automation(request: Request) -> Response:
        return await act(request, "automation", lambda body, who: operations.set_automation(body), status=200)

    reads: dict[str, tuple[Callable[[], Any], str]] = {
        "cluster": (operations.cluster, "Nodes, guests with their rules and data source, imbalance, rule problems"),
        "plan": (operations.plan, "The current plan with its plan id"),
        "migrations": (operations.migrations, "Running and recent migrations: task id, state, progress, outcome"),
        "config": (operations.config, "The effective configuration, every secret redacted"),
        "advice": (operations.advice, "The AI advisor's checked suggestions (needs an ai: block)"),
        "outcomes": (operations.outcomes, "Applied plans: what each predicted and what was measured at each horizon"),
    }
    for name, (answer, summary) in reads.items():
        app.add_api_route(f"{PREFIX}/{name}", _reader(read, name, answer), methods=["GET"], summary=summary, name=name)

    @app.post(f"{PREFIX}/nodes/{{node}}/drain", summary="Drain the node for maintenance, as `pvebalance drain NODE`")
    async def drain(node: str, request: Request) -> Response:
        return await act(request, "drain", lambda body, who: operations.drain(node, who, undrain=False))

    @app.post(f"{PREFIX}/nodes/{{node}}/undrain", summary="End the drain, bring its guests back, as `pvebalance undrain NODE`")
    async def undrain(node: str, request: Request) -> Response:
        return await act(request, "undrain", lambda body, who: operations.drain(node, who, undrain=True))


def _reader(read: Callable[..., Any], action: str, answer: Callable[[], Any]) -> Callable[[Request], Any]:
    async def route(request: Request) -> Response:
        response: Response = await read(request, action, answer)
        return response

    return route
