#!/usr/bin/env bash
# `make compose-test`: the README's compose commands on a real Docker engine.
#
# 1. tools: docker.io and debootstrap from apt if missing; Compose v2 (the
#    static plugin from Debian trixie's docker-compose package, fetched with
#    apt into the cache, never installed system-wide), else Compose v1
# 2. a private dockerd: own data-root (cached), exec-root, socket and pidfile;
#    the FORWARD policy and ip_forward it changes are put back at once and on
#    exit, with every iptables rule and chain it made; stopped by its PID
# 3. stand-in base images (scripts/base_images.sh), tagged as .env pins them
# 4. a wheelhouse for the offline image builds (pip download on this machine)
# 5. tests/deploy/test_compose_stack.py: builds the images with the project's
#    Dockerfiles and runs the README's commands in a copy of the tree
#
# Each step's time goes to stdout and tests/artifacts/compose-test-times.txt.
# FRAMECAST_COMPOSE_TREE=HEAD builds and runs the last commit instead of the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive
CACHE=${FRAMECAST_COMPOSE_CACHE:-/var/cache/framecast-compose}
RUN_DIR=${FRAMECAST_COMPOSE_RUN:-/run/framecast-compose}
PY=${PY:-$ROOT/.venv/bin/python}
TIMES=$ROOT/tests/artifacts/compose-test-times.txt
export FRAMECAST_COMPOSE_CACHE=$CACHE
mkdir -p "$CACHE" "$RUN_DIR" "$(dirname "$TIMES")"
: >"$TIMES"

t0=$(date +%s)
step_start=$t0
step() {  # close the running step under a name
    local now
    now=$(date +%s)
    printf 'compose-test: %-28s %4d s\n' "$1" $((now - step_start)) | tee -a "$TIMES"
    step_start=$now
}

# --- 1. tools -----------------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v iptables >/dev/null || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Compose v2 as users run it (`docker compose`): Debian trixie's docker-compose ships the
# static v2 plugin (it runs on bookworm); apt fetches the .deb from a trixie source into
# the cache, the plugin goes to a private DOCKER_CONFIG only (the system's v1 stays)
export DOCKER_CONFIG=$RUN_DIR/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
plugin=$CACHE/compose-v2/docker-compose
if [ ! -x "$plugin" ]; then
    apt_dir=$CACHE/compose-v2/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
    if apt-get "${apt_opts[@]}" update -qq 2>/dev/null \
            && (cd "$apt_dir" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null 2>&1); then
        rm -rf "$apt_dir/x" && dpkg-deb -x "$apt_dir"/docker-compose_2*.deb "$apt_dir/x" \
            && cp "$apt_dir/x/usr/libexec/docker/cli-plugins/docker-compose" "$plugin.tmp" \
            && mv "$plugin.tmp" "$plugin" || true
    fi
fi
# FRAMECAST_COMPOSE=docker-compose runs the test with v1 even where v2 is at hand
if [ "${FRAMECAST_COMPOSE:-}" != docker-compose ] && [ -x "$plugin" ] && "$plugin" version >/dev/null 2>&1; then
    ln -sf "$plugin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
    export FRAMECAST_COMPOSE="docker compose"
else
    command -v docker-compose >/dev/null || apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
    export FRAMECAST_COMPOSE="docker-compose"
fi
echo "compose-test: using $($FRAMECAST_COMPOSE version | head -n 1)"
step "tools"

# --- 2. dockerd ---------------------------------------------------------------------------------
SOCK=$RUN_DIR/docker.sock
PIDFILE=$RUN_DIR/dockerd.pid
export DOCKER_HOST=unix://$SOCK
saved_policy=$(iptables -S FORWARD | awk '$1 == "-P" {print $3}')
saved_ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)
iptables-save >"$RUN_DIR/iptables.before"
links_before=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort)

restore_firewall() {
    # delete only what dockerd made (rules naming its chains or bridges): other processes may
    # be adding their own rules (network-namespace tests) at the same time
    local table line chain
    for table in filter nat; do
        iptables-save -t "$table" 2>/dev/null | grep -E '^-A ' | grep -E 'DOCKER|docker0|br-[0-9a-f]{12}' \
            | while IFS= read -r line; do
                eval "iptables -t $table ${line/#-A/-D}" 2>/dev/null || true
            done
        for chain in $(iptables-save -t "$table" 2>/dev/null | grep -oE '^:DOCKER[A-Z0-9_-]*' | tr -d ':'); do
            iptables -t "$table" -F "$chain" 2>/dev/null || true
        done
        for chain in $(iptables-save -t "$table" 2>/dev/null | grep -oE '^:DOCKER[A-Z0-9_-]*' | tr -d ':'); do
            iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
    iptables -P FORWARD "${saved_policy:-ACCEPT}"
    # a nat table dockerd created and nobody uses now goes too (nft leaves it behind otherwise)
    if ! grep -q '^\*nat' "$RUN_DIR/iptables.before" && ! iptables-save -t nat 2>/dev/null | grep -q '^-A '; then
        nft delete table ip nat 2>/dev/null || true
    fi
    echo "$saved_ip_forward" >/proc/sys/net/ipv4/ip_forward
}

stop_dockerd() {
    local pid
    if [ -s "$PIDFILE" ]; then
        pid=$(cat "$PIDFILE")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
    fi
    # bridges it made (docker0, a compose network left by a failed run)
    local link
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(docker0|br-[0-9a-f]{12})$'); do
        grep -qx "$link" <<<"$links_before" || ip link delete "$link" 2>/dev/null || true
    done
    restore_firewall
}

on_exit() {
    local rc=$?
    # the cached data-root keeps base images and build cache for the next run; images a rebuild
    # replaced, and build cache beyond 6 GB, go
    if docker version >/dev/null 2>&1; then
        docker image prune -f >/dev/null 2>&1 || true
        docker builder prune -f --keep-storage 6gb >/dev/null 2>&1 || true
    fi
    stop_dockerd
    echo "compose-test: total $(( $(date +%s) - t0 )) s, exit $rc" | tee -a "$TIMES"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "compose-test: a dockerd of an earlier run (PID $(cat "$PIDFILE")) is still running; stopping it"
    stop_dockerd
fi
# address ranges away from Docker's defaults (172.17+), which other tools on a machine often use
dockerd --data-root "$CACHE/docker" --exec-root "$RUN_DIR/exec" --host "$DOCKER_HOST" --pidfile "$PIDFILE" \
    --bip 172.28.0.1/24 --default-address-pool base=172.29.0.0/16,size=24 --log-level warn \
    >"$RUN_DIR/dockerd.log" 2>&1 &
for _ in $(seq 1 120); do
    docker version >/dev/null 2>&1 && break
    kill -0 $! 2>/dev/null || { tail -n 30 "$RUN_DIR/dockerd.log" >&2; exit 1; }
    sleep 0.5
done
docker version >/dev/null || { tail -n 30 "$RUN_DIR/dockerd.log" >&2; exit 1; }
# dockerd sets FORWARD to DROP (this docker has no --ip-forward-no-drop): forwarding by other
# processes on this machine must keep working while it runs
iptables -P FORWARD "${saved_policy:-ACCEPT}"
echo "compose-test: dockerd $(docker version -f '{{.Server.Version}}') (PID $(cat "$PIDFILE")), $DOCKER_HOST"
step "dockerd"

# --- 3. stand-in base images --------------------------------------------------------------------
scripts/base_images.sh
step "base images"

# --- 4. wheels for the offline builds -----------------------------------------------------------
# everything the two images install; the build uses PIP_NO_INDEX=1 with these in docker/wheels/
# of the test's copy of the tree. Environment markers (redis needs async-timeout below Python
# 3.11.3) are those of the Python running pip: Debian's python3 here, the image's own Python
WHEELS=$CACHE/wheels
mkdir -p "$WHEELS"
DL_PY=${FRAMECAST_WHEELS_PYTHON:-/usr/bin/python3}
image_py=$(docker run --rm "$(grep -E '^PYTHON_IMAGE=' .env | cut -d= -f2)" python3 -c 'import platform; print(platform.python_version())')
[ "$("$DL_PY" -c 'import platform; print(platform.python_version())')" = "$image_py" ] \
    || { echo "compose-test: $DL_PY is not Python $image_py (the image's); set FRAMECAST_WHEELS_PYTHON" >&2; exit 1; }
torch_pin="torch==$(grep -E '^TORCH_VERSION=' .env | cut -d= -f2)"
# mypyc compiles the edge's hot path in its image (docker/edge.Dockerfile's MYPY_VERSION)
mypy_pin=$(sed -n 's/^ARG MYPY_VERSION=//p' docker/edge.Dockerfile)
stamp=$(cat requirements/edge.txt requirements/inference.txt <(echo "$torch_pin $mypy_pin $image_py") | sha256sum | cut -c1-16)
if [ "$(cat "$WHEELS/.stamp" 2>/dev/null)" != "$stamp" ]; then
    { "$DL_PY" -m pip download -q -d "$WHEELS" "$torch_pin" "setuptools>=68" "mypy==$mypy_pin" \
        && "$DL_PY" -m pip download -q -d "$WHEELS" --no-deps -r requirements/edge.txt -r requirements/inference.txt
    } >"$RUN_DIR/pip-download.log" 2>&1 || { tail -n 30 "$RUN_DIR/pip-download.log" >&2; exit 1; }
    echo "$stamp" >"$WHEELS/.stamp"
fi
export FRAMECAST_COMPOSE_WHEELS=$WHEELS
step "wheels"

# --- 5. the README's commands on the stack ------------------------------------------------------
export FRAMECAST_COMPOSE_TEST=1 FRAMECAST_COMPOSE_TIMES=$TIMES
"$PY" -m pytest tests/deploy/test_compose_stack.py -p no:cacheprovider -q -o addopts="-ra --import-mode=importlib" \
    --timeout 1200 "$@"
step "compose stack test"
