"""deploy/kubernetes: every overlay renders (`kubectl kustomize`), validates offline against the Kubernetes
schemas (`kubernetes-validate`), and agrees with docker-compose.yml, .env and the settings classes.

One source of truth: images, ports, probes and FRAMECAST_* names come from Compose and the settings; a
manifest that drifts from them fails here.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from framecast.bus import parse_redis_url
from framecast.edge.app import create_app
from framecast.edge.settings import EdgeSettings
from framecast.inference.settings import InferenceSettings
from framecast.settings import env_name
from tests.deploy.conftest import ROOT, require_binary

KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = {"single": "single", "gpu": "single", "sentinel": "sentinel", "cluster": "cluster"}  # -> bus kind
# the oldest Kubernetes whose APIs the manifests use (autoscaling/v2, policy/v1) and the newest schemas shipped
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
Doc = dict[str, Any]


@functools.cache
def rendered(overlay: str) -> tuple[Doc, ...]:
    kubectl = require_binary("kubectl", "kubernetes-client")
    out = subprocess.run([kubectl, "kustomize", str(KUBE / "overlays" / overlay)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def one(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(docs: tuple[Doc, ...], deployment: str) -> Doc:
    containers: list[Doc] = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(docs: tuple[Doc, ...], deployment: str) -> dict[str, str]:
    """The container's environment: its ConfigMaps, then its own env (which wins)."""
    c = container(docs, deployment)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: str(e["value"]) for e in c.get("env", [])})
    return env


def dotenv() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def compose() -> Doc:
    doc: Doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def compose_image(service: str, file: str = "docker-compose.yml") -> str:
    """A Compose image reference with its ${VAR...} parts filled from .env."""
    image = str(yaml.safe_load((ROOT / file).read_text())["services"][service]["image"])
    values = dotenv()
    return re.sub(r"\$\{(\w+)[^}]*\}", lambda m: values[m.group(1)], image)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_overlay_renders_and_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    docs = rendered(overlay)
    assert {"Deployment", "Service", "ConfigMap", "Ingress", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= {d["kind"] for d in docs}
    for doc in docs:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} invalid for "
                                     f"Kubernetes {version}: {exc.message} at {list(exc.path)}") from None


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_images_match_compose_and_env(overlay: str) -> None:
    docs = rendered(overlay)
    assert container(docs, "framecast-edge")["image"] == compose_image("edge")
    inference = compose_image("inference", "docker-compose.gpu.yml" if overlay == "gpu" else "docker-compose.yml")
    assert container(docs, "framecast-inference")["image"] == inference
    if overlay in ("single", "gpu"):
        assert container(docs, "framecast-redis")["image"] == dotenv()["REDIS_IMAGE"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_env_names_are_settings_and_cover_what_compose_sets(overlay: str) -> None:
    docs = rendered(overlay)
    services = compose()["services"]
    for deployment, service, cls in (("framecast-edge", "edge", EdgeSettings),
                                     ("framecast-inference", "inference", InferenceSettings)):
        env = env_of(docs, deployment)
        known = {env_name(f) for f in cls.model_fields}
        ours = {k for k in env if k.startswith("FRAMECAST_")}
        assert ours <= known, f"{deployment}: not settings of {cls.__name__}: {sorted(ours - known)}"
        from_compose = {k for k in services[service]["environment"] if k.startswith("FRAMECAST_")}
        assert from_compose <= ours, f"{deployment} lacks what Compose sets: {sorted(from_compose - ours)}"
        settings = cls.model_validate({k[len("FRAMECAST_"):].lower(): v for k, v in env.items()
                                       if k.startswith("FRAMECAST_")})
        assert parse_redis_url(settings.redis_url).kind == OVERLAYS[overlay]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_ports_probes_and_scrape_annotations_match_the_services(overlay: str) -> None:
    docs = rendered(overlay)
    compose_env = compose()["services"]
    routes = {getattr(r, "path", "") for r in create_app(EdgeSettings()).routes}

    edge = container(docs, "framecast-edge")
    port = int(env_of(docs, "framecast-edge")["FRAMECAST_PORT"])
    assert port == int(compose_env["edge"]["environment"]["FRAMECAST_PORT"])
    assert [p["containerPort"] for p in edge["ports"]] == [port]
    assert edge["readinessProbe"]["httpGet"]["path"] == "/readyz" and "/readyz" in routes
    assert edge["livenessProbe"]["httpGet"]["path"] == "/healthz" and "/healthz" in routes
    pod = one(docs, "Deployment", "framecast-edge")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert pod["metadata"]["annotations"]["prometheus.io/path"] in routes

    inference = container(docs, "framecast-inference")
    metrics_port = int(env_of(docs, "framecast-inference")["FRAMECAST_METRICS_PORT"])
    assert metrics_port == int(compose_env["inference"]["environment"]["FRAMECAST_METRICS_PORT"])
    assert [p["containerPort"] for p in inference["ports"]] == [metrics_port]
    annotations = one(docs, "Deployment", "framecast-inference")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(metrics_port)

    # Services, Ingress, HPA and PDB point at what exists
    for svc, deployment in (("framecast-edge", "framecast-edge"), ("framecast-inference", "framecast-inference")):
        selector = one(docs, "Service", svc)["spec"]["selector"]
        labels = one(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    backend = one(docs, "Ingress", "framecast")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "framecast-edge" and backend["port"]["name"] == edge["ports"][0]["name"]
    assert one(docs, "HorizontalPodAutoscaler", "framecast-edge")["spec"]["scaleTargetRef"]["name"] == "framecast-edge"
    pdb = one(docs, "PodDisruptionBudget", "framecast-edge")["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_edge_drains_before_kubernetes_kills_it(overlay: str) -> None:
    docs = rendered(overlay)
    edge = container(docs, "framecast-edge")
    env = env_of(docs, "framecast-edge")
    settings = EdgeSettings.model_validate({"drain_delay_s": env["FRAMECAST_DRAIN_DELAY_S"],
                                            "drain_timeout_s": env["FRAMECAST_DRAIN_TIMEOUT_S"]})
    grace = one(docs, "Deployment", "framecast-edge")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.drain_timeout_s, "SIGKILL would cut the drain short"
    pre_stop = " ".join(edge["lifecycle"]["preStop"]["exec"]["command"])
    assert "os.kill(1, signal.SIGTERM)" in pre_stop  # the edge's own drain (python -m framecast.edge is PID 1)
    waits = float(re.search(r"time\.sleep\((\d+(?:\.\d+)?)\)", pre_stop).group(1))  # type: ignore[union-attr]
    # preStop outlasts the drain (a second SIGTERM, the kubelet's, would end it at once) and ends within the grace
    assert settings.drain_timeout_s < waits < grace
    readiness = edge["readinessProbe"]
    # readiness fails, and the Service stops routing, before the viewers are closed
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < settings.drain_delay_s


def test_only_the_gpu_overlay_asks_for_a_gpu() -> None:
    for overlay in OVERLAYS:
        inference = container(rendered(overlay), "framecast-inference")
        gpus = inference["resources"].get("limits", {}).get("nvidia.com/gpu")
        env = env_of(rendered(overlay), "framecast-inference")
        if overlay == "gpu":
            assert gpus == 1 and env["FRAMECAST_DEVICE"] == "cuda"
            assert env["FRAMECAST_DEVICE"] == compose_gpu_device()
        else:
            assert gpus is None and env["FRAMECAST_DEVICE"] == "auto"


def compose_gpu_device() -> str:
    doc = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    return str(doc["services"]["inference"]["environment"]["FRAMECAST_DEVICE"])


def test_every_manifest_file_is_in_some_overlay() -> None:
    """No YAML under deploy/kubernetes is left out of every kustomization (so none escapes validation)."""
    listed: set[Path] = set()
    for kustomization in KUBE.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        for key in ("resources", "patchesStrategicMerge"):
            listed |= {(kustomization.parent / f).resolve() for f in doc.get(key, [])}
    files = {p.resolve() for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert files == listed, sorted(str(p) for p in files ^ listed)
