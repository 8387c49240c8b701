"""Pretraining at scale: how the model is built and how checkpoints are written, verified
and resumed. Rule tests read rendered projects (ASTs, YAML); the sharded-init test runs two
real gloo processes. Each project's own tests/test_smoke.py truncates and flips bytes of
real checkpoints (run by test_smoke_projects.py, FSDP large included).
"""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from combinations import valid_combinations
from rendered import calls, config, function, tree

COMBOS = [(hw, scale) for _, hw, scale in valid_combinations(["pretraining"])]


def combos(where=lambda hw, scale: True):
    chosen = [c for c in COMBOS if where(*c)]
    return pytest.mark.parametrize(("hardware", "scale"), chosen, ids=["-".join(c) for c in chosen])


ALL = combos()
FSDP = combos(lambda hw, scale: hw == "multi-gpu" and scale == "large")
NOT_FSDP = combos(lambda hw, scale: not (hw == "multi-gpu" and scale == "large"))


@pytest.fixture
def project(render, hardware: str, scale: str) -> Path:
    return render("pretraining", hardware, scale)


def line_of(node: ast.AST, name: str) -> int:
    found = calls(node, name)
    assert found, f"no call to {name}"
    return found[0].lineno


# Building the model ---------------------------------------------------------------------


@FSDP
def test_large_pretraining_builds_the_model_on_the_meta_device_then_shards_it(project):
    """R-MEMORY: GPT() runs under torch.device("meta"); fully_shard per block, then the root;
    only then does each rank allocate (to_empty) and initialise its own shards."""
    module = tree(project)
    train = function(module, "train")
    meta = [w for w in ast.walk(train) if isinstance(w, ast.With)]
    meta = [w for w in meta if ast.unparse(w.items[0].context_expr) == "torch.device('meta')"]
    assert meta and calls(meta[0], "GPT"), "GPT() is not built on the meta device"
    assert not [c for c in calls(train, "to") if "GPT" in ast.unparse(c)]
    shards = calls(train, "fully_shard")
    assert [ast.unparse(c.args[0]) for c in shards] == ["block", "raw_model"]
    assert shards[-1].lineno < line_of(train, "materialize") < line_of(train, "AdamW")
    materialize = function(module, "materialize")
    assert line_of(materialize, "to_empty") < line_of(materialize, "init_parameter")
    assert calls(function(tree(project, "model.py"), "init_weights"), "init_parameter")


@NOT_FSDP
def test_replicated_pretraining_builds_the_model_on_its_device(project):
    """R-DEVICE: without FSDP every process holds the whole model: built, then moved."""
    train = ast.unparse(function(tree(project), "train"))
    assert "raw_model = GPT(config).to(device)" in train and "torch.device('meta')" not in train


SHARDED_INIT = """
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from model import GPT, GPTConfig
from train import materialize, seed_everything

dist.init_process_group("gloo")
# Odd sizes, so that the two shards of most parameters differ in length.
config = GPTConfig.from_preset("tiny", vocab_size=333, block_size=37, bias=True)
seed_everything(1337)
with torch.device("meta"):
    model = GPT(config)
for block in model.blocks:
    fully_shard(block)
fully_shard(model)
materialize(model, torch.device("cpu"))
sharded = {name: p.full_tensor() for name, p in model.named_parameters()}
if dist.get_rank() == 0:
    reference_model = GPT(config)
    seed_everything(1337)  # the same stream, drawn by init_weights() on one device
    reference_model.init_weights()
    reference = dict(reference_model.named_parameters())
    assert sharded.keys() == reference.keys()
    different = [n for n in reference if not torch.equal(sharded[n], reference[n])]
    assert not different, f"differ from a one-device init: {different}"
    print("sharded init == one-device init", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.parametrize(("hardware", "scale"), [("multi-gpu", "large")])
def test_sharded_init_equals_a_one_device_init_bit_for_bit(project, tmp_path):
    """R-RANK-SEED: two gloo ranks build on meta, shard and materialize; the gathered weights
    equal GPT.init_weights() on one device from the same seed (no duplicated shards)."""
    script = tmp_path / "sharded_init.py"
    script.write_text(textwrap.dedent(SHARDED_INIT))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
        + [str(script)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "sharded init == one-device init" in result.stdout


# Writing checkpoints --------------------------------------------------------------------


@FSDP
def test_large_pretraining_checkpoints_are_sharded_never_gathered(project):
    """R-FULL-CHECKPOINT at scale: each rank writes its own shards with DCP (dcp.save) and
    reads them back with dcp.load; no full state dict, no gather onto rank 0."""
    module = tree(project)
    made = function(module, "make_checkpoint")
    assert calls(made, "get_state_dict")
    for name in ("make_checkpoint", "save_atomic", "load_checkpoint"):
        source = ast.unparse(function(module, name))
        assert "full_state_dict" not in source and "cpu_offload" not in source, name
    assert "dcp.save" in ast.unparse(function(module, "save_atomic"))
    load = function(module, "load_checkpoint")
    assert line_of(load, "load") < line_of(load, "set_state_dict")
    assert "dcp.load" in ast.unparse(load)
    # Plain values (progress, RNG, config, optimizer hyperparameters) load with weights_only.
    assert "weights_only=True" in ast.unparse(load)


@ALL
def test_pretraining_checkpoint_manifest_is_written_last_then_renamed(project):
    """R-SAFE-INTERRUPT: state, then manifest.json with every file's SHA-256, then the rename
    of <name>.tmp: a checkpoint without its manifest never finished saving."""
    module = tree(project)
    save = function(module, "save_atomic")
    assert line_of(save, "save") < line_of(save, "write_manifest") < line_of(save, "replace")
    assert "sha256" in ast.unparse(function(module, "fingerprint"))


@ALL
def test_pretraining_resume_verifies_checkpoints_before_loading(project):
    """R-RESUME: --resume checks every file against the manifest (size, SHA-256), skips a
    damaged newest checkpoint with a warning, and refuses a damaged explicit one by name."""
    module = tree(project)
    find = function(module, "find_checkpoint")
    assert calls(find, "damage") and calls(find, "warn") and calls(find, "SystemExit")
    assert calls(function(module, "file_damage"), "fingerprint")
    train = function(module, "train")
    assert line_of(train, "find_checkpoint") < line_of(train, "load_checkpoint")


@ALL
def test_pretraining_removes_unfinished_saves_before_training(project):
    """R-SAFE-INTERRUPT: <name>.tmp left by a killed save is removed at start."""
    module = tree(project)
    train = function(module, "train")
    assert line_of(train, "remove_unfinished_saves") < line_of(train, "find_checkpoint")
    assert "'*.tmp'" in ast.unparse(function(module, "remove_unfinished_saves"))


@ALL
def test_pretraining_best_checkpoint_is_a_link_not_another_copy(project):
    """R-FULL-CHECKPOINT: the best checkpoint is kept out of rotation and pointed at by a
    symlink; a better evaluation writes no extra copy of the weights."""
    module = tree(project)
    loop = next(n for n in ast.walk(function(module, "train")) if isinstance(n, ast.While))
    assert len(calls(loop, "save")) == 1 and calls(loop, "mark_best")
    assert "best" not in ast.unparse(calls(loop, "save")[0])
    assert calls(function(module, "mark_best"), "symlink_to")
    assert "best" in ast.unparse(function(module, "remove_old_checkpoints"))


@ALL
def test_pretraining_checkpoints_fall_on_evaluation_steps(project):
    """R-FULL-CHECKPOINT: the best checkpoint is chosen by the validation loss at its step, so
    checkpoint.interval is a multiple of eval.interval in both configs, and train.py says so."""
    for name in ("train", "smoke"):
        cfg = config(project, name)
        assert cfg["checkpoint"]["interval"] % cfg["eval"]["interval"] == 0, name
    assert "must be a multiple of" in ast.unparse(function(tree(project), "train"))
