#!/usr/bin/env bash
# Build and smoke-test the Docker image with podman on a machine without a Docker engine or
# open internet (package registries only). Run by hand as root, not by CI:
#   bash docker/check.sh
# 1. a Debian trixie base image from debootstrap (the machine's Debian mirror), trusting this
#    machine's certificate bundle so that pip reaches the registry inside the build;
# 2. the `test` stage (import, small LOD solve, 2-rank tiny demo), torch from PyPI;
# 3. the runtime image; prints its size.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${WORK:-/tmp/dolfinx-lod-docker}"
base=local/debian:trixie
image="${IMAGE:-dolfinx-lod}"
command -v podman >/dev/null && command -v debootstrap >/dev/null \
    || apt-get install -y podman debootstrap
if ! podman image exists "$base"; then
    mirror="$(grep -hoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/* /etc/apt/sources.list \
        2>/dev/null | head -1 || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rm -rf "$work/rootfs" && mkdir -p "$work"
    debootstrap --variant=minbase trixie "$work/rootfs" "$mirror"
    # Outside /etc/ssl/certs: installing ca-certificates in the build rewrites that bundle.
    cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/pip-ca-bundle.crt"
    printf '[global]\ncert = /etc/pip-ca-bundle.crt\n' > "$work/rootfs/etc/pip.conf"
    tar -C "$work/rootfs" -c . | podman import - "$base"
fi
build=(podman build --isolation=chroot --network=host -f "$root/docker/Dockerfile"
       --build-arg BASE="$base" --build-arg TORCH_INDEX=https://pypi.org/simple)
"${build[@]}" --target test -t "$image:test" "$root"
"${build[@]}" --target runtime -t "$image" "$root"
podman image ls "$image"
echo "docker/check.sh: smoke test passed; image $image: $(podman image inspect "$image" --format '{{.Size}}') bytes"
