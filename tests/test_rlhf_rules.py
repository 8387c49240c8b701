"""RULES.md, checked on every rendered rlhf project (reward model + GRPO); no training here."""

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from combinations import valid_combinations
from rendered import calls, function, tree

COMBOS = [c[1:] for c in valid_combinations(["rlhf"])]
IDS = ["-".join(c) for c in COMBOS]
STAGE_SECTIONS = ("reward_training", "policy_training")


def configs(project):
    for name in ("train.yaml", "smoke.yaml"):
        yield name, yaml.safe_load((project / "configs" / name).read_text())


def keyword(call, name):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def trainer_call(module, name):
    (call,) = calls(module, name)
    return call


@pytest.fixture(params=COMBOS, ids=IDS)
def project(request, render):
    hardware, scale = request.param
    return render("rlhf", hardware, scale), hardware, scale


def test_r_reward_guard_kl_penalty_is_on_and_the_reward_model_is_separate(project):
    # R-REWARD-GUARD: beta > 0 in every config and enforced in code; GRPO is scored by a
    # separately loaded reward model, never by the policy itself.
    project, _, _ = project
    for name, cfg in configs(project):
        assert cfg["policy_training"]["beta"] > 0, name
        assert cfg["rewards"]["reward_model"] > 0, name
        assert cfg["reward_model"]["save_dir"] != cfg["model"]["name"], name
    module = tree(project)
    main = function(module, "main")
    guards = [n for n in ast.walk(main) if isinstance(n, ast.If) and "beta" in ast.unparse(n.test)]
    assert guards and "<= 0" in ast.unparse(guards[0].test), "train.py must refuse beta <= 0"
    grpo = trainer_call(module, "GRPOTrainer")
    assert ast.unparse(keyword(grpo, "reward_funcs")) == "reward_funcs"
    assert ast.unparse(keyword(grpo, "model")) == "model"
    loader = function(module, "load_reward_model")
    assert "save_dir" in ast.unparse(loader)
    assert calls(loader, "freeze"), "the reward model must be frozen during GRPO"
    reward_stage = function(module, "train_reward_model")
    assert calls(reward_stage, "save_model"), "the reward stage must save the reward model"
    assert "rm_cfg['save_dir']" in ast.unparse(calls(reward_stage, "save_model")[0])


def test_r_reward_guard_rule_based_terms_are_configured_and_penalise_hacking(project):
    # R-REWARD-GUARD with [001] Pitfall 7: length and repetition terms are on by default.
    project, _, _ = project
    cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    assert cfg["rewards"]["length"] > 0 and cfg["rewards"]["repetition"] > 0
    spec = importlib.util.spec_from_file_location(f"rewards_{id(project)}", project / "rewards.py")
    rewards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rewards)
    repetition = rewards.repetition_penalty(cfg["rewards"]["repetition_min_unique_ratio"])
    length = rewards.length_penalty(
        cfg["rewards"]["length_min_words"], cfg["rewards"]["length_max_words"]
    )
    hacked = [[{"role": "assistant", "content": "hello " * 400}]]
    fine = [[{"role": "assistant", "content": "Paris is the capital of France."}]]
    assert repetition(hacked) == [-1.0] and length(hacked) == [-1.0]
    assert repetition(fine) == [0.0] and length(fine) == [0.0]


def test_r_ref_frozen_reference_is_frozen_and_beta_is_a_config_value(project):
    # R-REF-FROZEN: full fine-tuning freezes GRPO's reference copy explicitly; under LoRA the
    # reference is the adapter-disabled base (peft_config given to the trainer).
    project, _, scale = project
    module = tree(project)
    policy = function(module, "train_policy")
    grpo = trainer_call(module, "GRPOTrainer")
    freeze = function(module, "freeze")
    assert "requires_grad_(False)" in ast.unparse(freeze)
    frozen = [ast.unparse(c.args[0]) for c in calls(policy, "freeze")]
    if scale == "small":
        assert "trainer.ref_model" in frozen
        assert keyword(grpo, "peft_config") is None
    else:
        assert keyword(grpo, "peft_config") is not None
    for name, cfg in configs(project):
        assert 0.04 <= cfg["policy_training"]["beta"] <= 0.1, name


def test_r_lora_at_scale_and_r_trainable(project):
    # R-LORA-AT-SCALE: full fine-tuning at small scale; LoRA for both models above it.
    # R-TRAINABLE: trainable/total printed for both stages; zero trainable is an error.
    project, _, scale = project
    module = tree(project)
    for trainer in ("RewardTrainer", "GRPOTrainer"):
        peft = keyword(trainer_call(module, trainer), "peft_config")
        if scale == "small":
            assert peft is None, trainer
        else:
            assert peft is not None and "LoraConfig" in ast.unparse(peft), trainer
    for name, cfg in configs(project):
        assert ("lora" in cfg) == (scale != "small"), name
    if scale == "small":
        assert "peft" not in (project / "train.py").read_text()
    reported = {ast.unparse(c.args[1]) for c in calls(module, "report_parameters")}
    assert reported == {"'reward model'", "'policy'"}
    report = ast.unparse(function(module, "report_parameters"))
    assert "trainable == 0" in report and "SystemExit" in report


def test_r_memory_activation_checkpointing_is_set_explicitly(project):
    # R-MEMORY: TRL turns activation checkpointing on unless told, so every stage sets it.
    project, _, scale = project
    for name, cfg in configs(project):
        for section in STAGE_SECTIONS:
            training = cfg[section]
            assert training["activation_checkpointing"] is (scale == "medium"), (name, section)
            if scale == "large":
                assert training["fsdp"] and training["fsdp_config"]["activation_checkpointing"]


def test_r_amp_precision_is_set_for_the_hardware(project):
    # R-AMP: TRL configs default to bf16; CUDA keeps it, CPU and MPS train in fp32.
    project, hardware, _ = project
    gpu = hardware in ("cuda", "multi-gpu")
    for name, cfg in configs(project):
        for section in STAGE_SECTIONS:
            assert cfg[section]["bf16"] is gpu, (name, section)
            assert "fp16" not in cfg[section], (name, section)


def test_r_pin_memory_and_r_device(project):
    # R-PIN-MEMORY: on for CUDA training; R-DEVICE: cpu forces the CPU, others check and fall back.
    project, hardware, _ = project
    cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    for section in STAGE_SECTIONS:
        assert cfg[section]["dataloader_pin_memory"] is (hardware in ("cuda", "multi-gpu"))
        assert cfg[section].get("use_cpu", False) is (hardware == "cpu")
    main = ast.unparse(function(tree(project), "main"))
    if hardware == "cpu":
        assert "is_available" not in main
    else:
        assert "is_available()" in main and "warnings.warn" in main
        assert "fall_back_to_cpu" in main


@pytest.mark.parametrize("scale", [s for hw, s in COMBOS if hw == "mps"])
def test_r_mps_environment_is_set_before_torch(render, scale):
    # R-MPS: fallback and tokenizer parallelism set before torch is imported; smaller batches.
    project = render("rlhf", "mps", scale)
    module = tree(project)
    env = [i for i, n in enumerate(module.body) if "os.environ.setdefault" in ast.unparse(n)]
    torch = [
        i
        for i, n in enumerate(module.body)
        if isinstance(n, ast.Import | ast.ImportFrom) and "torch" in ast.unparse(n)
    ]
    assert len(env) == 2 and max(env) < min(torch)
    cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    for section in STAGE_SECTIONS:
        assert cfg[section]["gradient_accumulation_steps"] > 1


def test_r_pad_token_is_set_and_generation_pads_left(project):
    # R-PAD-TOKEN
    project, _, _ = project
    module = tree(project)
    loader = ast.unparse(function(module, "load_tokenizer"))
    assert "if tokenizer.pad_token is None" in loader
    assert "tokenizer.pad_token = tokenizer.eos_token" in loader
    policy = ast.unparse(function(module, "train_policy"))
    assert "tokenizer.padding_side = 'left'" in policy


def test_r_seed_is_set_before_models_are_built(project):
    # R-SEED: each stage seeds before from_pretrained builds a (partly new) model.
    project, _, _ = project
    module = tree(project)
    for stage in ("train_reward_model", "train_policy"):
        body = function(module, stage)
        seeds = [c.lineno for c in calls(body, "set_seed")]
        loads = [c.lineno for c in calls(body, "from_pretrained")]
        assert seeds and loads and min(seeds) < min(loads), stage
    for name, cfg in configs(project):
        assert all(isinstance(cfg[s]["seed"], int) for s in STAGE_SECTIONS), name


def test_r_safe_load_no_remote_code_by_default(project):
    # R-SAFE-LOAD: trust_remote_code comes from the config, where it is off.
    project, _, _ = project
    for name, cfg in configs(project):
        assert cfg["model"]["trust_remote_code"] is False, name
        assert cfg["reward_model"]["trust_remote_code"] is False, name
    for call in calls(tree(project), "from_pretrained"):
        assert keyword(call, "trust_remote_code") is not None, ast.unparse(call)


def test_r_use_library_and_r_eval_strategy(project):
    # R-USE-LIBRARY: checkpoint rotation and logging configured, not hand-written.
    # R-EVAL-STRATEGY: the reward model is evaluated on held-out pairs, best checkpoint kept.
    project, _, _ = project
    for name, cfg in configs(project):
        for section in STAGE_SECTIONS:
            training = cfg[section]
            assert training["save_total_limit"] >= 1, (name, section)
            assert training["report_to"] == "tensorboard", (name, section)
            assert training["logging_steps"] >= 1, (name, section)
        reward = cfg["reward_training"]
        assert reward["eval_strategy"] == reward["save_strategy"] != "no", name
        assert reward["load_best_model_at_end"] and reward["metric_for_best_model"], name
    text = (project / "train.py").read_text()
    assert "backward(" not in text and "optimizer.step" not in text


def test_r_output_name_runs_are_named_after_the_project(project):
    # R-OUTPUT-NAME
    project, _, _ = project
    cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    for path in (
        cfg["reward_model"]["save_dir"],
        cfg["reward_training"]["output_dir"],
        cfg["policy_training"]["output_dir"],
    ):
        assert path.startswith("../runs/demo/"), path


def test_r_model_fits_task_policy_is_an_instruct_model(project):
    # R-MODEL-FITS-TASK: the policy default is a chat/instruct model, never gpt2.
    project, _, _ = project
    cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    assert "Instruct" in cfg["model"]["name"] and "gpt2" not in cfg["model"]["name"].lower()


def test_r_ddp_only_multi_and_r_ddp_init(project):
    # R-DDP-ONLY-MULTI / R-DDP-INIT: only multi-gpu uses a process group (nccl, gloo on CPU),
    # prints on rank 0 and waits for the saved reward model before the policy stage.
    project, hardware, _ = project
    text = (project / "train.py").read_text()
    cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    if hardware == "multi-gpu":
        assert all(cfg[s]["ddp_backend"] == "nccl" for s in STAGE_SECTIONS)
        fallback = ast.unparse(function(tree(project), "fall_back_to_cpu"))
        assert "ddp_backend='gloo'" in fallback
        assert "wait_for_everyone()" in text and ".print(" in text
    else:
        assert "PartialState" not in text and "ddp_backend" not in json.dumps(cfg)


def test_r_config_stage_key_defaults_to_both_stages(project):
    # R-CONFIG: the stage is a config key, overridable like any other (--stage policy).
    project, _, _ = project
    for name, cfg in configs(project):
        assert cfg["stage"] == "all", name
    script = textwrap.dedent("""
        from config import load_config
        cfg, args = load_config(["--config", "configs/train.yaml", "--stage", "policy", "--resume"])
        assert cfg["stage"] == "policy" and args.resume == "latest", (cfg["stage"], args.resume)
        """)
    subprocess.run([sys.executable, "-c", script], cwd=project, check=True)


@pytest.mark.parametrize("hardware, scale", [("cpu", "small")])
def test_r_data_validation_errors_name_the_file_and_schema(render, tmp_path, hardware, scale):
    # R-DATA-VALIDATION (behaviour; the same code in every combination): no training, the
    # loader alone is called on broken files.
    project = render("rlhf", hardware, scale)
    cases = {
        "missing.jsonl": None,
        "no_rejected.jsonl": '{"prompt": "Hi", "chosen": "Hello."}\n',
        "empty_chosen.jsonl": '{"prompt": "Hi", "chosen": " ", "rejected": "x"}\n',
        "empty.jsonl": "",
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    script = textwrap.dedent(f"""
        import sys
        from train import PREFERENCE_SCHEMA, load_jsonl
        for name in {list(cases)!r}:
            try:
                load_jsonl({str(tmp_path)!r} + "/" + name, ("prompt", "chosen", "rejected"),
                           PREFERENCE_SCHEMA)
            except SystemExit as err:
                print("ERR", name, str(err).replace(chr(10), " | "))
            else:
                print("OK", name)
        """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, check=True
    )
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERR")]
    assert len(errors) == len(cases), result.stdout + result.stderr
    for line, name in zip(errors, cases, strict=True):
        assert str(tmp_path / name) in line, line
        assert '"rejected"' in line and "Expected" in line, line
    assert "missing ['rejected']" in errors[1] and "line 1" in errors[2]
