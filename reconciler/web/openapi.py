"""The OpenAPI document served at ``/api/openapi.json``: written by hand, one entry per route.

``tests/web`` checks that every route the app serves is described here.
"""

from __future__ import annotations

from typing import Any

from reconciler import __version__

_JSON = "application/json"


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_ERROR = {
    "description": "A problem, named",
    "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def document() -> dict[str, Any]:
    nullable_string = {"type": ["string", "null"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reconcile dashboard API",
            "version": __version__,
            "description": "Read-only view of the state branch (SPEC 6.1). On a non-loopback address every "
            "path but /healthz and /hooks/github needs 'Authorization: Bearer <RECONCILE_API_TOKEN>'.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["formatVersion", "error"],
                    "properties": {"formatVersion": {"const": 1}, "error": {"type": "string"}},
                },
                "Lock": {
                    "type": ["object", "null"],
                    "properties": {
                        "id": {"type": "string"},
                        "holder": {"type": "object"},
                        "acquiredAt": {"type": "string", "format": "date-time"},
                        "expiresAt": {"type": "string", "format": "date-time"},
                        "stale": {"type": "boolean"},
                        "staleReason": nullable_string,
                    },
                },
                "Event": {
                    "type": "object",
                    "properties": {
                        "environment": {"type": "string"},
                        "event": {"type": "string", "description": "transition, or an observation's kind"},
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "actor": nullable_string,
                        "desiredCommit": nullable_string,
                        "at": {"type": "string", "format": "date-time"},
                        "detail": nullable_string,
                        "holder": {"type": "string"},
                        "commit": nullable_string,
                    },
                },
                "EnvironmentRow": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "declared": {"type": "boolean"},
                        "desired": nullable_string,
                        "observed": nullable_string,
                        "converged": {"type": "boolean"},
                        "verdict": nullable_string,
                        "reason": nullable_string,
                        "desiredCommit": nullable_string,
                        "lock": {"$ref": "#/components/schemas/Lock"},
                        "failure": {"type": ["object", "null"]},
                        "drift": {"type": ["object", "null"]},
                        "suspended": {"type": ["object", "null"]},
                        "updatedAt": {"type": ["string", "null"], "format": "date-time"},
                        "lastTransition": {
                            "type": ["object", "null"],
                            "description": "the newest transition: event, from, to, at, actor, "
                            "desiredCommit, commit (as status --format json)",
                        },
                        "corrupt": {
                            "type": ["object", "null"],
                            "description": "path and error of a state.json that cannot be read",
                        },
                        "problems": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "EnvironmentList": {
                    "type": "object",
                    "properties": {
                        "formatVersion": {"const": 1},
                        "stateCommit": nullable_string,
                        "desiredCommit": nullable_string,
                        "total": {"type": "integer", "description": "rows matching every filter"},
                        "offset": {"type": "integer"},
                        "limit": {"type": "integer"},
                        "counts": {
                            "type": "object",
                            "description": "by observed state ('none': never observed, 'corrupt'), over "
                            "the rows matching selector and name (before the state filter)",
                            "additionalProperties": {"type": "integer"},
                        },
                        "converged": {"type": "integer"},
                        "environments": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/EnvironmentRow"},
                        },
                    },
                },
                "EnvironmentDetail": {
                    "type": "object",
                    "properties": {
                        "formatVersion": {"const": 1},
                        "environment": {
                            "allOf": [{"$ref": "#/components/schemas/EnvironmentRow"}],
                            "properties": {
                                "spec": {"type": ["object", "null"]},
                                "phases": {"type": "array", "items": {"type": "object"}},
                                "outputs": {"type": "object"},
                                "state": {"type": ["object", "null"], "description": "state.json as stored"},
                                "nextStep": nullable_string,
                            },
                        },
                    },
                },
                "History": {
                    "type": "object",
                    "properties": {
                        "formatVersion": {"const": 1},
                        "environment": {"type": "string"},
                        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                    },
                },
            },
        },
        "paths": {
            "/api/v1/environments": {
                "get": {
                    "summary": "Every environment, filtered and paged",
                    "security": _SECURED,
                    "parameters": [
                        _query(
                            "selector", "labels: key=value or key!=value, comma-separated", {"type": "string"}
                        ),
                        _query(
                            "state",
                            "observed states, 'none' or 'corrupt', comma-separated",
                            {"type": "string"},
                        ),
                        _query("name", "a substring of the name", {"type": "string"}),
                        _query("limit", "rows per page", {"type": "integer", "minimum": 1, "maximum": 10000}),
                        _query("offset", "rows skipped", {"type": "integer", "minimum": 0}),
                    ],
                    "responses": {"200": _ok("A page of the fleet", "EnvironmentList"), "400": _ERROR},
                }
            },
            "/api/v1/environments/{name}": {
                "get": {
                    "summary": "One environment in full: phases, outputs, failure with its trace, lock",
                    "security": _SECURED,
                    "parameters": [_NAME],
                    "responses": {"200": _ok("The environment", "EnvironmentDetail"), "404": _ERROR},
                }
            },
            "/api/v1/environments/{name}/history": {
                "get": {
                    "summary": "The environment's events, newest first",
                    "security": _SECURED,
                    "parameters": [
                        _NAME,
                        _query(
                            "limit", "at most this many", {"type": "integer", "minimum": 1, "maximum": 1000}
                        ),
                    ],
                    "responses": {"200": _ok("Its events", "History"), "404": _ERROR},
                }
            },
            "/api/v1/events": {
                "get": {
                    "summary": "Server-Sent Events: one per state-branch commit (event: transition or the "
                    "observation's kind; id: the commit; data: an Event)",
                    "security": _SECURED,
                    "parameters": [
                        _query(
                            "token",
                            "the bearer token, for EventSource (which cannot send headers)",
                            {"type": "string"},
                        ),
                        _query(
                            "after",
                            "resume after this state-branch commit (as Last-Event-ID)",
                            {"type": "string"},
                        ),
                    ],
                    "responses": {"200": {"description": "The stream", "content": {"text/event-stream": {}}}},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": _SECURED,
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "200 'ok' while the server (and the daemon's threads) run, else 503",
                    "security": [],
                    "responses": {"200": {"description": "healthy"}, "503": {"description": "not healthy"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "security": _SECURED,
                    "responses": {"200": {"description": "The exposition"}},
                }
            },
            "/hooks/github": {
                "post": {
                    "summary": "A GitHub push event, signed (X-Hub-Signature-256, RECONCILE_WEBHOOK_SECRET)",
                    "security": [],
                    "responses": {
                        "202": {"description": "queued: the daemon fetches"},
                        "400": {"description": "bad body"},
                        "403": {"description": "bad or missing signature"},
                        "413": {"description": "too large"},
                        "503": {"description": "no secret configured, or reconcile serve (no reconciling)"},
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The dashboard page",
                    "security": [],
                    "responses": {"200": {"description": "HTML"}},
                }
            },
            "/environments/{name}": {
                "get": {
                    "summary": "One environment's page",
                    "security": [],
                    "parameters": [_NAME],
                    "responses": {"200": {"description": "HTML"}},
                }
            },
            "/static/{path}": {
                "get": {
                    "summary": "The pages' script and style sheet",
                    "security": [],
                    "parameters": [
                        {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "A file"}, "404": {"description": "No such file"}},
                }
            },
        },
    }
