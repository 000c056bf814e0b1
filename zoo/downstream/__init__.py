"""Everything after pre-training: load a trained (or timm) encoder once, rebuild its data, score it and its baselines
with the evaluation protocols, and write the results into its Hub folder.

    pretrained.py   Pretrained.load(src): .model, .record, .datamodule(), .random_init(), .raw_inputs(), .embed_all()
    protocols.py    knn, linear, retrieval, tabular, finetune: run(pretrained, ...) -> result entries
    tabular.py      T-JEPA's downstream protocol (frozen tokens + MLP; raw-feature MLP and boosting baselines)
    report.py       results -> set_results -> save_pretrained -> reload, bit-exact embedding check

``zoo evaluate`` (zoo/cli/evaluate.py) is the command line over these.
"""

from zoo.downstream.pretrained import Pretrained

__all__ = ["Pretrained"]
