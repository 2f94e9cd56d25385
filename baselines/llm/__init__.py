"""llm recommenders; registered by name in bench.models.registry."""

MODELS: dict[str, str] = {}
