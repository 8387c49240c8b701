"""Rule-based reward terms, added to the reward model's score during the policy stage.

A policy optimised against a learned reward model finds its blind spots: it repeats
phrases, or grows or shrinks its answers, whenever that raises the score (reward hacking,
[001] Pitfall 7). These terms are plain penalties, 0 for a good answer and negative
otherwise; `rewards:` in the config turns each on with a weight (0 turns it off).
GRPO logs each one (`rewards/<name>/mean`) next to the total reward and the KL.
"""

from collections.abc import Callable


def completion_text(completion: str | list[dict]) -> str:
    """The text of a completion: a string, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    return " ".join(message["content"] for message in completion)


def length_penalty(min_words: int, max_words: int) -> Callable[..., list[float]]:
    """-1 for an answer shorter than `min_words`, or longer than `max_words` (scaled by how far)."""

    def length(completions: list, **kwargs) -> list[float]:
        scores = []
        for completion in completions:
            words = len(completion_text(completion).split())
            if words < min_words:
                scores.append(-1.0)
            elif words > max_words:
                scores.append(-min(1.0, (words - max_words) / max_words))
            else:
                scores.append(0.0)
        return scores

    return length


def repetition_penalty(min_unique_ratio: float) -> Callable[..., list[float]]:
    """-1 when the share of distinct words falls below `min_unique_ratio` ("hello hello hello")."""

    def repetition(completions: list, **kwargs) -> list[float]:
        scores = []
        for completion in completions:
            words = completion_text(completion).lower().split()
            unique = len(set(words)) / len(words) if words else 1.0
            scores.append(-1.0 if unique < min_unique_ratio else 0.0)
        return scores

    return repetition
