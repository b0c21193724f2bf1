from tests.engine.conftest import gitops  # noqa: F401  (the GitOps repository fixture)
from tests.store.conftest import repo  # noqa: F401  (a plain repository with one commit)
