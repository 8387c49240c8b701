"""transformers and TRL: current argument names, consistent strategies, pad tokens,
attention masks, preference-tuning references and remote code."""

import ast
import re
from collections.abc import Iterator

from scaffold.check.findings import Finding
from scaffold.check.patterns import (
    dotted,
    enclosing_function,
    forward_calls,
    grad_disabled,
    is_constant,
    keyword,
    name_of,
    receiver,
)
from scaffold.check.registry import check
from scaffold.check.source import Source

TRL_SEQUENCE_CLASSES = {"SFTConfig", "SFTTrainer"}
PREFERENCE_CONFIGS = {
    "DPOConfig": 0.1,
    "GRPOConfig": 0.0,
    "RLOOConfig": 0.05,
    "OnlineDPOConfig": 0.1,
}
NO_PADDING = {False, "do_not_pad", None}


def is_arguments(call: ast.Call) -> bool:
    """TrainingArguments, Seq2SeqTrainingArguments, SFTConfig, DPOConfig, ..."""
    name = name_of(call)
    return name.endswith("Arguments") or (name.endswith("Config") and name[:1].isupper())


@check(
    "removed-evaluation-strategy",
    "R-EVAL-STRATEGY",
    "evaluation_strategy=, removed from transformers (now eval_strategy)",
)
def removed_evaluation_strategy(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        value = keyword(call, "evaluation_strategy")
        if value is not None:
            yield source.finding(
                value,
                "removed-evaluation-strategy",
                "evaluation_strategy no longer exists in transformers 5: TypeError at start",
                "eval_strategy=...",
            )


REMOVED = {
    "no_cuda": ("no_cuda no longer exists in transformers 5", "use_cpu=True"),
    "warmup_ratio": (
        "warmup_ratio no longer exists in transformers 5",
        "warmup_steps=<a float below 1, the warmup ratio>",
    ),
}


@check(
    "removed-transformers-argument",
    "R-USE-LIBRARY",
    "no_cuda=, warmup_ratio=, Trainer(tokenizer=) or TRL's max_seq_length=, all removed",
)
def removed_transformers_argument(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        name = name_of(call)
        for keyword_ in call.keywords:
            problem = None
            if keyword_.arg in REMOVED and is_arguments(call):
                problem = REMOVED[keyword_.arg]
            elif keyword_.arg == "tokenizer" and name.endswith("Trainer"):
                problem = (
                    f"{name}(tokenizer=) was removed in transformers 5",
                    "processing_class=tokenizer",
                )
            elif keyword_.arg == "max_seq_length" and name in TRL_SEQUENCE_CLASSES:
                problem = (f"{name}(max_seq_length=) was removed in TRL", "max_length=...")
            if problem:
                yield source.finding(
                    keyword_.value, "removed-transformers-argument", problem[0], problem[1]
                )


@check(
    "best-model-strategy-mismatch",
    "R-EVAL-STRATEGY",
    "load_best_model_at_end=True with evaluation and saving on different schedules",
)
def best_model_strategy_mismatch(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        if not is_constant(keyword(call, "load_best_model_at_end"), True):
            continue
        unpacked = any(k.arg is None for k in call.keywords)
        eval_node, save_node = keyword(call, "eval_strategy"), keyword(call, "save_strategy")
        if unpacked and (eval_node is None or save_node is None):
            continue  # the rest comes from a config this check cannot read
        problem = strategy_mismatch(
            literal(eval_node, "no"),
            literal(save_node, "steps"),
            literal(keyword(call, "eval_steps"), None),
            literal(keyword(call, "save_steps"), 500),
        )
        if problem:
            yield source.finding(
                call,
                "best-model-strategy-mismatch",
                f"load_best_model_at_end needs a saved checkpoint at every evaluation: "
                f"{problem} (transformers raises)",
                "set eval_strategy and save_strategy to the same value (and save_steps a "
                "multiple of eval_steps)",
            )


def strategy_mismatch(
    evaluate: object, save: object, every_eval: object, every_save: object
) -> str | None:
    """Why load_best_model_at_end cannot work with these settings, or None (also when a
    value is unknown). Defaults: eval_strategy "no", save_strategy "steps", save_steps 500."""
    if evaluate is None or save is None or save == "best":  # "best" saves at each evaluation
        return None
    if evaluate != save:
        return f"eval_strategy {evaluate!r} but save_strategy {save!r}"
    if evaluate == "steps" and isinstance(every_eval, int) and isinstance(every_save, int):
        if every_eval and every_save % every_eval:
            return f"save_steps {every_save} is not a multiple of eval_steps {every_eval}"
    return None


def literal(node: ast.AST | None, default: object) -> object:
    if node is None:
        return default
    if isinstance(node, ast.Constant):
        return node.value
    return None


@check(
    "trust-remote-code",
    "R-SAFE-LOAD",
    "trust_remote_code=True hard-coded: runs code downloaded with the model",
)
def trust_remote_code(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        value = keyword(call, "trust_remote_code")
        if is_constant(value, True):
            yield source.finding(
                value,
                "trust-remote-code",
                "trust_remote_code=True runs whatever Python ships with the model",
                "trust_remote_code=<a config value, off by default>",
            )


# Encoder families whose tokenizers always have a pad token.
PADDED_FAMILIES = re.compile(
    r"bert|roberta|deberta|electra|albert|xlm|t5|bart|mpnet|minilm|sentence-transformers", re.I
)


def tokenizer_names(source: Source) -> set[str]:
    """Names bound to a pretrained tokenizer that may have no pad token."""
    names = set()
    for node in source.assigns:
        value = node.value
        if (
            isinstance(node, ast.Assign)
            and isinstance(value, ast.Call)
            and name_of(value) == "from_pretrained"
            and "Tokenizer" in dotted(value.func)
        ):
            model = value.args[0] if value.args else keyword(value, "pretrained_model_name_or_path")
            if PADDED_FAMILIES.search(string_value(source, model, node)):
                continue
            names.update(dotted(t) for t in node.targets)
    return names - {""}


def string_value(source: Source, node: ast.AST | None, at: ast.AST) -> str:
    """The string `node` surely holds: a literal, a name assigned one literal in the file, or
    the literal default of a parameter of the function around `at`; '' when unknown."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.Name):
        return ""
    function = enclosing_function(source, at)
    if function is not None:
        args = function.args
        positional = args.posonlyargs + args.args
        defaults = dict(zip([a.arg for a in positional][::-1], args.defaults[::-1], strict=False))
        defaults |= {a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)}
        if node.id in defaults:
            return string_value(source, defaults[node.id], at) if defaults[node.id] else ""
        if node.id in {a.arg for a in positional + args.kwonlyargs}:
            return ""
    values = [
        n.value
        for n in source.assigns
        if isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets)
    ]
    if len(values) == 1 and isinstance(values[0], ast.Constant):
        return str(values[0].value)
    return ""


@check(
    "pad-token-missing",
    "R-PAD-TOKEN",
    "padding with a pretrained tokenizer whose pad token is never set",
)
def pad_token_missing(source: Source) -> Iterator[Finding]:
    tokenizers = tokenizer_names(source)
    if not tokenizers or sets_pad_token(source):
        return
    for call in source.calls:
        callee, owner = dotted(call.func), receiver(call)
        padding = keyword(call, "padding")
        pads = (callee in tokenizers and padding is not None and not pad_disabled(padding)) or (
            name_of(call) == "pad" and owner in tokenizers
        )
        collator = name_of(call) == "DataCollatorWithPadding" or (
            name_of(call) == "DataCollatorForLanguageModeling"
        )
        if collator:
            pads = any(dotted(a) in tokenizers for a in [*call.args, *map(_value, call.keywords)])
        if pads:
            tokenizer = owner or callee if not collator else sorted(tokenizers)[0]
            yield source.finding(
                call,
                "pad-token-missing",
                f"{tokenizer} may have no pad token (GPT-2, Llama and many chat models ship "
                "without one): padding raises or pads with a real token",
                f"if {tokenizer}.pad_token is None: {tokenizer}.pad_token = {tokenizer}.eos_token",
            )


def _value(k: ast.keyword) -> ast.expr:
    return k.value


def pad_disabled(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in NO_PADDING


def sets_pad_token(source: Source) -> bool:
    for node in source.assigns:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Attribute) and t.attr.startswith("pad_token") for t in targets):
            return True
    return any(
        name_of(c) == "add_special_tokens" and "pad_token" in ast.unparse(c) for c in source.calls
    )


@check(
    "generate-without-attention-mask",
    "R-PAD-TOKEN",
    "model.generate(input_ids) without the attention_mask",
)
def generate_without_attention_mask(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        if name_of(call) != "generate" or not isinstance(call.func, ast.Attribute):
            continue
        if keyword(call, "attention_mask") is not None or any(k.arg is None for k in call.keywords):
            continue
        given = keyword(call, "input_ids") or (call.args[0] if call.args else None)
        if given is not None and "input_ids" in ast.unparse(given):
            yield source.finding(
                call,
                "generate-without-attention-mask",
                "generate() without attention_mask: padded positions are attended to and "
                "outputs change with the batch",
                "generate(**inputs) or generate(input_ids=..., attention_mask=...)",
            )


@check(
    "preference-beta-zero",
    "R-REF-FROZEN",
    "DPO/GRPO with beta 0: no KL penalty holds the policy near its reference",
)
def preference_beta_zero(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        name = name_of(call)
        if name not in PREFERENCE_CONFIGS:
            continue
        beta = keyword(call, "beta")
        unpacked = any(k.arg is None for k in call.keywords)
        zero = is_constant(beta, 0, 0.0) or (
            beta is None and not unpacked and PREFERENCE_CONFIGS[name] == 0.0
        )
        if zero:
            yield source.finding(
                beta or call,
                "preference-beta-zero",
                f"{name} with beta 0"
                + (" (its default)" if beta is None else "")
                + ": nothing keeps the policy near the reference, and it drifts",
                "beta=0.1 for DPO; 0.04-0.1 for GRPO (a config value)",
            )


@check(
    "reference-not-frozen",
    "R-REF-FROZEN",
    "the reference model is the policy itself, or runs with gradients and is never frozen",
)
def reference_not_frozen(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        model, reference = keyword(call, "model"), keyword(call, "ref_model")
        if model is None and call.args:
            model = call.args[0]
        if model is not None and reference is not None and dotted(model) == dotted(reference):
            if dotted(model):
                yield source.finding(
                    reference,
                    "reference-not-frozen",
                    "the reference model is the policy: it moves with every step, so the "
                    "KL to it stays zero",
                    "ref_model=None (the trainer makes a frozen copy) or a separately loaded model",
                )
    for node in source.assigns:
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
            continue
        for target in node.targets:
            name = dotted(target)
            if not re.search(r"(^|_)ref(erence)?(_|$)", name.rsplit(".", 1)[-1]):
                continue
            if frozen(source, name):
                continue
            scope = source.tree
            live = [c for c in forward_calls(source, scope, name) if not grad_disabled(source, c)]
            live += [
                c
                for functions in source.functions.values()
                for f in functions
                for c in forward_calls(source, f, name)
                if not grad_disabled(source, c)
            ]
            if live:
                yield source.finding(
                    node,
                    "reference-not-frozen",
                    f"{name} runs with gradients on and is never frozen: it builds a graph "
                    "each step and trains if its weights reach the optimizer",
                    f"{name}.requires_grad_(False) and {name}.eval(); call it under "
                    "torch.no_grad()",
                )


def frozen(source: Source, name: str) -> bool:
    for call in source.calls:
        if name_of(call) == "requires_grad_" and receiver(call) == name:
            return True
        if any(dotted(a) == name for a in call.args) and re.search(r"freeze", name_of(call)):
            return True
    for node in source.assigns:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "requires_grad" for t in node.targets
        ):
            loop = source.parents.get(node)
            if isinstance(loop, ast.For) and name in ast.unparse(loop.iter):
                return True
    return False
