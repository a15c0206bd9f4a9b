"""examples/cityscapes/sedna: the Dataset and LifelongLearningJob resources of the CIL-3 job.

Always checked: the containers run ``llseg sedna <role>`` and set only variables the workers read.
With ``LLSEG_SEDNA_CRDS`` naming kubeedge/sedna's ``build/crds`` folder and ``jsonschema``
installed (marker ``sedna``), both files are validated against the CRDs' openAPIV3Schema.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ianvs.sedna_env import REPO

FOLDER = REPO / "examples" / "cityscapes" / "sedna"
ROLES = {"trainSpec": "train", "evalSpec": "eval", "deploySpec": "infer"}
# what each worker reads from its template besides what Sedna sets (docs/sedna.md); operator and
# model_threshold are read by Sedna's own evaluate_tasks
KNOWN = {
    "train": {"ESTIMATOR", "HYPERPARAMETERS"},
    "eval": {"operator", "model_threshold"},
    "infer": {"INFER_DATASET_URL", "INFERENCE_RESULT_DIR", "UNSEEN_SAVE_URL", "UNSEEN_THRESHOLD", "CONFIDENCE_THRESHOLD",
              "INFER_WATCH", "INFER_POLL_SECONDS", "EDGE_MODEL_URL"},
}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((FOLDER / name).read_text())


def test_job_runs_the_llseg_workers_with_known_variables() -> None:
    job, dataset = load("lifelonglearningjob.yaml"), load("dataset.yaml")
    assert job["spec"]["dataset"]["name"] == dataset["metadata"]["name"]
    for spec, role in ROLES.items():
        (container,) = job["spec"][spec]["template"]["spec"]["containers"]
        assert container["command"] == ["llseg", "sedna", role]
        names = {e["name"] for e in container.get("env", [])}
        assert names <= KNOWN[role], names - KNOWN[role]
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        for entry in container.get("env", []):
            if entry["name"].endswith(("_URL", "_DIR")) and entry["name"] != "EDGE_MODEL_URL":
                assert entry["value"] in mounts, f"{entry['name']} is not on a mounted volume"


def crd_schema(name: str) -> dict[str, Any]:
    folder = os.environ.get("LLSEG_SEDNA_CRDS")
    if not folder:
        pytest.skip("set LLSEG_SEDNA_CRDS to kubeedge/sedna's build/crds folder to validate against the CRDs")
    crd = yaml.safe_load((Path(folder) / name).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.sedna
def test_resources_validate_against_the_sedna_crds() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    job_schema = crd_schema("sedna.io_lifelonglearningjobs.yaml")
    job = load("lifelonglearningjob.yaml")
    jsonschema.validate(job, job_schema)
    jsonschema.validate(load("dataset.yaml"), crd_schema("sedna.io_datasets.yaml"))
    broken = copy.deepcopy(job)  # the check has teeth: a trigger without its condition is rejected
    del broken["spec"]["trainSpec"]["trigger"]["condition"]
    with pytest.raises(jsonschema.ValidationError, match="'condition' is a required property"):
        jsonschema.validate(broken, job_schema)
