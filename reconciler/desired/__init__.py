"""Desired state: the files of a GitOps repository, read from a commit."""
