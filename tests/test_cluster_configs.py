"""The files in cluster/: they parse, have the right kinds and fields, and name commands that exist."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import build_parser

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"
ROOT = CLUSTER.parent


def _documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((CLUSTER / name).read_text()) if doc is not None]


def _by_kind(name: str) -> dict[str, dict[str, Any]]:
    docs = _documents(name)
    kinds = {doc["kind"]: doc for doc in docs}
    assert len(kinds) == len(docs), f"{name}: one document per kind"
    return kinds


def _subcommands() -> dict[str, Any]:
    """vindex's subcommands, and `jobs`' own, by name."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    return dict(commands.choices)


def _check_commands(text: str) -> int:
    """Every `python -m MODULE` and `vindex SUBCOMMAND` in ``text`` exists; how many there were."""
    found = 0
    for module in re.findall(r"python3? -m ([\w.]+)", text):
        loaded = importlib.import_module(module)
        assert callable(getattr(loaded, "main", None)), f"{module} has no main()"
        found += 1
    subcommands = _subcommands()
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[\s;&|(])vindex ([a-z]+)", line):
            assert match.group(1) in subcommands, f"`vindex {match.group(1)}` is not a command: {line.strip()}"
            found += 1
    return found


def _all_strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _all_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _all_strings(item)]
    return []


def _containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    containers = pod_template["spec"]["containers"]
    assert containers and all(c["name"] and c["image"] for c in containers)
    return list(containers)


def test_every_file_parses() -> None:
    files = sorted(p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*.yaml"))
    assert files == ["kuberay/cronjob.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "ray-cluster.yaml"]
    for name in files:
        assert _documents(name), name


def test_cluster_launcher_config_has_a_cpu_and_a_gpu_worker_group() -> None:
    (config,) = _documents("ray-cluster.yaml")
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "max_workers"):
        assert key in config, key
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types["head"]["resources"] == {"CPU": 0}
    assert set(types) == {"head", "cpu_decode", "gpu_models"}
    assert types["cpu_decode"]["min_workers"] >= 1  # a run sizes its pools from what is there
    assert types["gpu_models"]["node_config"]["InstanceType"].startswith(("g", "p"))
    assert types["gpu_models"]["docker"]["worker_image"].endswith("-gpu")
    for group in ("cpu_decode", "gpu_models"):
        assert types[group]["min_workers"] <= types[group]["max_workers"] <= config["max_workers"]
    assert _check_commands((CLUSTER / "ray-cluster.yaml").read_text()) >= 1


def test_raycluster_manifest() -> None:
    cluster = _by_kind("kuberay/raycluster.yaml")["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["metadata"]["name"] == "vindex"
    spec = cluster["spec"]
    assert spec["rayVersion"] == "2.60.0"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    head = _containers(spec["headGroupSpec"]["template"])[0]
    assert {p["containerPort"] for p in head["ports"]} >= {6379, 8265}
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-decode", "gpu-models"}
    for group in groups.values():
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        _containers(group["template"])
    gpu = _containers(groups["gpu-models"]["template"])[0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cpu = _containers(groups["cpu-decode"]["template"])[0]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    # one auth mode for every pod
    pods = [head, cpu, gpu]
    assert all({"name": "RAY_AUTH_MODE", "value": "token"} in c["env"] for c in pods)


def test_rayjob_runs_an_index_job_on_that_cluster() -> None:
    job = _by_kind("kuberay/rayjob.yaml")["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "vindex"}
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.index_corpus"]
    assert "--index" in argv
    assert _check_commands(job["spec"]["entrypoint"]) == 1
    _containers(job["spec"]["submitterPodTemplate"])


def test_cronjob_submits_a_nightly_run_to_the_clusters_job_server() -> None:
    kinds = _by_kind("kuberay/cronjob.yaml")
    cron, config_map = kinds["CronJob"], kinds["ConfigMap"]
    assert (cron["apiVersion"], config_map["apiVersion"]) == ("batch/v1", "v1")
    spec = cron["spec"]
    assert len(spec["schedule"].split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["restartPolicy"] in ("Never", "OnFailure")
    (container,) = _containers(pod)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RAY_ADDRESS"] == "http://vindex-head-svc:8265"  # KubeRay's Service for the head "vindex"
    script = "\n".join(container["command"] + container["args"])
    assert "vindex submit" in script and "--wait" in script
    assert _check_commands(script) == 2  # submit, compact
    # the config file it passes is the ConfigMap it mounts, and holds valid settings
    (mount,) = container["volumeMounts"]
    (volume,) = pod["spec"]["volumes"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"] and mount["name"] == volume["name"]
    assert f"--config {mount['mountPath']}/vindex.yaml" in script
    from pipeline.config import config_from_dict

    assert config_from_dict(yaml.safe_load(config_map["data"]["vindex.yaml"])).inference.device == "cuda"


def test_dockerfile_pins_torch_and_installs_the_project() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0].startswith("ARG RAY_IMAGE=rayproject/ray:2.60.0-")
    assert any(line.startswith("FROM ${RAY_IMAGE}") for line in instructions)
    assert "torch==2.13.0" in text
    for line in instructions:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the project"
    installed = re.findall(r"import ([\w.]+(?:, [\w.]+)*)", text)
    assert installed, "the build checks that the entrypoints import"
    for modules in installed:
        for module in modules.split(", "):
            assert callable(getattr(importlib.import_module(module), "main", None)), module


@pytest.mark.parametrize("module", ["jobs.index_corpus", "jobs.compact", "jobs.dedup"])
def test_job_entrypoints_have_main(module: str) -> None:
    assert callable(importlib.import_module(module).main)


def test_the_cluster_page_names_the_manifests_and_the_readme_links_it() -> None:
    page = (ROOT / "docs" / "cluster.md").read_text()
    assert page.startswith("# Running on a cluster\n")
    for name in ("kuberay/cronjob.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "ray-cluster.yaml", "Dockerfile"):
        assert f"cluster/{name}" in page, name
    assert _check_commands(page) >= 8
    readme = (ROOT / "README.md").read_text()
    assert "## On a cluster" in readme and "(docs/cluster.md)" in readme
