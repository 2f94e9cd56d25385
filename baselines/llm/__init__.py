"""LLM-based recommenders; registered by name in bench.models.registry.

Kept import-light on purpose: no torch/transformers here (they load when a model is built).
"""

MODELS: dict[str, str] = {
    "llm-embed": "baselines.llm.embed:LLMEmbed",
    "llm-rerank": "baselines.llm.rerank:LLMRerank",
    "llm-seq": "baselines.llm.seq:LLMSeq",
}
