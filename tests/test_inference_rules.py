"""Inference rules, read from rendered projects (AST where it matters; nothing generates)."""

import ast
import importlib.util
import re
import sys

import pytest
import yaml
from combinations import valid_combinations

COMBOS = valid_combinations(["inference"])
IDS = ["-".join(c) for c in COMBOS]
GPU = {"cuda", "multi-gpu"}


def tree(project):
    return ast.parse((project / "infer.py").read_text())


def calls(node, name):
    """Calls of `name` or `<anything>.name` under `node`."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if getattr(func, "attr", None) == name or getattr(func, "id", None) == name:
                yield sub


def model_generates(node):
    """transformers' `model.generate(...)` calls (not vLLM's `llm.generate`)."""
    return [
        c
        for c in calls(node, "generate")
        if isinstance(c.func, ast.Attribute) and ast.unparse(c.func.value) == "model"
    ]


def keyword(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


def config(project, name="train"):
    return yaml.safe_load((project / "configs" / f"{name}.yaml").read_text())


def parents(tree_):
    links = {}
    for node in ast.walk(tree_):
        for child in ast.iter_child_nodes(node):
            links[child] = node
    return links


def ancestors(node, links):
    while node in links:
        node = links[node]
        yield node


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_r_no_grad_eval_generate_runs_under_inference_mode(render, task, hardware, scale):
    module = tree(render(task, hardware, scale))
    links = parents(module)
    hf_generates = model_generates(module)
    assert hf_generates, "no model.generate call"
    for call in hf_generates:
        guards = [
            item.context_expr.func.attr
            for node in ancestors(call, links)
            if isinstance(node, ast.With)
            for item in node.items
            if isinstance(item.context_expr, ast.Call)
        ]
        assert "inference_mode" in guards, f"model.generate at line {call.lineno} has grad on"


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_r_pad_token_left_padding_pad_token_and_attention_mask(render, task, hardware, scale):
    module = tree(render(task, hardware, scale))
    sides = [
        node.value.value
        for node in ast.walk(module)
        if isinstance(node, ast.Assign)
        and any(getattr(t, "attr", None) == "padding_side" for t in node.targets)
    ]
    assert sides == ["left"], f"padding_side assignments: {sides}"
    # A missing pad token becomes eos, guarded by `if tokenizer.pad_token is None`.
    guarded = [
        node
        for node in ast.walk(module)
        if isinstance(node, ast.If)
        and "pad_token is None" in ast.unparse(node.test)
        and "tokenizer.pad_token = tokenizer.eos_token" in ast.unparse(node)
    ]
    assert guarded, "no pad token fallback"
    assert model_generates(module)
    for call in model_generates(module):
        assert keyword(call, "attention_mask") is not None, "generate without attention_mask"
        assert keyword(call, "pad_token_id") is not None


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_r_infer_engine_vllm_only_on_gpu_imported_lazily_with_fallback(
    render, task, hardware, scale
):
    project = render(task, hardware, scale)
    module = tree(project)
    vllm_imports = [
        node
        for node in ast.walk(module)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vllm"
    ]
    if hardware not in GPU:
        assert not vllm_imports and "engine" not in config(project)
        assert not (project / "requirements-vllm.txt").exists()
        return
    assert vllm_imports
    links = parents(module)
    for node in vllm_imports:  # inside a function, inside `try ... except ImportError`
        chain = list(ancestors(node, links))
        assert any(isinstance(n, ast.FunctionDef) for n in chain), "vllm imported at module level"
        handlers = [h for n in chain if isinstance(n, ast.Try) for h in n.handlers]
        assert any(ast.unparse(h.type) == "ImportError" for h in handlers)
    assert config(project)["engine"]["name"] == "vllm"
    assert config(project, "smoke")["engine"]["name"] == "vllm"  # the tests run the fallback
    # The fallback warns: build_engine (which main calls) checks CUDA and falls back to
    # transformers_engine.
    functions = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    build = functions["build_engine"]
    assert list(calls(functions["main"], "build_engine"))
    assert "torch.cuda.is_available()" in ast.unparse(build)
    assert list(calls(build, "transformers_engine")) and list(calls(build, "warn"))


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_r_pinned_vllm_pins_live_in_their_own_requirements_file(render, task, hardware, scale):
    project = render(task, hardware, scale)
    assert "vllm" not in (project / "requirements.txt").read_text()
    if hardware not in GPU:
        return
    lines = (project / "requirements-vllm.txt").read_text().splitlines()
    pins = dict(
        line.split("#")[0].strip().split("==") for line in lines if not line.startswith("#")
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["vllm"]) and {"peft", "pyyaml"} <= set(pins)
    assert "NOT run by scaffold's test suite" in "\n".join(lines)  # said, not hidden


@pytest.mark.parametrize("gpus, nodes", [(2, 1), (4, 2), (8, 1)])
def test_layout_is_chosen_at_run_time_and_pipeline_from_nodes(render, gpus, nodes):
    # multi-gpu: replicas or tensor parallel within a node, chosen by infer.py from the model's
    # size and shape (tests/test_scale_defects.py runs that choice); pipeline parallel across
    # nodes. vLLM runs its own workers and replicas are infer.py's own processes, so no
    # launcher and no torchrun (R-DDP-ONLY-MULTI: no DDP either).
    project = render("inference", "multi-gpu", "large", gpus=gpus, nodes=nodes)
    for name in ("train", "smoke"):
        engine = config(project, name)["engine"]
        assert engine["tensor_parallel_size"] is None and engine["replicas"] is None
        assert engine["pipeline_parallel_size"] == nodes
    module = tree(project)
    llm = next(c for c in calls(module, "LLM"))
    assert ast.unparse(keyword(llm, "tensor_parallel_size")) == "tensor_parallel"
    assert ast.unparse(keyword(llm, "pipeline_parallel_size")) == "pipeline_parallel"
    source = ast.unparse(module)
    assert 'choose_layout(cfg["engine"]' in source.replace("'", '"')
    assert 'engine["pipeline_parallel_size"]' in source.replace("'", '"')
    assert not (project / "launch").exists()
    text = (project / "infer.py").read_text() + (project / "README.md").read_text()
    assert not re.search(r"torchrun|init_process_group|DistributedDataParallel|LOCAL_RANK", text)
    assert ("ray==" in (project / "requirements-vllm.txt").read_text()) == (nodes > 1)


@pytest.mark.parametrize(
    "task, hardware, scale", [c for c in COMBOS if c[1] == "cuda"], ids=lambda v: v
)
def test_one_gpu_uses_no_parallelism(render, task, hardware, scale):
    project = render(task, hardware, scale)
    assert "tensor_parallel" not in (project / "infer.py").read_text()
    assert "parallel" not in str(config(project)["engine"])


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_r_safe_load_trust_remote_code_comes_from_config(render, task, hardware, scale):
    project = render(task, hardware, scale)
    module = tree(project)
    loaders = [*calls(module, "from_pretrained"), *calls(module, "LLM")]
    assert loaders
    for call in loaders:
        if ast.unparse(call.func) == "PeftModel.from_pretrained":
            continue  # an adapter runs no model code
        value = keyword(call, "trust_remote_code")
        assert value is not None, f"line {call.lineno}: trust_remote_code not passed"
        assert ast.unparse(value) == "model_cfg['trust_remote_code']", ast.unparse(value)
    assert config(project)["model"]["trust_remote_code"] is False
    assert config(project, "smoke")["model"]["trust_remote_code"] is False


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_r_device_and_scale_defaults(render, task, hardware, scale):
    project = render(task, hardware, scale)
    source = (project / "infer.py").read_text()
    cfg = config(project)
    assert cfg["model"]["dtype"] == ("bfloat16" if hardware in GPU else "float32")  # R-MPS too
    assert cfg["generation"]["batch_size"] >= 1
    assert "device: {device}" in source  # printed at start
    if hardware == "mps":
        # R-MPS: the environment is set before torch is imported.
        assert source.index("PYTORCH_ENABLE_MPS_FALLBACK") < source.index("import torch")
        assert "torch.backends.mps.is_available()" in source
    if hardware in GPU:
        assert "torch.cuda.is_available()" in source and "warnings.warn" in source
    if hardware == "cpu":
        assert "warnings" not in source


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_r_output_name_and_sampling_settings_are_config(render, task, hardware, scale):
    project = render(task, hardware, scale)
    cfg = config(project)
    assert cfg["data"]["output_file"] == "../runs/demo/generations.jsonl"
    assert cfg["data"]["prompts_file"] == "../data/prompts.jsonl"
    assert {"batch_size", "max_new_tokens", "temperature", "top_p", "seed"} <= set(
        cfg["generation"]
    )
    assert set(config(project, "smoke")) == set(cfg)  # same sections in the smoke config
    assert (project / "data" / "prompts.jsonl").is_file()


@pytest.fixture(scope="module")
def read_prompts(render):
    """infer.read_prompts from the cpu render (imports torch; generates nothing)."""
    project = render("inference", "cpu")
    sys.path.insert(0, str(project))
    try:
        spec = importlib.util.spec_from_file_location("rendered_infer", project / "infer.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("config", None)  # the rendered config.py, imported by infer.py
    return module.read_prompts


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "prompts file not found"),
        ("", "no prompts"),
        ('{"prompt": "ok"}\n{"prompt": oops}\n', "line 2: invalid JSON"),
        ('{"text": "hi"}\n', "line 1: needs a non-empty `prompt`"),
        ('{"prompt": "  "}\n', "line 1: needs a non-empty `prompt`"),
        ('{"messages": [{"role": "user"}]}\n', "line 1: needs a non-empty `prompt`"),
        ('["a list"]\n', "line 1"),
    ],
)
def test_r_data_validation_names_the_file_and_the_schema(read_prompts, tmp_path, content, problem):
    path = tmp_path / "prompts.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as error:
        read_prompts(str(path))
    message = str(error.value)
    assert str(path) in message and problem in message
    assert '"prompt": "<text>"' in message and '"messages"' in message


def test_r_data_validation_accepts_prompts_and_chats_and_numbers_missing_ids(
    read_prompts, tmp_path
):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"prompt": "a"}\n\n{"id": "x", "messages": [{"role": "user", "content": "b"}]}\n'
    )
    rows = read_prompts(str(path))
    assert [row["id"] for row in rows] == [1, "x"]
