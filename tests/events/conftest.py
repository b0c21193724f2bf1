from tests.engine.conftest import gitops  # noqa: F401  (the GitOps repository fixture)
