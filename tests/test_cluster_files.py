"""The cluster files of docs/cluster/ parse and hold what a GPU cluster needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "docs" / "cluster"
GPU_INSTANCE_FAMILIES = ("p3", "p4", "p5", "g4dn", "g5", "g6")  # AWS instance types with NVIDIA GPUs


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def test_ray_up_config_has_head_gpu_workers_and_installs_the_project():
    cfg = load("ray-aws.yaml")
    assert cfg["cluster_name"] and cfg["provider"]["type"] in ("aws", "gcp")
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    gpu = [t for t in workers.values() if t["node_config"]["InstanceType"].startswith(GPU_INSTANCE_FAMILIES)]
    assert gpu and all(t["max_workers"] > 0 for t in gpu) and cfg["max_workers"] > 0
    assert types[cfg["head_node_type"]]["max_workers"] == 0
    setup = " && ".join(cfg["setup_commands"])
    assert "pip install" in setup and "-e ~/retinanet-sweeps" in setup
    assert cfg["file_mounts"]["~/retinanet-sweeps"] == "."  # the project reaches every node
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    assert any("/data/coco" in c for c in cfg["worker_setup_commands"])  # data.root of the sweep command


def test_ray_up_config_matches_rays_own_schema():
    jsonschema = pytest.importorskip("jsonschema")
    autoscaler = pytest.importorskip("ray.autoscaler")
    schema = json.loads((Path(autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(load("ray-aws.yaml"), schema)  # unknown or misspelt keys fail here


def test_kuberay_manifest_has_a_head_and_gpu_worker_groups():
    manifest = load("kuberay-raycluster.yaml")
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    head = spec["headGroupSpec"]
    assert "rayStartParams" in head and head["template"]["spec"]["containers"][0]["image"]
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (container,) = group["template"]["spec"]["containers"]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert container["image"] == head["template"]["spec"]["containers"][0]["image"]
        volumes = {v["name"] for v in group["template"]["spec"]["volumes"]}
        assert {m["name"] for m in container["volumeMounts"]} <= volumes
        assert any(m["mountPath"] == "/data/coco" for m in container["volumeMounts"])


def test_cluster_doc_gives_the_servers_and_the_one_command():
    text = (ROOT / "docs" / "CLUSTER.md").read_text()
    assert "mlflow server" in text and "--backend-store-uri postgresql://" in text
    assert "--artifacts-destination s3://" in text
    assert "sweep.storage=postgresql://" in text
    command = ("python -m sweeps.run +sweep=gamma_alpha profile=paper data=coco data.root=/data/coco "
               "cluster.address=auto tracking.uri=http://")
    assert command in " ".join(text.split())  # the one command, possibly wrapped over lines
    assert "cluster.storage_path=s3://" in text
    for name in ("ray-aws.yaml", "kuberay-raycluster.yaml", "Dockerfile"):
        assert f"docs/cluster/{name}" in text and (CLUSTER / name).is_file()
