#!/usr/bin/env bash
# Build the afs-continuous image, and the example trainer's image on top of it, without a
# Docker engine: buildah builds the repository's Dockerfile as it is.
#
#   scripts/build_image.sh [--tag IMAGE] [--trainer-tag IMAGE] [--base IMAGE | --debian-base]
#
# The base (the Dockerfile's PYTHON_IMAGE) is the official python:3.11-slim-bookworm where
# a registry answers; otherwise (or with --debian-base) one made here from Debian's own
# packages with mmdebstrap, kept as localhost/afs-python-base:bookworm for the next build.
# pip inside the build trusts the certificate authorities this machine trusts (its CA
# bundle is mounted for the build's RUN steps only, nothing of it stays in the image).
#
# Needs: buildah, podman (to import a Debian base), mmdebstrap (to make one), run as root
# (chroot isolation, the host's network). Where crun cannot run containers (rlimits,
# hybrid cgroups), runc does: this script points containers.conf at runc when runc is
# installed and CONTAINERS_CONF is not set.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n1)"
TAG="ghcr.io/afs-continuous/afs-continuous:$VERSION"
TRAINER_TAG="registry.example.com/ml/nayru-trainer:1"
OFFICIAL_BASE="docker.io/library/python:3.11-slim-bookworm"
DEBIAN_BASE="localhost/afs-python-base:bookworm"
BASE="${PYTHON_IMAGE:-}"
FORCE_DEBIAN=0

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
say() { printf 'build_image: %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --tag|--trainer-tag|--base)
            [ $# -ge 2 ] && [ -n "$2" ] || { say "$1 needs a value"; exit 2; } ;;
    esac
    case "$1" in
        --tag) TAG="$2"; shift 2 ;;
        --trainer-tag) TRAINER_TAG="$2"; shift 2 ;;
        --base) BASE="$2"; shift 2 ;;
        --debian-base) FORCE_DEBIAN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) say "unknown option $1"; usage >&2; exit 2 ;;
    esac
done

for tool in buildah podman; do
    command -v "$tool" >/dev/null || { say "$tool is not installed (apt-get install buildah podman runc mmdebstrap)"; exit 2; }
done
if [ -z "${CONTAINERS_CONF:-}" ] && command -v runc >/dev/null; then
    export CONTAINERS_CONF="$ROOT/scripts/containers.conf"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# pip in the build stage: this machine's CA bundle (a proxy may re-sign PyPI's certificate)
HOST_CA="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
printf '[global]\ncert = /etc/ssl/certs/afs-build-ca.crt\n' > "$WORK/pip.conf"
BUILD_MOUNTS=(--volume "$WORK/pip.conf:/etc/pip.conf:ro")
if [ -r "$HOST_CA" ]; then
    BUILD_MOUNTS+=(--volume "$HOST_CA:/etc/ssl/certs/afs-build-ca.crt:ro")
else
    printf '[global]\n' > "$WORK/pip.conf"
fi

debian_base() {
    if podman image exists "$DEBIAN_BASE"; then
        say "using the Debian base made earlier ($DEBIAN_BASE)"
        return
    fi
    command -v mmdebstrap >/dev/null || { say "no registry answers and mmdebstrap is not installed"; exit 2; }
    say "making a Debian bookworm base with mmdebstrap (python3, venv, pip)"
    mmdebstrap --variant=minbase --quiet \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED' \
        bookworm "$WORK/base.tar"
    podman import --quiet --change 'CMD ["python3"]' "$WORK/base.tar" "$DEBIAN_BASE" >/dev/null
}

if [ -z "$BASE" ]; then
    if [ "$FORCE_DEBIAN" = 0 ] && timeout 60 buildah pull --quiet "$OFFICIAL_BASE" >/dev/null 2>&1; then
        BASE="$OFFICIAL_BASE"
    else
        [ "$FORCE_DEBIAN" = 1 ] || say "cannot pull $OFFICIAL_BASE; building on Debian's packages instead"
        debian_base
        BASE="$DEBIAN_BASE"
    fi
fi

# what the tags named before: replaced by this build, removed after it (a rebuild would
# otherwise leave a gigabyte of untagged layers behind each time)
image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
previous="$(image_id "$TRAINER_TAG") $(image_id "$TAG")"

started=$(date +%s)
say "building $TAG on $BASE"
buildah build --quiet --isolation chroot --network host --pull=missing \
    "${BUILD_MOUNTS[@]}" --build-arg "PYTHON_IMAGE=$BASE" --build-arg "VERSION=$VERSION" \
    --file "$ROOT/Dockerfile" --tag "$TAG" "$ROOT" >/dev/null
say "building $TRAINER_TAG on it"
buildah build --quiet --isolation chroot --network host --pull=never \
    --build-arg "AFS_IMAGE=$TAG" --file "$ROOT/examples/trainer/Dockerfile" \
    --tag "$TRAINER_TAG" "$ROOT/examples/trainer" >/dev/null
for old in $previous; do  # the trainer's first: it is built on the other
    case " $(image_id "$TAG") $(image_id "$TRAINER_TAG") " in
        *" $old "*) ;;
        *) podman rmi "$old" >/dev/null 2>&1 || true ;;
    esac
done
size=$(podman image inspect --format '{{.Size}}' "$TAG")
say "built $TAG ($((size / 1000000)) MB) and $TRAINER_TAG in $(( $(date +%s) - started )) s"
