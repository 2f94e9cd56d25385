"""Classical baselines (numpy/scipy only): popularity, random, item-kNN and EASE^R.

Registered by name in ``bench.models.registry``; this module stays import-light (the model
modules are imported only when a model is looked up).
"""

MODELS: dict[str, str] = {
    "pop": "baselines.classical.pop:Pop",
    "random": "baselines.classical.rand:Random",
    "itemknn": "baselines.classical.itemknn:ItemKNN",
    "ease": "baselines.classical.ease:EASE",
}
