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
    "conformer_encoder": "xpuperf.models.conformer:build",
    "clip_text_encoder": "xpuperf.models.clip:text_encoder",
    "clip_dual_encoder": "xpuperf.models.clip:dual_encoder",
    "sd_unet": "xpuperf.models.diffusion:unet",
    "sd_vae_encoder": "xpuperf.models.diffusion:vae_encoder",
    "sd_vae_decoder": "xpuperf.models.diffusion:vae_decoder",
    "yolov5": "xpuperf.models.yolov5:build",
    "gpt2": "xpuperf.models.llm:gpt2",
    "llama": "xpuperf.models.llm:llama",
    "chatglm2": "xpuperf.models.llm:chatglm2",
    "conv2d": "xpuperf.models.substructures:conv",
    "gru": "xpuperf.models.substructures:gru",
    "lstm": "xpuperf.models.substructures:lstm",
    "transformer_encoder_layer": "xpuperf.models.substructures:encoder_layer",
    "transformer_decoder_layer": "xpuperf.models.substructures:decoder_layer",
    "sentence_bert": "xpuperf.models.sentence:sentence_bert",
}
