"""A small byte-level BPE with Qwen2.5's chat template and special tokens, trained here: the
benchmarks build real-shape models with no tokenizer download."""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from trl.chat_template_utils import qwen2_5_chat_template

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def chat_tokenizer(
    texts: Iterable[str], vocab_size: int, pad_token: str | None = None
) -> PreTrainedTokenizerFast:
    """`pad_token` None leaves padding to the code under test (it must set one itself)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token=pad_token,
        additional_special_tokens=[t for t in SPECIAL_TOKENS[:2] if t != pad_token],
        chat_template=qwen2_5_chat_template,
        model_input_names=["input_ids", "attention_mask"],
    )
