"""``/openapi.json``: the API's schema, its bodies generated from the pydantic models.

The paths are listed here once, beside the routes they describe; the tests run
schemathesis against this document and the live server, so it has to stay true.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from supervisor import __version__
from supervisor.protocol import DeploymentRequest, DeploymentResponse

from ._models import DeployBody, Problem, Refusal


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*codes: int) -> dict[str, Any]:
    titles = {
        400: "Malformed JSON",
        401: "No or wrong token",
        403: "The token may not do this",
        404: "No such agent or route",
        409: "Conflict (id taken, or the agent is not running)",
        413: "Body too large",
        421: "Host not served here",
        422: "Invalid input, or the deploy was refused",
    }
    # A 403 may come from the service too (an agent acting outside its subtree): then it
    # is a refusal, a problem that is also the failed DeploymentResponse.
    either = {"anyOf": [_ref("Refusal"), _ref("Problem")]}
    return {
        str(code): {
            "description": titles[code],
            "content": {
                "application/problem+json": {"schema": either if code == 403 else _ref("Problem")}
            },
        }
        for code in codes
    }


def _failed(*codes: int) -> dict[str, Any]:
    """Refusals: a problem whose members are also the failed DeploymentResponse."""
    return {
        str(code): {
            "description": "Refused: a problem that is also the failed response (with its code)",
            "content": {
                "application/problem+json": {
                    "schema": {"anyOf": [_ref("Refusal"), _ref("Problem")]}
                },
            },
        }
        for code in codes
    }


_AUTH = (401, 421)
_ID = {
    "name": "agent_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
    "description": "An agent id",
}


def openapi_document() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [
        (DeploymentRequest, "validation"),
        (DeploymentResponse, "serialization"),
        (DeployBody, "validation"),
        (Problem, "serialization"),
        (Refusal, "serialization"),
    ]
    _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    response = _ref("DeploymentResponse")
    paths: dict[str, Any] = {
        "/v1/health": {
            "get": {
                "summary": "Liveness (no token needed)",
                "security": [],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string"},
                                "version": {"type": "string"},
                            },
                            "required": ["status", "version"],
                        },
                        "The coordinator answers",
                    ),
                    **_problems(421),
                },
            }
        },
        "/v1/requests": {
            "post": {
                "summary": "A whole seed DeploymentRequest (any action), exactly once per id",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("DeploymentRequest")}},
                },
                "responses": {
                    "200": _json(response, "The answer (recorded; a repeat gets the same)"),
                    **_problems(400, 403, 413, 422, *_AUTH),
                },
            }
        },
        "/v1/agents": {
            "post": {
                "summary": "Deploy an agent",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("DeployBody")}},
                },
                "responses": {
                    "201": _json(response, "Deployed"),
                    **_failed(404, 409, 422),
                    **_problems(400, 403, 413, *_AUTH),
                },
            },
            "get": {
                "summary": "Every agent (operator only)",
                "responses": {
                    "200": _json(response, "agents: one entry per agent"),
                    **_problems(403, *_AUTH),
                },
            },
        },
        "/v1/agents/{agent_id}": {
            "parameters": [_ID],
            "get": {
                "summary": "Status of one agent",
                "responses": {
                    "200": _json(response, "Its status"),
                    **_failed(404),
                    **_problems(403, 422, *_AUTH),
                },
            },
            "delete": {
                "summary": "Terminate an agent and its subtree; returns once verified empty",
                "responses": {
                    "200": _json(response, "Terminated"),
                    **_failed(404, 409),
                    **_problems(403, 422, *_AUTH),
                },
            },
        },
        "/v1/agents/{agent_id}/restart": {
            "parameters": [_ID],
            "post": {
                "summary": "Stop an agent (subtree first) and start it afresh",
                "responses": {
                    "200": _json(response, "Restarted"),
                    **_failed(404, 422),
                    **_problems(403, *_AUTH),
                },
            },
        },
        "/v1/agents/{agent_id}/logs": {
            "parameters": [
                _ID,
                {
                    "name": "tail",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 10000},
                },
            ],
            "get": {
                "summary": "The last lines of an agent's output log",
                "responses": {
                    "200": {
                        "description": "Log text",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_problems(403, 404, 422, *_AUTH),
                },
            },
        },
        "/v1/tree": {
            "get": {
                "summary": "The live supervision tree (operator only)",
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"tree": {"type": "object"}}},
                        "The tree",
                    ),
                    **_problems(403, *_AUTH),
                },
            }
        },
        "/v1/events": {
            "get": {
                "summary": "Lifecycle events as Server-Sent Events; resume with Last-Event-ID",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "An event stream (id: sequence, data: the event's JSON)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_problems(403, *_AUTH),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (operator only)",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_problems(403, *_AUTH),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI document"),
                    **_problems(*_AUTH),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ziggie coordinator API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
