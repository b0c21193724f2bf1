"""``reconcile daemon``: triggers in, one reconcile per environment at a time, transitions out.

Level-based: a trigger (a ref watch event, a fetch, a webhook, a resync)
only says "something may have changed". The daemon reloads the desired
state when the desired branch's tip moved and queues the environments the
new commit concerns (``wake.py``: those whose inputs changed, and their
dependents), ahead of any pass over the whole fleet: the start, a resync
(drift and health checks), or a change it cannot see through (a rewritten
history, a changed ``reconciler.yaml``) queue everything in the queue's
background lane, which never holds back a push's environments. The engine
decides. Per environment, a result that is not converged schedules the
next look: the planner's ``retry_at`` when it has one, else a capped
exponential delay.

With ``--shard I/N`` the queue accepts only the environments of shard I
(``shard.py``), so every trigger, resync and stale-lock recovery is limited
to them. An environment that depends on one of another shard only reads its
state: a move of the state branch wakes this daemon's environments related
to the ones that changed (``_state_moved``).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pygit2

from reconciler.daemon import footprint
from reconciler.daemon.guarded import GuardedStore, Stopping
from reconciler.daemon.metrics import DaemonMetrics, LabelValues
from reconciler.daemon.overrides import suspension_changed
from reconciler.daemon.shard import EVERYTHING, Shard
from reconciler.daemon.wake import Wake, concerned
from reconciler.daemon.watch import RefWatch
from reconciler.daemon.webhook import SECRET_ENV, HookVerdict, verify_delivery
from reconciler.daemon.workqueue import WorkQueue
from reconciler.desired.loader import head_branch, load_snapshot
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.desired.trust import AllowedSigners, DesiredCommit, TrustSetupError, choose_desired, config_at
from reconciler.engine.apply import targets
from reconciler.engine.drift import Finding
from reconciler.engine.reconcile import Engine, Outcome, ReconcileResult
from reconciler.engine.workspace import Workspace, open_workspace
from reconciler.notify import DeliveryStats, NotificationFeed
from reconciler.notify.feed import blocked, open_feed
from reconciler.planner import Verdict
from reconciler.steps import LocalStepRunner, StepRunner
from reconciler.store import CorruptState, StateStore, StoreError
from reconciler.store.git import GitStore
from reconciler.store.gitcli import FetchError
from reconciler.store.gitcli import fetch as git_fetch
from reconciler.store.remote import RemoteStore
from reconciler.web.app import Endpoints, create_app
from reconciler.web.auth import required_token
from reconciler.web.server import WebServer

logger = logging.getLogger(__name__)

#: First and longest delay before a non-converged environment without a planner retry time is looked at again.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
#: Longest wait before checking again an environment whose check re-applying did not cure.
CHECK_BACKOFF_CAP_SECONDS = 3600.0
#: Share of ``--interval`` a fetch is moved by at random, so many daemons do not fetch in step.
FETCH_JITTER = 0.1


#: How often new state-branch events are looked for, to notify while phases run.
NOTIFY_POLL_SECONDS = 0.5
#: How long a stopping daemon waits for notifications still being delivered.
NOTIFY_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class DaemonSettings:
    repo: Path
    data_dir: Path | None = None
    interval: float = 30.0
    workers: int = 4
    grace: float = 30.0
    listen: tuple[str, int] | None = ("127.0.0.1", 8080)
    resync: float = 300.0
    watch: bool = True
    #: ``--shard I/N``: take only the environments of shard I; ``None``: any environment.
    shard: Shard | None = None
    #: ``--allowed-signers``: act only on commits signed by its keys (SPEC 10); re-read when it changes.
    allowed_signers: Path | None = None


class Daemon:
    def __init__(
        self,
        settings: DaemonSettings,
        *,
        runner: StepRunner | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        footprint.limit_arenas()  # before any thread of ours allocates
        self._environ = dict(environ if environ is not None else os.environ)
        self._runner = runner or LocalStepRunner()
        self.workspace: Workspace = open_workspace(
            settings.repo, settings.data_dir, allowed_signers=settings.allowed_signers
        )
        self._git_dir = Path(self.workspace.repo.path)
        self.shard: Shard = settings.shard or EVERYTHING
        # One worker always stays free for what a push concerns while a pass over the fleet runs.
        self._queue = WorkQueue(
            accept=self.shard.owns if self.shard.count > 1 else None,
            background_limit=max(1, settings.workers - 1),
        )
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._wake = threading.Event()
        self._load_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._snapshot: DesiredSnapshot | None = None
        self._engine: Engine | None = None
        self._store: GuardedStore | None = None
        self._remote: RemoteStore | None = None
        self._loaded_tip: str | None = None
        self._said_no_desired = False  # "no desired state yet" is said once, not every poll
        #: Why the desired tip is not acted on (SPEC 10), ``None`` when it is; said once per tip.
        self._not_applied: str | None = None
        self._config_refused: str | None = None  # why the newest reconciler.yaml is refused, said once
        self._signers_problem: str | None = None
        self._failures: dict[str, int] = {}
        self._checks_wanted: set[str] = set()
        self._check_failures: dict[str, int] = {}
        self._check_not_before: dict[str, float] = {}
        self._threads: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._watch: RefWatch | None = None
        self._http: WebServer | None = None
        self._ticker_beat = time.monotonic()
        #: The state branch's tip last looked at by ``_state_moved``, read through a repository of its own.
        self._state_seen: str | None = None
        self._state_looked = False
        self._state_seen_lock = threading.Lock()
        self._state_repo: pygit2.Repository | None = None
        self.metrics = DaemonMetrics(environments=self._environment_counts, queue_depth=self._queue_depth)
        #: Notifications (SPEC 9): rebuilt when ``notify`` in reconciler.yaml changes.
        self._feed: NotificationFeed | None = None
        self._feed_key: object = None
        self._notify_stats = DeliveryStats(on_count=self.metrics.notifications.inc)
        self.metrics.shard.set(1.0, str(self.shard.index), str(self.shard.count))

    # -- public ----------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        return self._http.port if self._http is not None else None

    def start(self) -> None:
        """Load, recover stale locks, then start the workers, the ticker, the watch and HTTP."""
        if self.settings.listen is not None:
            host, port = self.settings.listen
            token = required_token(host, self._environ)  # refuses a non-loopback address without one
            endpoints = Endpoints(
                healthy=self._healthy,
                metrics=self.metrics.registry.exposition,
                hook=self._hook,
                fleet=_DaemonFleet(self),
            )
            self._http = WebServer(create_app(endpoints, token=token), host, port)
        self._sync_remote()
        self.refresh("start", force=True)
        if self._remote is not None:
            self._sync_remote()  # now the state branch too, before stale locks are judged
        self._recover()
        self._state_moved()  # notes where the state branch is; everything is queued already
        for i in range(max(1, self.settings.workers)):
            t = threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        ticker = threading.Thread(target=self._ticker, name="ticker", daemon=True)
        ticker.start()
        self._threads.append(ticker)
        notify = threading.Thread(target=self._notify_pump, name="notify-feed", daemon=True)
        notify.start()
        self._threads.append(notify)
        if self.settings.watch:
            self._watch = RefWatch(self._git_dir, self._on_ref_change)
            self._watch.start()
        if self._http is not None:
            self._http.start()
        logger.info(
            "daemon started",
            extra={
                "repo": str(self.workspace.repo_path),
                "listen": self.settings.listen,
                "port": self.port,
                "shard": str(self.shard) if self.settings.shard is not None else "any",
            },
        )

    def request_stop(self) -> None:
        if self._stop.is_set():
            logger.warning("second stop request: interrupting running phases now")
            self._cancel.set()
        self._stop.set()
        self._wake.set()

    def wait(self) -> int:
        """Block until a stop is requested, then drain within the grace period; return the exit code."""
        while not self._stop.wait(timeout=1.0):
            pass
        logger.info(
            "stopping: no new work; running phases get the grace period", extra={"grace": self.settings.grace}
        )
        if self._store is not None:
            self._store.draining.set()
        if self._watch is not None:
            self._watch.stop()
        self._queue.shut_down()
        deadline = time.monotonic() + self.settings.grace
        for t in self._workers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._workers):
            logger.warning("grace period over: interrupting running phases")
            self._cancel.set()
            for t in self._workers:
                t.join(timeout=15.0)
        for t in self._threads:
            t.join(timeout=5.0)
        feed = self._feed
        if feed is not None:
            feed.pump()
            feed.notifier.close(NOTIFY_DRAIN_SECONDS)
        if self._http is not None:
            self._http.stop()
        logger.info("daemon stopped")
        return 0

    def run(self, on_started: Callable[[], None] | None = None) -> int:
        """``start``, stop on SIGTERM/SIGINT, ``wait``: what the CLI calls."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            logger.info("signal received", extra={"signal": signal.Signals(signum).name})
            self.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        if on_started is not None:
            on_started()
        return self.wait()

    # -- desired state -------------------------------------------------------------------

    def _remote_name(self) -> str | None:
        if self._snapshot is not None:
            return self._snapshot.config.remote
        # Before anything is loaded, reconciler.yaml at HEAD says whether there is a remote
        # (that file alone: loading the whole fleet twice at start costs seconds and memory).
        repo = self.workspace.repo
        try:
            return None if repo.head_is_unborn else config_at(repo, str(repo.head.target)).remote
        except (LookupError, ValueError, pygit2.GitError):
            return None

    def _desired_ref(self) -> str:
        repo = self.workspace.repo
        config = self._snapshot.config if self._snapshot is not None else None
        branch = (config.branch if config is not None else None) or head_branch(repo)
        remote = self._remote_name()
        if remote is not None and branch is not None:
            return f"refs/remotes/{remote}/{branch}"
        if branch is not None:
            return f"refs/heads/{branch}"
        return "HEAD"

    def _desired_tip(self, ref: str) -> str | None:
        try:
            if ref == "HEAD":
                return None if self.workspace.repo.head_is_unborn else str(self.workspace.repo.head.target)
            reference = self.workspace.repo.references.get(ref)
            return None if reference is None else str(reference.resolve().target)
        except (KeyError, pygit2.GitError):
            return None

    def refresh(self, source: str, *, force: bool = False) -> bool:
        """If the desired branch moved (or ``force``), load it and queue what it concerns (``force``: all)."""
        if self._stop.is_set():
            return False
        with self._load_lock:
            ref = self._desired_ref()
            tip = self._desired_tip(ref)
            if self._remote is None:
                self.metrics.last_fetch.set(time.time())
            if tip is None:
                if not self._said_no_desired:
                    logger.info("no desired state yet", extra={"ref": ref})
                    self._said_no_desired = True
                return False
            self._said_no_desired = False
            keys_changed = self._reload_signers()
            if tip == self._loaded_tip and not force and not keys_changed:
                return False
            try:
                choice = choose_desired(self.workspace.repo, tip, self.workspace.signers)
                commit = choice.commit
                loaded = self._snapshot.commit if self._snapshot is not None else None
                self._report_trust(choice, loaded)
                if commit is None or (commit == loaded and not force):
                    self._loaded_tip = tip  # judged; the last verified commit stays desired
                    return False
                snapshot = load_snapshot(self.workspace.repo, commit, cache=self.workspace.cache)
            except (LookupError, ValueError, pygit2.GitError) as e:
                logger.error("cannot load desired state", extra={"ref": ref, "error": str(e)})
                return False
            refused = snapshot.config_refused
            if refused is not None:  # SPEC 2.4: the last valid one stays; this commit is not acted on
                if refused != self._config_refused:
                    kept = self._snapshot.commit if self._snapshot is not None else None
                    logger.error(
                        "desired state not applied",
                        extra={"commit": commit, "acting_on": kept, "why": refused},
                    )
                self._config_refused = refused
                self._loaded_tip = tip
                return False
            self._config_refused = None
            previous = self._snapshot
            self._install(snapshot)
            footprint.settle()
            self._loaded_tip = tip
            self.metrics.triggers.inc(source)
            wake = Wake(None, "start") if force else concerned(self.workspace.repo, previous, snapshot)
            if previous is None:
                footprint.trim()  # the first load's parse trees are garbage now
            logger.info(
                "desired state loaded",
                extra={
                    "ref": ref,
                    "commit": commit,
                    "trigger": source,
                    "woken": "all" if wake.names is None else _names(wake.names),
                    "why": wake.reason,
                },
            )
        if wake.names is None:
            self._enqueue_all(background=True)
        else:
            names = [n for n in sorted(wake.names) if self._queue.accepts(n)]
            self.metrics.woken.inc("change", amount=len(names))
            self._queue.add_all(names)
        return True

    def _reload_signers(self) -> bool:
        """Re-read the allowed-signers file when it changed; a bad one is reported and the last kept."""
        current = self.workspace.signers
        if current is None or not current.changed():
            return False
        try:
            fresh = AllowedSigners.load(current.path, self.workspace.repo)
        except TrustSetupError as e:
            if str(e) != self._signers_problem:
                logger.error(
                    "allowed-signers file not reloaded; the last good one stays", extra={"error": str(e)}
                )
                self._signers_problem = str(e)
            return False
        self._signers_problem = None
        self.workspace.signers = fresh
        logger.info("allowed-signers file reloaded", extra={"path": str(fresh.path)})
        return True

    def _report_trust(self, choice: DesiredCommit, loaded: str | None) -> None:
        """Log (once per tip), count and show on /healthz a desired tip that is not acted on."""
        self.metrics.tip_unverified.set(0.0 if choice.tip_applied else 1.0)
        message = choice.message
        if message is not None and choice.commit is None:
            kept = f"; {loaded[:12]}, the last verified commit, stays desired" if loaded else ""
            message += kept or ": nothing is acted on"
        if message is not None and message != self._not_applied:
            logger.error(
                "desired tip not applied",
                extra={
                    "tip": choice.tip,
                    "acting_on": choice.commit or loaded,
                    "skipped": choice.skipped,
                    "why": message,
                },
            )
        self._not_applied = message

    def _on_ref_change(self) -> None:
        self.refresh("watch")
        self._state_moved()

    def _install(self, snapshot: DesiredSnapshot) -> None:
        """Use ``snapshot``; build the engine the first time, or when the state branch or remote changes."""
        config = snapshot.config
        previous = self._snapshot.config if self._snapshot is not None else None
        rebuild = (
            self._engine is None
            or previous is None
            or (previous.state_ref, previous.remote) != (config.state_ref, config.remote)
        )
        if rebuild:
            inner: StateStore = self.workspace.store_for(snapshot)
            self._remote = None
            if config.remote is not None and isinstance(inner, GitStore):
                self._remote = RemoteStore(inner, self._git_dir, config.remote)
                inner = self._remote
            store = GuardedStore(inner, self.workspace.data_dir, on_phase=self._on_phase)
            if self._stop.is_set():
                store.draining.set()
            engine = Engine(
                repo=self.workspace.repo,
                store=store,
                runner=self._runner,
                data_dir=self.workspace.data_dir,
                environ=self._environ,
                cancel=self._cancel,
                on_check=self._on_check,
            )
            with self._state_lock:
                self._store, self._engine = store, engine
        with self._state_lock:
            self._snapshot = snapshot
        self._install_notifications(snapshot)
        for problem in snapshot.problems:
            logger.warning("refused: %s", problem, extra={"environment": problem.environment})

    def _install_notifications(self, snapshot: DesiredSnapshot) -> None:
        """(Re)build the notification feed when ``notify`` or the state branch changed."""
        config = snapshot.config
        key = (tuple(config.notify), config.state_ref)
        if key == self._feed_key:
            return
        self._feed_key = key
        old, self._feed = self._feed, None
        if old is not None:
            old.notifier.close(0.0)
        store = self.workspace.store_for(snapshot)
        log = store.events if isinstance(store, GitStore) else None
        self._feed = open_feed(
            snapshot, log, self._environ, labels_of=self._labels_of, stats=self._notify_stats
        )

    def _labels_of(self, name: str) -> Mapping[str, str]:
        with self._state_lock:
            snapshot = self._snapshot
        desired = snapshot.environments.get(name) if snapshot is not None else None
        return desired.labels if desired is not None else {}

    def _notify_pump(self) -> None:
        """Send this daemon's new state-branch events while phases run (a pending status, a failure)."""
        while not self._stop.wait(NOTIFY_POLL_SECONDS):
            feed = self._feed
            if feed is not None:
                feed.pump()

    def _notify_outcome(self, snapshot: DesiredSnapshot, result: ReconcileResult) -> None:
        feed = self._feed
        if feed is None:
            return
        attempt = result.failure.attempt if result.failure is not None else None
        feed.outcome(
            result.name,
            str(result.outcome),
            state=result.state,
            desired_commit=snapshot.commit if result.name in snapshot.environments else None,
            changed=bool(result.transitions),
            blocked=blocked(snapshot, result.name, attempt),
            summary=result.reason,
        )

    def _current(self) -> tuple[DesiredSnapshot, Engine] | None:
        with self._state_lock:
            if self._snapshot is None or self._engine is None:
                return None
            return self._snapshot, self._engine

    def _enqueue_all(self, *, check: bool = False, background: bool = False) -> None:
        current = self._current()
        if current is None:
            return
        snapshot, engine = current
        try:
            names = targets(engine, snapshot, None)
        except StoreError as e:
            logger.error("cannot read observed state", extra={"error": str(e)})
            names = sorted(snapshot.names)
        names = [n for n in names if self._queue.accepts(n)]  # this daemon's shard
        if check:
            with self._state_lock:
                self._checks_wanted.update(names)
        self.metrics.woken.inc("pass", amount=len(names))
        self._queue.add_all(names, background=background)

    def _owned(self, snapshot: DesiredSnapshot, engine: Engine) -> set[str] | None:
        """The environments of this daemon's shard, declared or observed; ``None``: every one."""
        if self.shard.count == 1:
            return None
        return {n for n in targets(engine, snapshot, None) if self.shard.owns(n)}

    def _state_moved(self) -> None:
        """When the state branch moved, queue this daemon's environments related to those that changed.

        A dependency on another shard (or, without ``--shard``, one another
        daemon converged) is seen only here: the dependent reads its state on
        the state branch, and never acts on it.
        """
        current = self._current()
        if current is None:
            return
        snapshot = current[0]
        with self._state_seen_lock:
            try:
                if self._state_repo is None:
                    self._state_repo = pygit2.Repository(str(self._git_dir))
                repo = self._state_repo
                reference = repo.references.get(snapshot.config.state_ref)
                tip = None if reference is None else str(reference.resolve().target)
                previous, self._state_seen = self._state_seen, tip
                first, self._state_looked = not self._state_looked, True
                if first or tip is None or tip == previous:
                    return
                new = repo[tip].peel(pygit2.Tree)
                overridden: set[str] = set()
                if previous is None:  # the branch was just created
                    changed = {entry.name or "" for entry in new}
                else:
                    deltas = list(repo[previous].peel(pygit2.Tree).diff_to_tree(new).deltas)
                    changed = {
                        path.split("/", 1)[0]
                        for delta in deltas
                        for path in (delta.old_file.path, delta.new_file.path)
                        if path
                    }
                    overridden = suspension_changed(repo, deltas)  # suspended or resumed by a person
            except (KeyError, ValueError, pygit2.GitError) as e:
                logger.debug("cannot compare state branch tips", extra={"error": str(e)})
                return
        woken: set[str] = set(overridden)
        for name in changed:
            woken.update(self._related(snapshot, name))
        self._queue.add_all(sorted(woken))  # refused unless it is of this daemon's shard

    # -- remote --------------------------------------------------------------------------

    def _sync_remote(self) -> None:
        """With ``remote`` set: fetch the desired branch and the state branch."""
        remote = self._remote_name()
        if remote is None:
            return
        repo = self.workspace.repo
        try:
            if remote not in list(repo.remotes.names()):
                raise StoreError(f"no remote named '{remote}'")
            git_fetch(repo.path, remote)
            if self._remote is not None:
                self._remote.sync()
        except (pygit2.GitError, StoreError, FetchError) as e:
            self.metrics.fetch_failures.inc()
            logger.warning("fetch failed", extra={"remote": remote, "error": str(e)})
            return
        self.metrics.last_fetch.set(time.time())

    def _hook(self, headers: dict[str, str], body: bytes) -> HookVerdict:
        verdict = verify_delivery(
            self._environ.get(SECRET_ENV) or os.environ.get(SECRET_ENV),
            headers.get("x-hub-signature-256"),
            headers.get("x-github-event"),
            body,
        )
        self.metrics.webhooks.inc(str(verdict.status))
        if verdict.trigger and not self._stop.is_set():
            self._hook_pending = True
            self._wake.set()
        elif not verdict.trigger:
            logger.warning(
                "webhook not acted on", extra={"status": verdict.status, "reason": verdict.message}
            )
        return verdict

    _hook_pending = False

    def _ticker(self) -> None:
        """Fetch every interval (with jitter) and resync every ``--resync``; woken early by a webhook.

        The two clocks are independent: a resync shorter than the interval is honoured.
        """
        now = time.monotonic()
        next_fetch = now + self._fetch_delay()
        next_resync = now + self.settings.resync
        while not self._stop.is_set():
            woke = self._wake.wait(timeout=max(0.05, min(next_fetch, next_resync) - time.monotonic()))
            self._wake.clear()
            self._ticker_beat = now = time.monotonic()
            if self._stop.is_set():
                return
            try:
                if woke or now >= next_fetch:
                    source = "webhook" if (woke and self._hook_pending) else "fetch"
                    self._hook_pending = False
                    next_fetch = now + self._fetch_delay()
                    self._sync_remote()
                    self.refresh(source)
                    self._state_moved()
                if now >= next_resync:
                    next_resync = now + self.settings.resync
                    self.metrics.triggers.inc("resync")
                    self._recover()
                    self._enqueue_all(check=True, background=True)
            except Exception:  # the loop outlives any one bad turn
                logger.exception("ticker turn failed")

    def _fetch_delay(self) -> float:
        jitter = self.settings.interval * FETCH_JITTER * (2 * random.random() - 1)  # noqa: S311
        return max(0.05, self.settings.interval + jitter)

    def _recover(self) -> None:
        current = self._current()
        if current is None:
            return
        try:
            recovered = current[1].recover_stale_locks(self._owned(*current))
        except StoreError as e:
            logger.error("stale lock recovery failed", extra={"error": str(e)})
            return
        for name in recovered:
            logger.warning("recovered a stale lock", extra={"environment": name})
            self._queue.add(name)

    # -- work ----------------------------------------------------------------------------

    def _worker(self) -> None:
        while (name := self._queue.get()) is not None:
            try:
                self._reconcile(name)
            except Exception:
                logger.exception("reconcile crashed", extra={"environment": name})
            finally:
                self._queue.done(name)
                if self._queue.depth() == 0 and self._queue.busy() == 0:
                    # A pass over the fleet, or a push's work, is over: give back what it freed
                    # (a checkout, a reload); the heap would otherwise keep its high-water mark.
                    footprint.trim()

    def _reconcile(self, name: str) -> None:
        current = self._current()
        if current is None:
            return
        snapshot, engine = current
        if not self._queue.accepts(name):
            return  # another shard's: never acted on here
        with self._state_lock:
            check = name in self._checks_wanted and time.monotonic() >= self._check_not_before.get(name, 0.0)
            self._checks_wanted.discard(name)
        try:
            result = engine.reconcile(snapshot, name)
            desired = snapshot.environments.get(name)
            if result.ok and check and desired is not None:
                with self._state_lock:
                    uncured = self._check_failures.get(name, 0)
                # A heal that does not cure is tried again at most retry.limit times in a row (decision 020).
                heal = uncured <= desired.spec.retry.limit
                if not heal:
                    logger.warning(
                        "drift not healed: earlier heals did not cure it",
                        extra={"environment": name, "heals": uncured},
                    )
                result = engine.check(snapshot, name, heal=heal)
                self._note_check(name, result)
        except Stopping:
            return
        except Exception as e:  # a store or git failure: temporary, retry with backoff
            self.metrics.reconciles.inc("error")
            logger.error("reconcile failed", extra={"environment": name, "error": f"{type(e).__name__}: {e}"})
            self._retry_later(name)
            return
        self.metrics.reconciles.inc(str(result.outcome))
        self._notify_outcome(snapshot, result)
        if result.transitions or result.outcome is not Outcome.CONVERGED:
            logger.info(
                "reconciled",
                extra={"environment": name, "outcome": str(result.outcome), "reason": result.reason},
            )
        self._after(snapshot, engine, name, result)

    def _after(self, snapshot: DesiredSnapshot, engine: Engine, name: str, result: ReconcileResult) -> None:
        if self._stop.is_set():
            return
        if result.outcome is Outcome.CONVERGED:
            self._failures.pop(name, None)
            self._queue.forget(name)
            if result.transitions:  # only a change can change what the related ones may do
                self._queue.add_all(self._related(snapshot, name))
            return
        if result.outcome not in (Outcome.WAITING, Outcome.FAILED):
            self._queue.forget(name)  # blocked, invalid, ahead...: the next change or resync looks again
            return
        try:
            plan = engine.plan(snapshot, name, engine.store.read(name))
        except Exception:
            self._retry_later(name)
            return
        if plan.verdict is Verdict.WAITING and plan.retry_at is not None:
            delay = (plan.retry_at - engine.clock.now()).total_seconds()
            self._queue.add_at(name, time.monotonic() + max(0.05, delay))
        elif plan.verdict in (Verdict.WAITING, Verdict.CHANGES):
            self._retry_later(name)

    def _note_check(self, name: str, result: ReconcileResult) -> None:
        """Count the check, and back off an environment whose check re-applying does not cure."""
        if not result.checked:
            return  # nothing to check (destroyed, or no check steps)
        if result.outcome is Outcome.SUSPENDED:
            self.metrics.checks.inc("failing")  # reported only: a suspended environment is never healed
            return
        if result.outcome is Outcome.DRIFTED:
            self.metrics.checks.inc("drifted")  # reported only: not to be healed (now)
            return
        if result.outcome is Outcome.FAILED and result.failure is None:
            self.metrics.checks.inc("failing")
            with self._state_lock:
                n = self._check_failures.get(name, 0)
                self._check_failures[name] = n + 1
                delay = min(CHECK_BACKOFF_CAP_SECONDS, self.settings.resync * 2**n)
                self._check_not_before[name] = time.monotonic() + delay
            logger.error(
                "check still failing after re-apply; checking again later",
                extra={"environment": name, "reason": result.reason, "next_check_in_seconds": round(delay)},
            )
            return
        self.metrics.checks.inc("reapplied" if result.transitions else "passed")
        with self._state_lock:
            self._check_failures.pop(name, None)
            self._check_not_before.pop(name, None)

    def _retry_later(self, name: str) -> None:
        n = self._failures.get(name, 0)
        self._failures[name] = n + 1
        delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**n) * random.uniform(0.8, 1.2)  # noqa: S311
        self._queue.add_at(name, time.monotonic() + delay)

    @staticmethod
    def _related(snapshot: DesiredSnapshot, name: str) -> frozenset[str]:
        """Those whose plan may change when ``name`` converges: its dependents and its dependencies.

        A lookup in the snapshot's dependents index, not a pass over the fleet.
        """
        env = snapshot.environments.get(name)
        dependencies = env.spec.depends_on if env is not None else ()
        return snapshot.dependents.get(name, frozenset()).union(dependencies)

    # -- metrics and health ---------------------------------------------------------------

    def _on_check(self, name: str, finding: Finding, seconds: float) -> None:
        self.metrics.observe_check(name, str(finding.status), seconds)

    def _on_phase(self, phase: str, result: str, duration: float) -> None:
        self.metrics.transitions.inc(phase, result)
        self.metrics.phase_duration.observe(duration, phase, result)

    def _environment_counts(self) -> Iterable[tuple[LabelValues, float]]:
        store = self._store
        if store is None:
            return []
        counts: dict[str, int] = {}
        try:
            for item in store.read_all().values():
                state = "corrupt" if isinstance(item, CorruptState) else item.env.state_name
                counts[state] = counts.get(state, 0) + 1
        except StoreError:
            return []
        return [((state,), float(n)) for state, n in counts.items()]

    def _queue_depth(self) -> Iterable[tuple[LabelValues, float]]:
        return [((), float(self._queue.depth()))]

    def _healthy(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "stopping"
        dead = [t.name for t in (*self._workers, *self._threads) if not t.is_alive()]
        if dead:
            return False, f"threads not running: {', '.join(dead)}"
        stalled = time.monotonic() - self._ticker_beat
        if stalled > 3 * self.settings.interval + 60:
            return False, f"ticker stalled for {stalled:.0f}s"
        if self._not_applied is not None:  # alive and working: a restart would not help (SPEC 10)
            return True, f"ok; {self._not_applied}"
        return True, "ok"


class _DaemonFleet:
    """What the dashboard reads: the daemon's own desired snapshot and engine (``web.fleet.FleetSource``)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self.data_dir = daemon.workspace.data_dir

    def current(self) -> tuple[DesiredSnapshot, Engine] | None:
        return self._daemon._current()


#: How many names a log record lists before it says how many more there are.
_LOGGED_NAMES = 50


def _names(names: frozenset[str]) -> str:
    """``a, b, c`` (or ``none``), cut after ``_LOGGED_NAMES`` with how many more."""
    listed = sorted(names)
    text = ", ".join(listed[:_LOGGED_NAMES]) or "none"
    more = len(listed) - _LOGGED_NAMES
    return f"{text} (and {more} more)" if more > 0 else text
