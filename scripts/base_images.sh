#!/usr/bin/env bash
# Stand-in base images for the compose test, made without a registry.
#
# No image registry is reachable from CI, so every base image the compose stack
# names (pinned in .env) is made from Debian packages: `debootstrap
# --variant=minbase` of the suite that has a fitting version, then `docker
# import` with the ENTRYPOINT/CMD/ENV the official image has, tagged exactly as
# .env pins it. They prove wiring, configs, healthchecks and scaling, not the
# pinned versions themselves (docs/operations.md lists what differs).
#
#   scripts/base_images.sh            # DOCKER_HOST must point at a running engine
#
# One rootfs per suite (bookworm: Python 3.11 and Redis 7.0; trixie: Prometheus
# 2.53 and redis_exporter 1.69; sid: nginx 1.30, the first Debian nginx that
# accepts `resolve` in an upstream), cached as a tarball under
# $FRAMECAST_COMPOSE_CACHE (default /var/cache/framecast-compose): a rerun
# imports from the cache, or skips an image whose tag already carries the same
# rootfs label. The packages' versions go to $CACHE/standin-images.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${FRAMECAST_COMPOSE_CACHE:-/var/cache/framecast-compose}
MIRROR=${FRAMECAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE/rootfs"

pin() {  # the image .env pins for $1, e.g. pin REDIS_IMAGE
    local value
    value=$(grep -E "^$1=" .env | tail -n 1 | cut -d= -f2-)
    [ -n "$value" ] || { echo "base_images: $1 is not pinned in .env" >&2; exit 1; }
    echo "$value"
}

# suite -> packages; the rootfs tarball's name carries a hash of both
declare -A PACKAGES=(
    # gcc, libc6-dev, python3-dev: the edge image compiles its hot path (the official python image has the
    # headers; its Dockerfile installs gcc with apt where the base image has none)
    [bookworm]="python3 python3-venv python3-dev python-is-python3 gcc libc6-dev passwd redis-server redis-tools"
    [trixie]="prometheus prometheus-redis-exporter wget ca-certificates"
    [sid]="nginx wget"
)
# what goes in the versions list, per suite
declare -A REPORTED=(
    [bookworm]="python3 python3-venv redis-server"
    [trixie]="prometheus prometheus-redis-exporter"
    [sid]="nginx"
)

rootfs_key() { echo "$1-$(echo "$1 ${PACKAGES[$1]}" | sha256sum | cut -c1-12)"; }

make_rootfs() {  # suite -> $CACHE/rootfs/<key>.tar (kept between runs)
    local suite=$1 key tar dir
    key=$(rootfs_key "$suite")
    tar="$CACHE/rootfs/$key.tar"
    if [ -s "$tar" ]; then
        echo "base_images: $suite rootfs cached ($tar)"
        return
    fi
    dir="$CACHE/rootfs/$key.d"
    rm -rf "$dir"
    echo "base_images: debootstrap $suite (${PACKAGES[$suite]})"
    debootstrap --variant=minbase --include="${PACKAGES[$suite]// /,}" "$suite" "$dir" "$MIRROR" \
        >"$CACHE/rootfs/$key.log" 2>&1 || { tail -n 30 "$CACHE/rootfs/$key.log" >&2; exit 1; }
    # the official Prometheus image: nobody owns /prometheus (a named volume copies that)
    if [ "$suite" = trixie ]; then mkdir -p "$dir/prometheus" && chown 65534:65534 "$dir/prometheus"; fi
    chroot "$dir" dpkg-query -W -f '${Package} ${Version}\n' ${REPORTED[$suite]} >"$CACHE/rootfs/$key.versions"
    # Debian starts nothing in a container; drop what only makes the image bigger
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc \
        "$dir"/usr/share/man "$dir"/usr/share/info
    tar -C "$dir" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$dir"
}

import_image() {  # tag suite docker-import --change arguments...
    local tag=$1 suite=$2 key
    shift 2
    key=$(rootfs_key "$suite")
    if [ "$(docker image inspect -f '{{index .Config.Labels "org.framecast.standin"}}' "$tag" 2>/dev/null)" = "$key" ]; then
        echo "base_images: $tag is current"
        return
    fi
    local changes=(--change "LABEL org.framecast.standin=$key")
    for c in "$@"; do changes+=(--change "$c"); done
    docker import "${changes[@]}" "$CACHE/rootfs/$key.tar" "$tag" >/dev/null
    echo "base_images: imported $tag"
}

# the three suites at once: most of a cold run is waiting on downloads
pids=()
for suite in bookworm trixie sid; do make_rootfs "$suite" & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid"; done

PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
import_image "$(pin PYTHON_IMAGE)" bookworm "$PATH_ENV" 'ENV LANG=C.UTF-8' 'CMD ["python3"]'
# the official image runs plain redis-server; protected mode is set in docker-compose.yml
import_image "$(pin REDIS_IMAGE)" bookworm "$PATH_ENV" 'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server"]'
import_image "$(pin REDIS_EXPORTER_IMAGE)" trixie "$PATH_ENV" 'USER 65534' 'EXPOSE 9121' \
    'ENTRYPOINT ["/usr/bin/prometheus-redis-exporter"]'
import_image "$(pin PROMETHEUS_IMAGE)" trixie "$PATH_ENV" 'USER 65534' 'WORKDIR /prometheus' 'EXPOSE 9090' \
    'ENTRYPOINT ["/usr/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
import_image "$(pin NGINX_IMAGE)" sid "$PATH_ENV" 'EXPOSE 80' 'CMD ["nginx", "-g", "daemon off;"]'

{
    echo "# stand-in image -> Debian suite and package versions ($(date -u +%F))"
    for pair in PYTHON_IMAGE:bookworm REDIS_IMAGE:bookworm REDIS_EXPORTER_IMAGE:trixie PROMETHEUS_IMAGE:trixie \
            NGINX_IMAGE:sid; do
        suite=${pair#*:}
        echo "$(pin "${pair%%:*}") <- debian $suite: $(tr '\n' ' ' <"$CACHE/rootfs/$(rootfs_key "$suite").versions")"
    done
} >"$CACHE/standin-images.txt"
cat "$CACHE/standin-images.txt"
