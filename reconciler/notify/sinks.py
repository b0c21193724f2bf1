"""The three kinds of sink (SPEC 9): each turns a notification into one HTTP request.

A sink raises ``DeliveryError`` to have the request retried (a network error,
a timeout, a 5xx or 429) and ``PermanentDeliveryError`` when retrying cannot
help (a 4xx: a wrong token, a wrong URL). Secrets come from the environment
at start and never appear in a log line or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from reconciler.desired.models import NotifyEvent, NotifySink, SecretRef
from reconciler.notify.model import Notification

#: Seconds one request may take (a receiver that hangs costs its own sink this much, nobody else).
REQUEST_TIMEOUT = 10.0
SIGNATURE_HEADER = "X-Reconcile-Signature-256"
USER_AGENT = "reconcile-notifier/1"


class DeliveryError(Exception):
    """A delivery that may succeed when retried."""


class PermanentDeliveryError(DeliveryError):
    """A delivery the receiver refused for good (retrying cannot help)."""


class SinkConfigError(ValueError):
    """A sink whose secret is not in the environment."""


class Sink(Protocol):
    name: str

    def wants(self, notification: Notification) -> bool: ...

    def deliver(self, notification: Notification) -> None: ...


@dataclass
class _Filter:
    events: frozenset[str]
    selector: Mapping[str, str] = field(default_factory=dict)

    def wants(self, n: Notification) -> bool:
        return n.kind in self.events and all(n.labels.get(k) == v for k, v in self.selector.items())


def sign(secret: bytes, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``, as ``X-Reconcile-Signature-256`` carries it."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: float = REQUEST_TIMEOUT) -> int:
    """POST ``body``; the status on 2xx, ``DeliveryError``/``PermanentDeliveryError`` otherwise."""
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 - http(s) only, validated
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", USER_AGENT)
    for key, value in headers.items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 429 or e.code >= 500:
            raise DeliveryError(f"HTTP {e.code}") from None
        raise PermanentDeliveryError(f"HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DeliveryError(f"{type(reason).__name__}: {reason}") from None


class WebhookSink:
    def __init__(self, name: str, url: str, secret: str | None, wanted: _Filter) -> None:
        self.name, self._url, self._secret, self._filter = name, url, secret, wanted

    def wants(self, notification: Notification) -> bool:
        return self._filter.wants(notification)

    def deliver(self, notification: Notification) -> None:
        body = json.dumps(notification.payload(), sort_keys=True).encode()
        headers = {"X-Reconcile-Event": notification.kind, "X-Reconcile-Delivery": notification.id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret.encode(), body)
        post_json(self._url, body, headers)


class GithubStatusSink:
    """``POST {apiUrl}/repos/{owner}/{repo}/statuses/{sha}`` on the desired commit, context
    ``reconcile/<environment>``."""

    def __init__(self, name: str, api_url: str, repository: str, token: str, wanted: _Filter) -> None:
        self.name, self._api, self._repository, self._token, self._filter = (
            name,
            api_url.rstrip("/"),
            repository,
            token,
            wanted,
        )

    def wants(self, notification: Notification) -> bool:
        return (
            notification.status is not None
            and notification.desired_commit is not None
            and self._filter.wants(notification)
        )

    def deliver(self, notification: Notification) -> None:
        state = notification.status
        if state is None or notification.desired_commit is None:
            return
        body = json.dumps(
            {
                "state": state,
                "context": f"reconcile/{notification.environment}",
                "description": notification.headline()[:140],
            }
        ).encode()
        url = f"{self._api}/repos/{self._repository}/statuses/{notification.desired_commit}"
        post_json(
            url,
            body,
            {
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )


class SlackSink:
    def __init__(self, name: str, url: str, wanted: _Filter) -> None:
        self.name, self._url, self._filter = name, url, wanted

    def wants(self, notification: Notification) -> bool:
        return self._filter.wants(notification)

    def deliver(self, notification: Notification) -> None:
        body = json.dumps({"text": notification.headline()}).encode()
        post_json(self._url, body, {})


def _secret(ref: SecretRef, environ: Mapping[str, str], where: str) -> str:
    value = environ.get(ref.from_env)
    if not value:
        raise SinkConfigError(f"{where}: the environment variable {ref.from_env} is not set")
    return value


def build_sinks(config: list[NotifySink], environ: Mapping[str, str]) -> tuple[list[Sink], list[str]]:
    """The sinks of ``notify`` in reconciler.yaml, and a problem line for each that cannot run."""
    sinks: list[Sink] = []
    problems: list[str] = []
    for index, entry in enumerate(config):
        name = f"{entry.kind}-{index}"
        where = f"reconciler.yaml: notify[{index}] ({entry.kind})"
        wanted = _Filter(frozenset(str(e) for e in (entry.events or list(NotifyEvent))), dict(entry.selector))
        try:
            if entry.webhook is not None:
                secret = (
                    None if entry.webhook.secret is None else _secret(entry.webhook.secret, environ, where)
                )
                sinks.append(WebhookSink(name, entry.webhook.url, secret, wanted))
            elif entry.github is not None:
                token = _secret(entry.github.token, environ, where)
                sinks.append(
                    GithubStatusSink(name, entry.github.api_url, entry.github.repository, token, wanted)
                )
            elif entry.slack is not None:
                sinks.append(SlackSink(name, _secret(entry.slack.url, environ, where), wanted))
        except SinkConfigError as e:
            problems.append(str(e))
    return sinks, problems
