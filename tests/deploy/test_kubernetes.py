"""deploy/kubernetes: the kustomize base and the example overlay are valid Kubernetes objects,
wired as the README says (peer URL from the pod IP, drain within the grace period, peers-only
NetworkPolicy, one bootstrap Job).

Two paths, both offline:
- Rendered: `kustomize build` or `kubectl kustomize` when one is on PATH (kubectl 1.32 with its
  built-in kustomize is on this kind of machine; neither Debian, PyPI for Python 3.11 nor npm
  packages a kustomize binary, so where none is installed this test is skipped). Every object
  of the output is validated against the Kubernetes schemas kubernetes-validate bundles.
- Files, always: every resource file of the base and the overlay is validated the same way, the
  kustomizations' resources, patches and generator files exist, and each patch applies to its
  target by a strategic merge done here (dicts merge, lists of named items merge by name, other
  lists are replaced), the result validated again. The same wiring checks run on that result.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

KUBE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests are meant for

Doc = dict[str, Any]


def validate(doc: Doc) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        raise AssertionError(f"{name}: {exc.message} at {list(exc.path)}") from None


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization(folder: Path) -> Doc:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def strategic_merge(target: Any, patch: Any) -> Any:
    if isinstance(target, dict) and isinstance(patch, dict):
        out = dict(target)
        for key, value in patch.items():
            out[key] = strategic_merge(target[key], value) if key in target else value
        return out
    if isinstance(target, list) and isinstance(patch, list):
        named = all(isinstance(x, dict) and "name" in x for x in target + patch)
        if named:
            out = list(target)
            index = {x["name"]: i for i, x in enumerate(out)}
            for item in patch:
                if item["name"] in index:
                    out[index[item["name"]]] = strategic_merge(out[index[item["name"]]], item)
                else:
                    out.append(item)
            return out
    return copy.deepcopy(patch)


def key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def files_of(folder: Path) -> list[Doc]:
    """The folder's resources (recursing into bases) with its patches merged in, and one
    Secret per secretGenerator (its keys from the env files, values not needed)."""
    spec = kustomization(folder)
    docs: list[Doc] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        assert path.exists(), f"{folder}/kustomization.yaml: {entry} does not exist"
        if path.is_dir():
            assert (path / "kustomization.yaml").exists(), f"{entry}: no kustomization.yaml"
            docs += files_of(path)
        else:
            for doc in load_docs(path):
                validate(doc)
                docs.append(doc)
    for gen in spec.get("secretGenerator", []):
        data: dict[str, str] = {}
        for env in gen.get("envs", []):
            path = folder / env
            assert path.exists(), f"{folder}: secretGenerator file {env} does not exist"
            for line in path.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    name, _, value = line.partition("=")
                    data[name] = value
        docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": gen["name"]}, "stringData": data})  # fmt: skip
    by_key = {key(d): i for i, d in enumerate(docs)}
    for patch in spec.get("patches", []):
        path = folder / patch["path"]
        assert path.exists(), f"{folder}: patch {patch['path']} does not exist"
        for part in load_docs(path):
            assert key(part) in by_key, f"{patch['path']}: no {key(part)} to patch"
            i = by_key[key(part)]
            docs[i] = strategic_merge(docs[i], part)
            validate(docs[i])
    for rep in spec.get("replicas", []):
        docs[by_key[("Deployment", rep["name"])]]["spec"]["replicas"] = rep["count"]
    return docs


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def one(docs: list[Doc], kind: str, **match: Any) -> Doc:
    found = [d for d in docs if d["kind"] == kind and _matches(d, match)]
    assert len(found) == 1, f"{len(found)} {kind} matching {match}"
    return found[0]


def _matches(doc: Doc, match: dict[str, Any]) -> bool:
    return all(doc["metadata"].get(k) == v for k, v in match.items())


def check_wiring(docs: list[Doc], secret_generated: bool) -> None:
    config = one(docs, "ConfigMap")["data"]
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"] == labels
    spec = pod["spec"]
    (manager,) = spec["containers"]
    assert manager["args"] == ["serve", "--no-bootstrap"]

    env = {e["name"]: e for e in manager["env"]}
    names = [e["name"] for e in manager["env"]]
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # $(VAR) expands only variables defined earlier in the list
    assert names.index("POD_IP") < names.index("MANAGER_PEER_URL")
    assert names.index("POD_NAME") < names.index("MANAGER_REPLICA_ID")
    peer_port = config["MANAGER_PEER_PORT"]
    assert env["MANAGER_PEER_URL"]["value"] == f"http://$(POD_IP):{peer_port}"
    assert env["MANAGER_REPLICA_ID"]["value"] == "$(POD_NAME)"
    ports = {p["name"]: p["containerPort"] for p in manager["ports"]}
    assert str(ports["peer"]) == peer_port and str(ports["http"]) == config["MANAGER_PORT"]
    assert str(ports["metrics"]) == config["MANAGER_METRICS_PORT"]

    drain = int(config["MANAGER_DRAIN_GRACE_S"]) + int(config["MANAGER_DRAIN_WINDOW_S"])
    assert spec["terminationGracePeriodSeconds"] >= drain + 5
    assert manager["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert manager["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert manager["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert manager["resources"]["requests"]["memory"]
    assert spec["securityContext"]["runAsNonRoot"] is True

    secret_refs = {e["secretRef"]["name"] for e in manager["envFrom"] if "secretRef" in e}
    (secret_name,) = secret_refs
    secret = one(docs, "Secret", name=secret_name)  # kustomize renamed both, or neither
    values = secret.get("stringData") or secret.get("data") or {}
    assert {"MANAGER_DATABASE_URL", "MANAGER_SECRET", "MANAGER_PEER_SECRET"} <= set(values)
    if secret_generated:
        assert secret_name.startswith("space-manager-secrets-")  # the generator's hash suffix

    services = [d for d in docs if d["kind"] == "Service"]
    lb = [s for s in services if s["spec"].get("type") == "LoadBalancer"]
    assert len(lb) == 1 and lb[0]["spec"]["ports"][0]["protocol"] == "TCP"
    assert lb[0]["spec"]["externalTrafficPolicy"] == "Local"
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == 1 and headless[0]["spec"]["ports"][0]["targetPort"] == "peer"
    for svc in services:
        assert svc["spec"]["selector"] == labels

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == labels

    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == labels
    peer_rules = [r for r in policy["spec"]["ingress"] if {"port": "peer", "protocol": "TCP"} in r.get("ports", [])]  # fmt: skip
    assert len(peer_rules) == 1
    assert peer_rules[0]["from"] == [{"podSelector": {"matchLabels": labels}}]

    job = one(docs, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["bootstrap"]


def test_base_files_validate_and_are_wired():
    check_wiring([*files_of(BASE), _placeholder_secret()], secret_generated=False)


def test_overlay_files_and_patches_validate_and_are_wired():
    docs = files_of(OVERLAY)
    check_wiring(docs, secret_generated=False)
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 3
    # the overlay's patch replaced the base's sizing, the rest of the container stayed
    (manager,) = deploy["spec"]["template"]["spec"]["containers"]
    assert manager["resources"]["requests"] == {"cpu": "500m", "memory": "768Mi"}
    assert manager["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("folder", [OVERLAY], ids=["overlay-example"])
def test_kustomize_output_validates_and_is_wired(folder: Path):
    command = kustomize_command()
    if command is None:
        pytest.skip("no kustomize or kubectl on PATH (none is packaged for Debian, PyPI or npm)")
    result = subprocess.run(
        [*command, str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for doc in docs:
        validate(doc)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "space-manager"
    }
    check_wiring(docs, secret_generated=True)
    images = {
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example.com/space-manager:0.1.0"}


def _placeholder_secret() -> Doc:
    """The base leaves the Secret to overlays; stand in for it."""
    data = {"MANAGER_DATABASE_URL": "", "MANAGER_SECRET": "", "MANAGER_PEER_SECRET": ""}
    return {"kind": "Secret", "metadata": {"name": "space-manager-secrets"}, "stringData": data}
