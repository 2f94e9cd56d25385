"""LLM-based recommenders; registered by name in bench.models.registry.

Kept import-light on purpose: no torch/transformers here (they load when a model is built).
"""

MODELS: dict[str, str] = {
    "llm-embed": "baselines.llm.embed:LLMEmbed",
    # the same model with a popularity prior (pop_weight 1.0 in conf/model/llm-embed-pop.yaml):
    # a hybrid, registered under its own name so leaderboards never show it as pure text
    "llm-embed-pop": "baselines.llm.embed:LLMEmbed",
    "llm-rerank": "baselines.llm.rerank:LLMRerank",
    "llm-seq": "baselines.llm.seq:LLMSeq",
}

#: item encoders for the harness (``bench.item_text``): ``metrics.item_embeddings`` uses "hf"
ITEM_ENCODERS: dict[str, str] = {"hf": "baselines.llm.encoder:HFItemEncoder"}
