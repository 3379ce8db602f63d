"""MLflow tracking: one parent run per pipeline run, nested runs per stage and candidate.

Everything goes through `MlflowClient` with explicit run ids: MLflow's active run is per
thread, and Prefect runs tasks on a thread pool, so `mlflow.start_run()` inside a task
would silently start an unrelated run (shared STACK.md).

Lineage tags on every run: git sha, DVC data hash, params hash, Prefect flow-run id.
Adapters are logged as their safetensors files plus the base model's path and
fingerprint; `load_logged_adapter` reloads them onto that exact base (logging a peft
model through the transformers flavour reloads wrong weights when the base is a local
folder, shared STACK.md), and a test checks the reload gives identical logits.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paretoflow.config import Params, TrackingConfig
from paretoflow.io import files_hash
from paretoflow.schema import TABLES

PARENT_TAG = "mlflow.parentRunId"
_FORBIDDEN_METRIC_CHARS = str.maketrans({"(": "_", ")": "_", "@": "_at_"})
# A key is secret when one of its name parts is a secret word ("api_token", "auth.password");
# "max_new_tokens" is a budget, not a credential.
_SECRET_PART = re.compile(r"(^|[._-])(password|passwd|secret|token|api_?key|auth|credentials?)([._-]|$)", re.I)


class TrackingUnavailable(RuntimeError):
    """The tracking server cannot be reached: raised before any training starts."""


def resolve_tracking_uri(tracking: TrackingConfig, root: Path) -> str:
    """sqlite paths in params are relative to the project root; make them absolute."""
    uri = tracking.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        db = (root / uri[len("sqlite:///"):]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}"
    return uri


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with a clear message when an HTTP tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (configured URL)
            if resp.status != 200:
                raise TrackingUnavailable(f"MLflow tracking server at {uri} answered {resp.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingUnavailable(
            f"MLflow tracking server at {uri} is unreachable ({exc}); start it "
            "(`mlflow server --host 127.0.0.1 ...`) or set tracking.tracking_uri"
        ) from exc


class Tracker:
    """Thin, thread-safe facade over MlflowClient for the pipeline's runs."""

    def __init__(self, tracking: TrackingConfig, root: Path = Path(".")):
        import mlflow
        from mlflow import MlflowClient

        self.root = Path(root).resolve()
        self.uri = resolve_tracking_uri(tracking, self.root)
        check_reachable(self.uri)
        self.tracking = tracking
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        mlflow.set_tracking_uri(self.uri)
        self.experiment_id = self._experiment_id()

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.tracking.experiment)
        if exp is not None:
            return exp.experiment_id
        location = None
        if not self.uri.startswith(("http://", "https://")):
            art = (self.root / self.tracking.artifact_location).resolve()
            art.mkdir(parents=True, exist_ok=True)
            location = art.as_uri()
        try:
            return self.client.create_experiment(self.tracking.experiment, artifact_location=location)
        except Exception:  # created concurrently by another process
            return self.client.get_experiment_by_name(self.tracking.experiment).experiment_id

    # ---------------------------------------------------------------- runs
    def start_run(self, name: str, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def log_params(self, run_id: str, params: Mapping[str, Any], prefix: str = "") -> None:
        for key, value in flatten(params, prefix).items():
            if _SECRET_PART.search(key):
                continue  # never log secrets as params
            self.client.log_param(run_id, key[:250], str(value)[:6000])

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None = None, prefix: str = "") -> None:
        for key, value in flatten(metrics, prefix).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            self.client.log_metric(run_id, metric_name(key), float(value), step=step or 0)

    def log_curve(self, run_id: str, name: str, values: list[float]) -> None:
        for step, value in enumerate(values):
            if value is not None and math.isfinite(value):
                self.client.log_metric(run_id, metric_name(name), float(value), step=step)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        elif path.exists():
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_adapter(self, run_id: str, adapter_dir: Path, base_model_path: str, artifact_path: str = "adapter") -> None:
        """Log a LoRA adapter (safetensors only) with the base it must be loaded on."""
        adapter_dir = Path(adapter_dir)
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / artifact_path
            staged.mkdir()
            for f in adapter_dir.iterdir():
                if f.is_file() and f.suffix in (".safetensors", ".json", ".md", ".png"):
                    (staged / f.name).write_bytes(f.read_bytes())
            from paretoflow.models import model_fingerprint

            (staged / "base_model.json").write_text(json.dumps(
                {"base_model_path": str(base_model_path), "base_fingerprint": model_fingerprint(base_model_path)}
            ))
            self.client.log_artifacts(run_id, str(staged), artifact_path)

    def download(self, run_id: str, artifact_path: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, artifact_path, str(dst)))


def load_logged_adapter(tracker: Tracker, run_id: str, artifact_path: str = "adapter", base_model_path: str | None = None):
    """Reload a logged adapter onto its recorded base; refuses a base whose weights differ."""
    from peft import PeftModel

    from paretoflow.models import load_policy, model_fingerprint

    local = tracker.download(run_id, artifact_path, Path(tempfile.mkdtemp(prefix="pf-adapter-")))
    meta = json.loads((local / "base_model.json").read_text())
    base_path = base_model_path or meta["base_model_path"]
    if model_fingerprint(base_path) != meta["base_fingerprint"]:
        raise ValueError(
            f"adapter of run {run_id} was trained on {meta['base_model_path']} "
            f"(fingerprint {meta['base_fingerprint']}), not on {base_path}"
        )
    base, tokenizer, _ = load_policy(base_path)
    model = PeftModel.from_pretrained(base, str(local), is_trainable=False)
    model.eval()
    return model, tokenizer


# ------------------------------------------------------------------ lineage

def git_sha(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dvc_data_hash(root: Path) -> str:
    """Hash over every output DVC recorded in dvc.lock; 'none' before any repro/commit."""
    from paretoflow.dvc import data_hash, lock_hashes

    try:
        return data_hash(root, sorted(lock_hashes(root)))
    except (FileNotFoundError, KeyError):
        return "none"


def lineage_tags(params: Params, root: Path, flow_run_id: str | None = None, data_hash: str | None = None) -> dict[str, str]:
    return {
        "paretoflow.git_sha": git_sha(root),
        "paretoflow.dvc_data_hash": dvc_data_hash(root),
        # The curated tables only: Data Docs in the same folder are rewritten on every run.
        "paretoflow.data_hash": data_hash or files_hash(
            [root / params.curate.out_dir / f"{table}.parquet" for table in TABLES]),
        "paretoflow.params_hash": params.section_hash(),
        "paretoflow.flow_run_id": flow_run_id or "local",
    }


# ------------------------------------------------------------------ helpers

def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def metric_name(name: str) -> str:
    """MLflow refuses `( ) @` in metric names (shared STACK.md)."""
    return name.translate(_FORBIDDEN_METRIC_CHARS)
