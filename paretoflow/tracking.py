"""MLflow tracking: one parent run per pipeline run, nested runs per stage and candidate.

Everything goes through `MlflowClient` with explicit run ids: MLflow's active run is per
thread, and Prefect runs tasks on a thread pool, so `mlflow.start_run()` inside a task
would silently start an unrelated run (docs/measurements.md).

Lineage tags on every run: git sha (HEAD) and the modified tracked files (`git_dirty`,
dvc.lock excepted), DVC data hash, params hash, Prefect flow-run id. Every run also names
the process that created it (`paretoflow.process`: host, boot, pid, start time), so
`sweep_zombie_runs` can tell a run whose process died (kill -9) from one still working, and
`start_run(..., run_key=...)` lets a retried task reuse its run instead of adding another.
Adapters are logged as their safetensors files plus the base model's path and
fingerprint; `load_logged_adapter` reloads them onto that exact base (logging a peft
model through the transformers flavour reloads wrong weights when the base is a local
folder, docs/measurements.md), and a test checks the reload gives identical logits.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretoflow.io import files_hash
from paretoflow.schema import TABLES

if TYPE_CHECKING:
    from paretoflow.config import Params, TrackingConfig

PARENT_TAG = "mlflow.parentRunId"
FLOW_RUN_TAG = "paretoflow.flow_run_id"
PROCESS_TAG = "paretoflow.process"
RUN_KEY_TAG = "paretoflow.run_key"
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
    def start_run(self, name: str, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
                  run_key: str | None = None) -> str:
        """Create a run tagged with its creating process. With `run_key`, a run already
        carrying that key under the same parent is reused (set RUNNING again): what a
        retried task wants instead of a duplicate."""
        all_tags = {PROCESS_TAG: process_identity(), **(tags or {})}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        if run_key is not None:
            all_tags[RUN_KEY_TAG] = _key_digest(run_key)
            existing = self.find_keyed_run(run_key, parent_run_id)
            if existing is not None:
                self.client.update_run(existing, status="RUNNING")
                self.set_tags(existing, {PROCESS_TAG: all_tags[PROCESS_TAG]})
                return existing
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def find_keyed_run(self, run_key: str, parent_run_id: str | None) -> str | None:
        # The tag holds a digest of the key: any key, and nothing to escape in the filter.
        query = f"tags.`{RUN_KEY_TAG}` = '{_key_digest(run_key)}'"
        if parent_run_id:
            query += f" and tags.`{PARENT_TAG}` = '{parent_run_id}'"
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=2,
                                       order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

    @contextlib.contextmanager
    def run(self, name: str, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
            run_key: str | None = None) -> Iterator[str]:
        """`start_run` whose run ends FINISHED, or FAILED when the block raises (also on
        Ctrl-C), so no error leaves it RUNNING."""
        run_id = self.start_run(name, parent_run_id, tags, run_key=run_key)
        try:
            yield run_id
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise
        self.end_run(run_id)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    # Each entity logged on its own is one database transaction (~17-25 ms on sqlite here: a
    # stage's ~100 params, an adapter's ~120 curve points took 3-4 s each); `log_batch`
    # writes up to MLflow's per-call limits in one.
    def _log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
        for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH])
        for start in range(0, len(tags), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=tags[start : start + MAX_PARAMS_TAGS_PER_BATCH])

    def log_params(self, run_id: str, params: Mapping[str, Any], prefix: str = "") -> None:
        from mlflow.entities import Param

        # never log secrets as params
        self._log_batch(run_id, params=[Param(key[:250], str(value)[:6000]) for key, value in flatten(params, prefix).items()
                                        if not _SECRET_PART.search(key)])

    @staticmethod
    def _metric(key: str, value: Any, step: int):
        from mlflow.entities import Metric

        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return Metric(metric_name(key), float(value), int(time.time() * 1000), step)

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None = None, prefix: str = "") -> None:
        rows = [self._metric(key, value, step or 0) for key, value in flatten(metrics, prefix).items()]
        self._log_batch(run_id, metrics=[m for m in rows if m is not None])

    def log_metric_rows(self, run_id: str, rows: list[tuple[int, Mapping[str, Any]]]) -> None:
        """Metrics at several steps ((step, {name: value}) rows) in as few writes as MLflow allows."""
        out = [self._metric(key, value, step) for step, values in rows for key, value in flatten(values).items()]
        self._log_batch(run_id, metrics=[m for m in out if m is not None])

    def log_curve(self, run_id: str, name: str, values: list[float]) -> None:
        self.log_metric_rows(run_id, [(step, {name: value}) for step, value in enumerate(values) if value is not None])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        elif path.exists():
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_adapter(self, run_id: str, adapter_dir: Path, base_model_path: str, artifact_path: str = "adapter",
                    base_fingerprint: str | None = None) -> None:
        """Log a LoRA adapter (safetensors only) with the base it must be loaded on (its
        fingerprint as recorded at training when given, else computed from the path)."""
        adapter_dir = Path(adapter_dir)
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / artifact_path
            staged.mkdir()
            for f in adapter_dir.iterdir():
                if f.is_file() and f.suffix in (".safetensors", ".json", ".md", ".png"):
                    (staged / f.name).write_bytes(f.read_bytes())
            from paretoflow.models import model_fingerprint

            fingerprint = base_fingerprint or model_fingerprint(base_model_path)
            (staged / "base_model.json").write_text(json.dumps(
                {"base_model_path": str(base_model_path), "base_fingerprint": fingerprint}))
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

def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_sha(root: Path) -> str:
    """HEAD's commit; whether the checkout differs from it is `git_dirty`'s business."""
    out = _git(root, "rev-parse", "HEAD")
    return out.strip() if out else "unknown"


# Rewritten by every `dvc repro`/`dvc commit` (outputs differ across machines in float
# rounding): a change there says nothing about the code.
_NOT_CODE = {"dvc.lock"}
_TAG_LIMIT = 4000   # below MLflow's tag value limit, with room for the suffix


def git_dirty(root: Path) -> str:
    """Tracked paths (repository-relative, comma-separated) that differ from HEAD, staged or
    not, except dvc.lock; "" for a clean checkout, "unknown" outside a git work tree."""
    out = _git(root, "diff", "--name-only", "-z", "HEAD", "--")
    if out is None:
        return "unknown"
    paths = sorted({p for p in out.split("\0") if p and Path(p).name not in _NOT_CODE})
    text = ",".join(paths)
    if len(text) > _TAG_LIMIT:
        shown = text[:_TAG_LIMIT].rsplit(",", 1)[0]
        text = f"{shown},... (+{len(paths) - shown.count(',') - 1} more)"
    return text


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
        "paretoflow.git_dirty": git_dirty(root),
        "paretoflow.dvc_data_hash": dvc_data_hash(root),
        # The curated tables only: Data Docs in the same folder are rewritten on every run.
        "paretoflow.data_hash": data_hash or files_hash(
            [root / params.curate.out_dir / f"{table}.parquet" for table in TABLES]),
        "paretoflow.params_hash": params.section_hash(),
        FLOW_RUN_TAG: flow_run_id or "local",
    }


# ------------------------------------------------------------------ zombie runs

@functools.lru_cache(maxsize=1)
def _machine() -> str:
    """This machine: host name + kernel boot id (pids are only comparable within one boot)."""
    boot = ""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        pass
    return f"{socket.gethostname()}/{boot}"


def _started(pid: int) -> str | None:
    """Start time of a live process (guards against a reused pid), None if none runs."""
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.ZombieProcess, ValueError):
        return None
    except psutil.AccessDenied:
        return "?"


def process_identity(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{_machine()}:{pid}:{_started(pid)}"


def process_is_dead(identity: str) -> bool:
    """True only when `identity` names a process of this machine that no longer runs (its
    pid is gone or now belongs to a process started at another time); a process of another
    machine is never judged here."""
    try:
        machine, pid, started = identity.rsplit(":", 2)
        pid_number = int(pid)
    except ValueError:
        return False
    if machine != _machine():
        return False
    now = _started(pid_number)
    return now is None or (now != "?" and now != started)


def sweep_zombie_runs(tracker: Tracker, is_alive: Callable[[str], bool],
                      current_flow_run_id: str | None = None) -> list[str]:
    """Mark FAILED every RUNNING run of this experiment whose owner is gone: its creating
    process on this machine died (kill -9), or `is_alive(flow_run_id)` says its flow run
    is over. Runs of `current_flow_run_id` and runs that cannot be judged are kept.
    Returns the ids marked. `is_alive` keeps this module orchestrator-free: the flow
    passes a Prefect-backed predicate (tasks/tracking.py)."""
    from mlflow.entities import RunStatus

    verdicts: dict[str, bool] = {}   # flow run id -> alive, one query per flow run
    swept = []
    for run in _running_runs(tracker):
        tags = run.data.tags
        flow_run_id = tags.get(FLOW_RUN_TAG)
        if flow_run_id is None and PROCESS_TAG not in tags:
            continue   # not a paretoflow run
        if current_flow_run_id is not None and flow_run_id == current_flow_run_id:
            continue
        reason = None
        if process_is_dead(tags.get(PROCESS_TAG, "")):
            reason = f"its process {tags[PROCESS_TAG]} is gone"
        elif flow_run_id not in (None, "local"):
            if flow_run_id not in verdicts:
                verdicts[flow_run_id] = bool(is_alive(flow_run_id))
            if not verdicts[flow_run_id]:
                reason = f"flow run {flow_run_id} is no longer running"
        if reason is None:
            continue
        tracker.set_tags(run.info.run_id, {"paretoflow.zombie": f"marked FAILED by flow run "
                                           f"{current_flow_run_id or 'local'}: {reason}"})
        tracker.client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.FAILED))
        swept.append(run.info.run_id)
    return swept


def _running_runs(tracker: Tracker):
    token = None
    while True:
        page = tracker.client.search_runs([tracker.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                          max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


# ------------------------------------------------------------------ helpers

def _key_digest(run_key: str) -> str:
    return hashlib.sha256(run_key.encode()).hexdigest()[:32]


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
    """MLflow refuses `( ) @` in metric names (docs/measurements.md)."""
    return name.translate(_FORBIDDEN_METRIC_CHARS)
