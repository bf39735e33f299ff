"""The registry's HTTP API (token auth): what devices, rollout tooling and reviewers call.

    GET  /api/v1/models                                   model names
    GET  /api/v1/models/{model}/versions                  versions with stages and reviews
    GET  /api/v1/versions/{model}/{n}                     one version with its whole record
    GET  /api/v1/versions/{model}/{n}/bundle              the signed bundle (.tar.gz)
    GET  /api/v1/versions/{model}/{n}/card?format=md      the model card (md or json)
    POST /api/v1/versions/{model}/{n}/reviews             {"decision": "approve", "comment": ""}
    POST /api/v1/versions/{model}/{n}/promotions          {"target": T, "stage": S, "reason": ""}
    POST /api/v1/versions/{model}/{n}/outcomes            {"target", "stage", "passed", "evidence"}
    GET  /api/v1/targets                                  targets and their conditions
    GET  /api/v1/targets/{target}/assignments             per model: what each stage runs now
    GET  /api/v1/devices?target=T                         last report of each device
    GET  /api/v1/devices/{device}/assignment?target=T     what device D of target T should run
    POST /api/v1/devices/{device}/reports                 {"target", "state", "version", "manifest_sha256", "detail"}
    GET  /api/v1/audit?subject=&limit=                    newest audit entries

Every call needs ``Authorization: Bearer <token>``. Errors are JSON ``{"error": code,
"message": text}``: 401 bad token, 403 refused by a rule (the code names it), 404 unknown,
409 tampered, 400 bad input.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from plantml.registry.bundles import bundle_archive
from plantml.registry.cards import card_markdown
from plantml.registry.errors import AuthError, NotFound, Refused, RegistryError, TamperError
from plantml.registry.service import Registry


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _errors(app: FastAPI) -> None:
    def reply(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": code, "message": message}, status_code=status)

    @app.exception_handler(AuthError)
    async def _auth(_, exc: AuthError):
        return reply(401, exc.code, exc.message)

    @app.exception_handler(Refused)
    async def _refused(_, exc: Refused):
        return reply(403, exc.code, exc.message)

    @app.exception_handler(NotFound)
    async def _missing(_, exc: NotFound):
        return reply(404, "not_found", str(exc))

    @app.exception_handler(TamperError)
    async def _tamper(_, exc: TamperError):
        return reply(409, "tampered", str(exc))

    @app.exception_handler(RegistryError)
    async def _bad(_, exc: RegistryError):
        return reply(400, "bad_request", str(exc))


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise RegistryError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise RegistryError("the request body must be a JSON object")
    return body


def api_routes(app: FastAPI, reg: Registry) -> None:
    def reader(request: Request) -> None:
        reg.authenticate(_bearer(request), "read")

    @app.get("/api/v1/models")
    def models(request: Request):
        reader(request)
        return {"models": reg.models()}

    @app.get("/api/v1/models/{model}/versions")
    def versions(model: str, request: Request):
        reader(request)
        return {"versions": reg.versions(model)}

    @app.get("/api/v1/versions/{model}/{number}")
    def version(model: str, number: int, request: Request):
        reader(request)
        return reg.version(f"{model}:{number}")

    @app.get("/api/v1/versions/{model}/{number}/bundle")
    def bundle(model: str, number: int, request: Request):
        reader(request)
        name, data = bundle_archive(reg, f"{model}:{number}")
        digest = reg.version(f"{model}:{number}")["manifest_sha256"]
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Manifest-SHA256": digest,
        }
        return Response(data, media_type="application/gzip", headers=headers)

    @app.get("/api/v1/versions/{model}/{number}/card")
    def card(model: str, number: int, request: Request, format: str = "md"):
        reader(request)
        card = reg.card(f"{model}:{number}")
        return (
            card
            if format == "json"
            else PlainTextResponse(card_markdown(card), media_type="text/markdown")
        )

    @app.post("/api/v1/versions/{model}/{number}/reviews")
    async def review(model: str, number: int, request: Request):
        body = await _body(request)
        reg.review(
            _bearer(request),
            f"{model}:{number}",
            str(body.get("decision")),
            str(body.get("comment", "")),
        )
        return reg.version(f"{model}:{number}")["reviews"][-1]

    @app.post("/api/v1/versions/{model}/{number}/promotions")
    async def promote(model: str, number: int, request: Request):
        body = await _body(request)
        return reg.promote(
            _bearer(request),
            f"{model}:{number}",
            str(body.get("target")),
            str(body.get("stage")),
            str(body.get("reason", "")),
        )

    @app.post("/api/v1/versions/{model}/{number}/outcomes")
    async def outcome(model: str, number: int, request: Request):
        body = await _body(request)
        if not isinstance(body.get("passed"), bool):
            raise RegistryError("'passed' must be true or false")
        reg.record_rollout_outcome(
            _bearer(request),
            f"{model}:{number}",
            str(body.get("target")),
            str(body.get("stage")),
            body["passed"],
            body.get("evidence") or {},
        )
        return {"recorded": True}

    @app.get("/api/v1/targets")
    def targets(request: Request):
        reader(request)
        return {"targets": reg.targets()}

    @app.get("/api/v1/targets/{target}/assignments")
    def assignments(target: str, request: Request):
        reader(request)
        return {"target": target, "assignments": reg.assignments(target)}

    @app.get("/api/v1/devices")
    def devices(request: Request, target: str | None = None):
        reader(request)
        return {"devices": reg.devices(target)}

    @app.get("/api/v1/devices/{device}/assignment")
    def device_assignment(device: str, target: str, request: Request):
        reader(request)
        last = [d for d in reg.devices(target) if d["device_id"] == device]
        return {
            "device": device,
            "target": target,
            "assignments": reg.assignments(target),
            "last_report": last[0] if last else None,
        }

    @app.post("/api/v1/devices/{device}/reports")
    async def report(device: str, request: Request):
        body = await _body(request)
        return reg.report_device(
            _bearer(request),
            device,
            str(body.get("target")),
            str(body.get("state")),
            body.get("version"),
            body.get("manifest_sha256"),
            body.get("detail") or {},
        )

    @app.get("/api/v1/audit")
    def audit_log(request: Request, subject: str | None = None, limit: int = 100):
        reader(request)
        return {"entries": reg.audit_entries(subject, min(max(limit, 1), 1000))}


def create_app(reg: Registry, secure_cookies: bool = False) -> FastAPI:
    """The ASGI app: the API and the review page over ``reg``."""
    from plantml.registry.server.pages import page_routes

    app = FastAPI(title="plantml registry", docs_url=None, redoc_url=None, openapi_url=None)
    _errors(app)
    api_routes(app, reg)
    page_routes(app, reg, secure_cookies)
    return app
