from tests.daemon.conftest import daemons  # noqa: F401  (real daemon subprocesses, killed at the end)
from tests.engine.conftest import gitops  # noqa: F401  (the GitOps repository fixture)
from tests.store.conftest import repo  # noqa: F401  (a plain repository with one commit)
