"""RecBole recommenders through one adapter; registered by name in bench.models.registry.

This module must stay light (no torch/recbole import): the registry imports it to list names.
``recbole`` runs any RecBole general or sequential model: ``model=recbole
model.params.model=NGCF``. See docs/recbole.md.
"""

MODELS: dict[str, str] = {
    "bpr": "baselines.recbole.adapter:BPR",
    "lightgcn": "baselines.recbole.adapter:LightGCN",
    "neumf": "baselines.recbole.adapter:NeuMF",
    "multvae": "baselines.recbole.adapter:MultVAE",
    "sasrec": "baselines.recbole.adapter:SASRec",
    "gru4rec": "baselines.recbole.adapter:GRU4Rec",
    "bert4rec": "baselines.recbole.adapter:BERT4Rec",
    "recbole": "baselines.recbole.adapter:RecBoleModel",
}
