"""Model builders, by the name zoo.yaml gives them.

Values are 'module:function' strings so that reading the table imports no
framework; xpuperf.models.artifact imports the builder when a model is built.
"""
BUILDERS = {
    "bert_qa": "xpuperf.models.hf:bert_qa",
    "resnet": "xpuperf.models.hf:resnet",
    "keras_widedeep": "xpuperf.models.keras_widedeep:build",
    # ---- torch / TensorFlow zoo (issue 3): add entries below this line ----
    "albert_qa": "xpuperf.models.hf:albert_qa",
    "roberta_qa": "xpuperf.models.hf:roberta_qa",
    "deberta_qa": "xpuperf.models.hf:deberta_qa",
    "swin": "xpuperf.models.hf:swin",
    "keras_bert_qa": "xpuperf.models.keras_transformer:bert_qa",
    "keras_roformer": "xpuperf.models.keras_transformer:roformer",
    "keras_resnet": "xpuperf.models.keras_resnet:build",
    # ---- ONNX / LLM / substructure zoo (issue 3): add entries below this line ----
}
