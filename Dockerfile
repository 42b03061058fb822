# The afs-continuous image: the operator, the collector and the training Jobs' exporter.
#   docker build -t ghcr.io/afs-continuous/afs-continuous:0.1.0 .
#   scripts/build_image.sh      (buildah, no Docker engine; also on a Debian-made base)
# Two stages: the first builds the wheels (ours and every dependency) and installs them
# into a virtual environment; the second copies only that environment onto a clean base,
# so no compiler, pip or source tree ships.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# with the storage extra: the exporter uploads a distributed run's data set to s3:// or gs://;
# with the privacy extra: the exporter redacts personal data (the operator's default) and
# `collect --redact` works (Presidio's pattern recognizers; no language model is shipped)
# with the scoring extra: the exporter trains a discriminator when a loop asks (spec.scoring)
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels ".[storage,privacy,scoring]" \
 && python -m venv /opt/afs \
 && /opt/afs/bin/pip install --no-cache-dir --no-index --find-links /wheels \
      "afs-continuous[storage,privacy,scoring]" \
 && /opt/afs/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="afs-continuous" \
      org.opencontainers.image.description="Continuous learning: the operator, the collector and the training Jobs' exporter" \
      org.opencontainers.image.source="https://github.com/afs-continuous/afs-continuous" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# the base image's own pip and setuptools go too: nothing in the image installs packages.
# The official image has them in its interpreter (pip uninstalls them); a Debian base has
# them as packages, which pip leaves alone (dpkg removes them)
RUN if dpkg-query --show --showformat='${db:Status-Abbrev}' python3-pip 2>/dev/null | grep -q '^ii'; \
    then dpkg --purge python3-pip python3-setuptools python3-wheel; \
    else python -m pip uninstall --yes pip setuptools wheel; fi \
 && groupadd --gid 65532 afs \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin afs
COPY --from=build /opt/afs /opt/afs
ENV PATH=/opt/afs/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# the UID the chart and the training Jobs' exporter run as (runAsUser: 65532)
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["afs-continuous"]
CMD ["--help"]
