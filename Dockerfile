# reconcile daemon in a container (docs/operations.md#container).
#
#   docker build -t reconciler .                       # --build-arg EXTRAS=ansible for ansible steps
#   docker run -v /srv/gitops:/repo -v reconciler-data:/data -p 8080:8080 \
#     -e RECONCILE_API_TOKEN=... -e RECONCILE_WEBHOOK_SECRET=... reconciler
#
# The repository is mounted at /repo (a clone with `remote:` in reconciler.yaml,
# or the repository pushes go to), the data dir (OpenTofu state, traces) at /data.
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

# git: pushes and `plan --base` merges use the git CLI; openssh-client: ssh remotes;
# tini: PID 1 that forwards SIGTERM and reaps orphaned step processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# "ansible" installs ansible-core for ansible steps. For tofu steps, build an image
# FROM this one that adds the tofu (or terraform) binary to /usr/local/bin.
ARG EXTRAS=""
COPY pyproject.toml README.md /src/
COPY reconciler /src/reconciler
RUN pip install --no-cache-dir --disable-pip-version-check "/src${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /src \
    && reconcile --version

# A user of its own: uid/gid 10001, never root. Mounted repositories owned by
# another uid are still trusted by git (safe.directory).
RUN groupadd --system --gid 10001 reconciler \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/reconciler reconciler \
    && mkdir -p /repo /data \
    && chown reconciler:reconciler /repo /data \
    && git config --system --add safe.directory /repo
USER 10001:10001
WORKDIR /repo
VOLUME ["/repo", "/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# One log line per transition and per failed or waiting turn, as JSON on stderr.
ENTRYPOINT ["tini", "--", "reconcile", "--log-level", "info", "--log-format", "json", "daemon"]
CMD ["--repo", "/repo", "--data-dir", "/data", "--listen", "0.0.0.0:8080"]
