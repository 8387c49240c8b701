from vllm import LLM, SamplingParams


def complete(prompts):
    llm = LLM(model="org/model")
    return llm.generate(prompts, SamplingParams(max_tokens=32))
