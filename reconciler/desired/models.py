"""The schemas of the files in a GitOps repository (SPEC section 2).

These pydantic models are the edge: YAML comes in here, is refused here with
the field's location, and leaves as plain frozen values. Unknown fields are
errors everywhere, so a typo never silently does nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import pygit2
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from reconciler.domain.states import Phase

#: SPEC section 2.1: names of environments and blueprints.
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
API_VERSION = "reconciler/v1"
#: SPEC section 7: a duration is at most 7 days.
MAX_SECONDS = 7 * 24 * 3600
#: How many times a failed phase may be retried: more would only ever wait on a backoff.
MAX_RETRIES = 1000
#: SPEC section 7: a step's ``env`` keys, the environment variable names a shell accepts.
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]
Seconds = Annotated[int, Field(gt=0, le=MAX_SECONDS)]


class Schema(BaseModel):
    """Strict, frozen, camelCase in YAML."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
        allow_inf_nan=False,
    )


class DesiredState(StrEnum):
    """What an environment file may ask for."""

    CREATED = "created"
    PROVISIONED = "provisioned"
    CONFIGURED = "configured"
    RELEASED = "released"
    RUNNING = "running"
    DESTROYED = "destroyed"


class SecretRef(Schema):
    """``{fromEnv: NAME}``: read from the reconciler's environment at run time, never written anywhere."""

    from_env: EnvName


#: A declared value: scalars, lists, maps, or a secret reference.
VarValue = SecretRef | str | int | float | bool | None | list[Any] | dict[str, Any]


class ShellStep(Schema):
    """``run`` does it; ``check`` (optional) says whether its effect still holds: non-zero is drift.

    Neither is ever templated; ``check`` runs with the same environment, ``cwd`` and timeout as ``run``.
    """

    run: str
    check: str | None = None
    env: dict[EnvName, SecretRef | str] = Field(default_factory=dict)
    cwd: str | None = None
    timeout_seconds: Seconds | None = None


class TofuStep(Schema):
    module: str
    vars: dict[str, VarValue] = Field(default_factory=dict)
    action: Literal["apply", "destroy"] = "apply"
    binary: str | None = None


class AnsibleStep(Schema):
    playbook: str
    inventory: str | None = None
    extra_vars: dict[str, VarValue] = Field(default_factory=dict)


class HttpStep(Schema):
    url: str
    expect_status: int = Field(default=200, ge=100, le=599)
    timeout_seconds: float = Field(default=30, gt=0, le=MAX_SECONDS)


class StepKind(StrEnum):
    SHELL = "shell"
    TOFU = "tofu"
    ANSIBLE = "ansible"
    HTTP = "http"


class Step(Schema):
    """One step: exactly one of ``shell``, ``tofu``, ``ansible``, ``http``.

    ``name`` labels it in failures and traces; ``reapply`` (check steps only)
    names the phase to re-apply from when the check fails.
    """

    name: str | None = None
    shell: ShellStep | None = None
    tofu: TofuStep | None = None
    ansible: AnsibleStep | None = None
    http: HttpStep | None = None
    reapply: Literal["provision", "configure", "release", "run"] | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Step:
        kinds = [k for k in StepKind if getattr(self, k.value) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            raise ValueError(f"a step needs exactly one of: shell, tofu, ansible, http (found: {found})")
        return self

    @property
    def kind(self) -> StepKind:
        return next(k for k in StepKind if getattr(self, k.value) is not None)

    @property
    def body(self) -> ShellStep | TofuStep | AnsibleStep | HttpStep:
        body: ShellStep | TofuStep | AnsibleStep | HttpStep | None = getattr(self, self.kind.value)
        assert body is not None
        return body

    def describe(self) -> str:
        """What the step is, for failures and traces: ``tofu apply infra/vm``."""
        if self.name:
            return self.name
        body = self.body
        if isinstance(body, ShellStep):
            first = body.run.strip().splitlines()[0] if body.run.strip() else ""
            return f"shell {first[:60]}"
        if isinstance(body, TofuStep):
            return f"tofu {body.action} {body.module}"
        if isinstance(body, AnsibleStep):
            return f"ansible {body.playbook}"
        return f"http {body.url}"


class Phases(Schema):
    """Each phase's steps; a phase left out comes from the blueprint, else is a no-op."""

    provision: list[Step] | None = None
    configure: list[Step] | None = None
    release: list[Step] | None = None
    run: list[Step] | None = None
    destroy: list[Step] | None = None
    check: list[Step] | None = None

    def get(self, phase: Phase | Literal["check"]) -> list[Step] | None:
        steps: list[Step] | None = getattr(self, str(phase))
        return steps


class Retry(Schema):
    limit: int = Field(default=3, ge=0, le=MAX_RETRIES)
    backoff_seconds: float = Field(default=30, ge=0, le=MAX_SECONDS)


class DriftSpec(Schema):
    """``spec.drift`` (SPEC 3.1): look for drift of completed phases, and re-apply what drifted."""

    detect: bool = True
    heal: bool = True


class Metadata(Schema):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)


#: Shared defaults: frozen, so one instance serves every file that leaves them out (a
#: ``default_factory`` of a model cost a validation per file: half of validating a small one).
_DEFAULT_RETRY = Retry()
_NO_PHASES = Phases()
_DEFAULT_DRIFT = DriftSpec()


class EnvironmentSpec(Schema):
    desired_state: DesiredState
    blueprint: Name | None = None
    vars: dict[str, VarValue] = Field(default_factory=dict)
    depends_on: list[Name] = Field(default_factory=list)
    suspend: bool = False
    protected: bool = False
    retry: Retry = _DEFAULT_RETRY
    timeout_seconds: Seconds = 1800
    phases: Phases = _NO_PHASES
    drift: DriftSpec = _DEFAULT_DRIFT


class EnvironmentFile(Schema):
    api_version: Literal["reconciler/v1"]
    kind: Literal["Environment"]
    metadata: Metadata
    spec: EnvironmentSpec


class BlueprintSpec(Schema):
    vars: dict[str, VarValue] = Field(default_factory=dict)
    phases: Phases = Field(default_factory=Phases)


class BlueprintMetadata(Schema):
    name: Name


class BlueprintFile(Schema):
    api_version: Literal["reconciler/v1"]
    kind: Literal["Blueprint"]
    metadata: BlueprintMetadata
    spec: BlueprintSpec = Field(default_factory=BlueprintSpec)


class Identity(Schema):
    name: str = "reconciler"
    email: str = "reconciler@localhost"


class SignaturePolicy(StrEnum):
    OFF = "off"
    REQUIRED = "required"


class Verify(Schema):
    """SPEC section 10: act only on signed commits (see ``desired/trust.py``)."""

    signatures: SignaturePolicy = SignaturePolicy.OFF


class NotifyEvent(StrEnum):
    """What a notification sink may subscribe to (SPEC 9)."""

    TRANSITION = "transition"
    FAILED = "failed"
    BLOCKED = "blocked"
    CONVERGED = "converged"
    DRIFT = "drift"
    IN_SYNC = "in-sync"


class WebhookSink(Schema):
    """POST of one JSON event, signed ``X-Reconcile-Signature-256`` with the secret."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    secret: SecretRef | None = None


class GithubSink(Schema):
    """A commit status on the desired commit, context ``reconcile/<environment>``."""

    repository: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
    token: SecretRef
    api_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] = "https://api.github.com"


class SlackSink(Schema):
    """A Slack incoming webhook; its URL is a secret."""

    url: SecretRef


class NotifySink(Schema):
    """One entry of ``notify``: exactly one of ``webhook``, ``github``, ``slack``."""

    webhook: WebhookSink | None = None
    github: GithubSink | None = None
    slack: SlackSink | None = None
    #: Default: every event.
    events: list[NotifyEvent] | None = None
    #: Labels an environment must all have (``{team: tracker}``) for its events to be sent here.
    selector: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> NotifySink:
        kinds = [k for k in ("webhook", "github", "slack") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a notify entry has exactly one of webhook, github, slack "
                f"(found {', '.join(kinds) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return "webhook" if self.webhook else "github" if self.github else "slack"


class ConfigFile(Schema):
    """``reconciler.yaml``; every field optional."""

    api_version: Literal["reconciler/v1"] = "reconciler/v1"
    kind: Literal["Config"] = "Config"
    branch: str | None = None
    state_ref: str = "refs/heads/reconciler/state"
    remote: str | None = None
    prune: bool = False
    identity: Identity = Field(default_factory=Identity)
    verify: Verify = Field(default_factory=Verify)
    notify: list[NotifySink] = Field(default_factory=list)

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("refs/") or not _valid_ref(f"refs/heads/{value}")):
            raise ValueError(f"{value!r} is not a branch name; write one as `git branch` shows it, e.g. main")
        return value

    @field_validator("state_ref")
    @classmethod
    def _state_ref_name(cls, value: str) -> str:
        why = state_ref_refusal(value, None)
        if why is not None:
            raise ValueError(why)
        return value


def _valid_ref(name: str) -> bool:
    return "\0" not in name and bool(pygit2.reference_is_valid_name(name))


def state_ref_refusal(ref: str, branch: str | None) -> str | None:
    """Why ``ref`` may not hold the state branch (SPEC 2.4), or ``None``: it must be a ref under
    ``refs/`` that is not the desired-state branch (nor a remote-tracking ref a fetch would overwrite)."""
    accepted = (
        "accepted: a ref under refs/ other than the desired-state branch, e.g. refs/heads/reconciler/state"
    )
    if not ref.startswith("refs/") or not _valid_ref(ref):
        return f"{ref!r} is not a valid ref under refs/; {accepted}"
    if ref.startswith("refs/remotes/"):
        return f"{ref!r} is a remote-tracking ref, which every fetch overwrites; {accepted}"
    if branch is not None and ref == f"refs/heads/{branch}":
        return f"{ref!r} is the desired-state branch; state would be committed over desired state; {accepted}"
    return None
