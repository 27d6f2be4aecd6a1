"""Crash and resume: ``gspo train --save-steps 1`` SIGKILLed at many points, then ``--resume true``.

Every crash point is deterministic (see ``crashpoints.py``: public torch hooks and Python audit
events arm a self-SIGKILL at an exact phase of an exact step; nothing in ``src/`` is patched), and
every run is a real separate process executing ``python -m gspo train`` (forked from a zygote that
has torch imported already, see ``forkserver.py``; one test also drives the plain
``python -m gspo train`` command and kills it from outside).

For each crash point the test checks
  * the process really died by SIGKILL at the intended point (marker file written just before);
  * what is on disk: complete checkpoints of earlier steps, at most one temp folder, never a
    ``step-N`` folder without a verifying manifest;
  * ``--resume true`` resumes from the newest *complete* checkpoint (the log line names it and the
    step), never from a temp folder or a half-written/half-deleted one, and cleans leftovers up;
  * the resumed run ends with the *same parameters* as an uninterrupted run (final/model.safetensors,
    |diff| <= 1e-6), the same summary, and one metrics line per step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from gspo.trainer.checkpoint import CheckpointError, latest_checkpoint, prune_checkpoints, verify_checkpoint
from tests.helpers_tiny import tiny_model_and_tokenizer
from tests.reliability.forkserver import ROOT, ForkServer, child_env

STEPS = 5  # periodic checkpoints after steps 1..4 (save_total_limit 2 keeps the newest two), final after 5
ATOL = 1e-6
RESUMED_RE = re.compile(r"resumed from (\S+) at step (\d+)")

pytestmark = pytest.mark.timeout(600)


def train_args(
    model_dir: Path, out: Path, *, max_steps: int = STEPS, resume: bool = False, save_steps: int = 1
) -> list[str]:
    return [
        "train",
        "--model",
        model_dir,
        "--task",
        "addition",
        "--rewards",
        "tests.reliability.crashpoints:reward",
        "--max-steps",
        max_steps,
        "--prompts-per-step",
        2,
        "--group-size",
        4,
        "--max-new-tokens",
        4,
        "--num-minibatches",
        2,
        "--micro-batch-size",
        8,
        "--learning-rate",
        0.01,
        "--seed",
        3,
        "--eval-limit",
        0,
        "--save-steps",
        save_steps,
        "--progress",
        "false",
        "--num-threads",
        1,
        "--output-dir",
        out,
        *(["--resume", "true"] if resume else []),
    ]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("crash")


@pytest.fixture(scope="module")
def model_dir(work) -> Path:
    model, tok = tiny_model_and_tokenizer(chat=False)
    path = work / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(work):
    fs = ForkServer(work / "forkserver")
    yield fs
    fs.close()


@pytest.fixture(scope="module")
def baseline(server, model_dir, work) -> dict[str, torch.Tensor]:
    """Final weights of the uninterrupted run (and sanity checks that the comparison means something)."""
    out = work / "baseline"
    run = server.run(train_args(model_dir, out))
    assert run.returncode == 0, run.stderr[-3000:]
    final = load_file(str(out / "final" / "model.safetensors"))
    initial = load_file(str(model_dir / "model.safetensors"))
    moved = max(float((final[k] - initial[k]).abs().max()) for k in final)
    assert moved > 1e-3, "training must move the weights, or the comparison below proves nothing"
    last_periodic = load_file(str(out / "checkpoints" / f"step-{STEPS - 1:06d}" / "model.safetensors"))
    assert max(float((final[k] - last_periodic[k]).abs().max()) for k in final) > 1e-4, (
        "each step must move the weights"
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["optimizer_steps"] == 2 * STEPS and summary["skipped_steps"] == 0
    return final


# ------------------------------------------------------------------------------------------ helpers
def crash(server, model_dir, out: Path, spec: str, **kwargs):
    marker = out.parent / f"{out.name}.{spec.replace('@', '_').replace('#', '_')}.marker"
    marker.unlink(missing_ok=True)
    run = server.run(train_args(model_dir, out, **kwargs), env={"GSPO_CRASH": spec, "GSPO_CRASH_MARKER": str(marker)})
    assert run.returncode == -signal.SIGKILL, (
        f"{spec}: expected death by SIGKILL, got rc={run.returncode}\n{run.stderr[-3000:]}"
    )
    fired = marker.read_text()
    assert fired.split("#")[0] == spec.split("#")[0], (spec, fired)
    return run


def resume(server, model_dir, out: Path, **kwargs):
    run = server.run(train_args(model_dir, out, resume=True, **kwargs))
    assert run.returncode == 0, run.stderr[-4000:]
    return run


def resumed_from(run) -> tuple[str, int] | None:
    m = RESUMED_RE.search(run.stderr)
    return (Path(m[1]).name, int(m[2])) if m else None


def leftovers(out: Path) -> list[str]:
    return sorted(
        p.name
        for parent in (out, out / "checkpoints")
        if parent.is_dir()
        for p in parent.iterdir()
        if ".tmp-" in p.name or ".old-" in p.name
    )


def assert_complete_checkpoints_only(out: Path, being_pruned: str | None = None) -> None:
    """Every step-N / final folder on disk verifies (a partial checkpoint never gets a real name).

    ``being_pruned``: an old checkpoint whose deletion the crash interrupted (it may be half gone).
    """
    for p in sorted((out / "checkpoints").glob("step-*")) + ([out / "final"] if (out / "final").exists() else []):
        if p.name != being_pruned:
            verify_checkpoint(p)


def assert_matches_baseline(out: Path, baseline: dict[str, torch.Tensor], periodic: list[str] | None = None) -> None:
    final = load_file(str(out / "final" / "model.safetensors"))
    assert final.keys() == baseline.keys()
    worst = max(float((final[k] - baseline[k]).abs().max()) for k in final)
    assert worst <= ATOL, f"resumed run differs from the uninterrupted one by {worst:.3g}"
    verify_checkpoint(out / "final")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["optimizer_steps"] == 2 * STEPS and summary["skipped_steps"] == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert steps == list(range(1, STEPS + 1)), steps
    assert leftovers(out) == [], leftovers(out)
    assert_complete_checkpoints_only(out)
    expected = [f"step-{STEPS - 2:06d}", f"step-{STEPS - 1:06d}"] if periodic is None else periodic
    root = out / "checkpoints"
    assert (sorted(p.name for p in root.iterdir()) if root.is_dir() else []) == expected


# ------------------------------------------------------------------------------------------ the matrix
# (crash point, newest complete periodic checkpoint left on disk = the step resume must continue from,
#  temp folder expected on disk after the crash)
CASES = [
    ("sample@1#1", None, None),  # prefill of the very first rollout: nothing saved yet -> from scratch
    ("sample@2", 1, None),  # first decode step of step 2's rollout (KV cache live)
    ("reward@3", 2, None),  # rollout of step 3 done, scoring it
    ("optimizer@3", 2, None),  # between the two minibatch updates of step 3 (half-updated in memory)
    ("optimizer@4#1", 3, None),  # before the first update of step 4
    ("ckpt-begin@2", 1, "step-000002"),  # temp folder created, still empty
    ("ckpt-weights@3", 2, "step-000003"),  # weights written, tokenizer and trainer state not
    ("ckpt-fsync@3", 2, "step-000003"),  # everything written, nothing fsynced, no manifest
    ("ckpt-manifest@4", 3, "step-000004"),  # manifest about to be written
    ("ckpt-rename@3", 2, "step-000003"),  # complete temp folder not yet renamed into place
    ("prune@4", 4, None),  # half-way through deleting step-000002 after step 4's save
    ("ckpt-manifest@final", 4, "final"),  # final checkpoint half-written
    ("ckpt-rename@final", 4, "final"),  # final complete in its temp folder, not renamed
]


@pytest.mark.parametrize("spec, resume_step, tmp_label", CASES, ids=[c[0] for c in CASES])
def test_sigkill_then_resume_matches_uninterrupted_run(server, model_dir, baseline, work, spec, resume_step, tmp_label):
    out = work / f"run-{spec.replace('@', '_').replace('#', '_')}"
    crash(server, model_dir, out, spec)

    # --- what the crash left on disk
    assert not (out / "final").exists()
    assert_complete_checkpoints_only(out, being_pruned="step-000002" if spec.startswith("prune") else None)
    periodic = (
        sorted(int(p.name[5:]) for p in (out / "checkpoints").glob("step-*")) if (out / "checkpoints").is_dir() else []
    )
    assert (max(periodic) if periodic else None) == resume_step, periodic
    assert len(periodic) <= 2 + spec.startswith("prune")
    tmp = leftovers(out)
    if tmp_label is None:
        assert tmp == []
    else:
        assert len(tmp) == 1 and tmp[0].startswith(f".{tmp_label}.tmp-"), tmp
        folder = next(p for parent in (out, out / "checkpoints") for p in parent.glob(tmp[0]))
        has_manifest = (folder / "manifest.json").exists()
        assert has_manifest == spec.startswith("ckpt-rename"), "only a complete temp folder has a manifest"
        assert (folder / "trainer_state.pt").exists() == spec.startswith(("ckpt-fsync", "ckpt-manifest", "ckpt-rename"))
    if spec.startswith("prune"):  # the pruned checkpoint is half deleted: it must not verify any more
        half = out / "checkpoints" / "step-000002"
        assert half.is_dir()
        with pytest.raises(CheckpointError, match="step-000002"):
            verify_checkpoint(half)

    # --- resume: from the newest complete checkpoint, then exactly the uninterrupted result
    run = resume(server, model_dir, out)
    if resume_step is None:
        assert resumed_from(run) is None and "no complete checkpoint" in run.stderr
    else:
        assert resumed_from(run) == (f"step-{resume_step:06d}", resume_step), run.stderr[-3000:]
    assert ".tmp-" not in (resumed_from(run) or ("",))[0]
    assert_matches_baseline(out, baseline)


def test_repeated_crashes_in_one_run_directory(server, model_dir, baseline, work):
    """Crash, resume and crash again at a different phase, four times over; then finish."""
    out = work / "chain"
    crash(server, model_dir, out, "sample@2")
    for spec, expect in (("ckpt-fsync@3", 1), ("optimizer@4#1", 2), ("ckpt-manifest@final", 3)):
        run = crash(server, model_dir, out, spec, resume=True)
        assert resumed_from(run) == (f"step-{expect:06d}", expect), (spec, run.stderr[-2000:])
    # a torn last metrics line, as an interrupted write would leave it
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "loss": 0.1')
    run = resume(server, model_dir, out)
    assert resumed_from(run) == ("step-000004", 4)
    assert_matches_baseline(out, baseline)


def test_crash_while_replacing_final_keeps_the_previous_final(server, model_dir, baseline, work):
    """save_steps=0 (the default: only 'final' is saved): train 3 steps, resume to 5, die mid-swap."""
    out = work / "swap"
    first = server.run(train_args(model_dir, out, max_steps=3, save_steps=0))
    assert first.returncode == 0, first.stderr[-3000:]
    crash(server, model_dir, out, "ckpt-rename@final", resume=True, save_steps=0)
    assert not (out / "final").exists()
    old = [p for p in out.iterdir() if p.name.startswith(".final.old-")]
    assert len(old) == 1 and verify_checkpoint(old[0])["step"] == 3  # the previous final is intact, just hidden
    run = resume(server, model_dir, out, save_steps=0)
    # recovering either the previous final (step 3) or the complete new one (step 5) is fine; starting over is not
    assert resumed_from(run) is not None and resumed_from(run)[1] in (3, 5), "3 steps of training were thrown away"
    assert_matches_baseline(out, baseline, periodic=[])


# ------------------------------------------------------------------------------------------ real CLI
def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_plain_cli_killed_from_outside_mid_checkpoint_then_corrupted_newest_falls_back(
    server, model_dir, baseline, work
):
    """``python -m gspo train`` as a user runs it; SIGKILL sent from outside while a temp folder exists.

    The child freezes itself (SIGSTOP) at the moment step 4's manifest is about to be written, so the
    kill lands deterministically inside the checkpoint write. Then the newest complete checkpoint
    (step 3) is corrupted by flipping bytes: ``verify_checkpoint`` names it, and ``--resume`` warns
    and falls back to step 2 -- ending with the uninterrupted run's weights. (The resume goes through
    the fork server: one cold ``python -m gspo`` start costs ~25 s of CI time on a loaded machine.)
    """
    out = work / "plain"
    env = child_env(
        {"GSPO_CRASH": "ckpt-manifest@4", "GSPO_CRASH_ACTION": "stop", "GSPO_CRASH_MARKER": str(work / "plain.marker")}
    )
    argv = [sys.executable, "-m", "gspo", *map(str, train_args(model_dir, out))]
    with open(work / "plain-1.stderr", "w") as err:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 240
            while _state(proc.pid) not in ("T", "t") and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _state(proc.pid) in ("T", "t"), (
                f"never reached the crash point: {(work / 'plain-1.stderr').read_text()[-2000:]}"
            )
            tmp = list((out / "checkpoints").glob(".step-000004.tmp-*"))
            assert len(tmp) == 1 and not (tmp[0] / "manifest.json").exists()
            os.kill(proc.pid, signal.SIGKILL)  # from outside, mid checkpoint write
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    newest = out / "checkpoints" / "step-000003"
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for i in range(len(data) - 64, len(data) - 32):  # flip bytes inside the tensor data, size unchanged
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError,
        match=re.escape(f"checkpoint {newest} is corrupted: model.safetensors does not match its checksum"),
    ):
        verify_checkpoint(newest)

    res = resume(server, model_dir, out)
    assert (
        f"checkpoint {newest} is corrupted: model.safetensors does not match its checksum; falling back to an earlier checkpoint"
        in res.stderr
    )
    assert re.search(rf"resumed from {re.escape(str(out / 'checkpoints' / 'step-000002'))} at step 2\b", res.stderr), (
        res.stderr[-3000:]
    )
    assert_matches_baseline(out, baseline)


# ------------------------------------------------------------------------------------------ corruption
@pytest.fixture(scope="module")
def pristine(baseline, work) -> Path:
    """The baseline's run directory (periodic step 3 and 4, final 5): copy it before damaging."""
    return work / "baseline"


def _copy(pristine: Path, dest: Path) -> Path:
    shutil.copytree(pristine, dest)
    shutil.rmtree(dest / "final")  # resume candidates: step-000003, step-000004
    return dest


def _flip(path: Path, offset: int = -40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "weights-bitflip": (lambda d: _flip(d / "model.safetensors"), "model.safetensors does not match its checksum"),
    "weights-truncated": (
        lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]),
        "model.safetensors does not match its checksum",
    ),
    "state-bitflip": (lambda d: _flip(d / "trainer_state.pt", 200), "trainer_state.pt does not match its checksum"),
    "tokenizer-missing": (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    "manifest-missing": (lambda d: (d / "manifest.json").unlink(), "is incomplete: no manifest.json"),
    "manifest-torn": (
        lambda d: (d / "manifest.json").write_text((d / "manifest.json").read_text()[:50]),
        "unreadable manifest.json",
    ),
    "manifest-binary": (
        lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe\x00garbage"),
        "unreadable manifest.json",
    ),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_corrupted_newest_checkpoint_is_named_and_skipped(pristine, tmp_path, kind, caplog):
    run = _copy(pristine, tmp_path / "run")
    newest = run / "checkpoints" / "step-000004"
    damage, message = DAMAGE[kind]
    damage(newest)
    with pytest.raises(CheckpointError, match=re.escape(str(newest))) as err:
        verify_checkpoint(newest)
    assert message in str(err.value)
    with caplog.at_level("WARNING", logger="gspo"):
        assert latest_checkpoint(run) == run / "checkpoints" / "step-000003"
    assert f"{newest}" in caplog.text and "falling back to an earlier checkpoint" in caplog.text


def test_trainer_load_refuses_a_corrupted_checkpoint_before_touching_the_model(pristine, tmp_path):
    from gspo.config import GSPOConfig
    from gspo.trainer import GSPOTrainer
    from tests.reliability.crashpoints import reward

    run = _copy(pristine, tmp_path / "run")
    newest = run / "checkpoints" / "step-000004"
    _flip(newest / "model.safetensors")
    model, tok = tiny_model_and_tokenizer(chat=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = GSPOConfig(
        model="tiny",
        prompts_per_step=2,
        group_size=4,
        num_minibatches=2,
        output_dir=str(tmp_path / "o"),
        eval_limit=0,
        progress=False,
    )
    trainer = GSPOTrainer(model, tok, [reward], [{"prompt": "1+1="}], cfg)
    with pytest.raises(CheckpointError, match="step-000004"):
        trainer.load(newest)
    assert trainer.step == 0 and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_every_checkpoint_corrupted_means_a_fresh_start_with_warnings(pristine, tmp_path, caplog):
    run = _copy(pristine, tmp_path / "run")
    for step in (3, 4):
        _flip(run / "checkpoints" / f"step-{step:06d}" / "model.safetensors")
    with caplog.at_level("WARNING", logger="gspo"):
        assert latest_checkpoint(run) is None
    assert caplog.text.count("falling back to an earlier checkpoint") == 2


def test_prune_removes_stale_temp_folders_but_keeps_complete_checkpoints(pristine, tmp_path):
    run = _copy(pristine, tmp_path / "run")
    (run / "checkpoints" / ".step-000009.tmp-deadbeef").mkdir()
    (run / ".final.tmp-deadbeef").mkdir()
    prune_checkpoints(run, keep=2)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000003", "step-000004"]
    assert leftovers(run) == []


# Any bytes in manifest.json: verify_checkpoint raises CheckpointError (latest_checkpoint then skips the
# folder) -- never another exception, which would crash --resume instead of falling back.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=15), inner, max_size=3),
    max_leaves=10,
)
_manifests = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["format", "step", "files"]), _json_values, max_size=3).map(
        lambda v: json.dumps(v).encode()
    ),
    st.dictionaries(
        st.sampled_from(["model.safetensors", "trainer_state.pt", "../x", ""]), _json_values, max_size=3
    ).map(lambda files: json.dumps({"format": 1, "step": 4, "files": files}).encode()),
)


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_manifests)
def test_any_manifest_content_is_a_checkpoint_error_or_valid(pristine, tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("manifest") / "step-000004"
    shutil.copytree(pristine / "checkpoints" / "step-000004", folder)
    (folder / "manifest.json").write_bytes(content)
    try:
        verify_checkpoint(folder)
    except CheckpointError as exc:
        assert str(folder) in str(exc)
