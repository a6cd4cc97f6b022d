"""Load and validate zoo.yaml into frozen specs, and expand its combinations.

The package's public face: the rest of xpuperf, the suites and the tests import
from here. The specs (the LLM workloads' too), their vocabularies and the
combinations a Zoo expands into are in xpuperf.zoo.specs; reading and validating
the file (pure: YAML in, dataclasses out, every error naming file, line, entry
and field) in xpuperf.zoo.parse, which calls in xpuperf.zoo.tiers (the tiers and
the models' scenarios), xpuperf.zoo.model_file (a model that is a file) and
xpuperf.zoo.generation (the LLM workloads), each checking its part with
xpuperf.zoo.validator's Validator (and its ZooError).
"""
from xpuperf.zoo.validator import PICKS, ZooError  # noqa: F401
from xpuperf.zoo.specs import (DOMAINS, DTYPES, FLOAT_DTYPES, FRAMEWORKS, Combination,  # noqa: F401
                               DatasetSpec, GenerationSpec, ModelSpec, PerfCase, ServerSpec,
                               TensorSpec, Zoo)
from xpuperf.zoo.parse import (BUILTIN_ZOO, DATASET_FIELDS, DEFAULT_FIELDS, MODEL_FIELDS,  # noqa: F401
                               TENSOR_FIELDS, TOLERANCE_KEYS, TOP_FIELDS, load_zoo, parse_zoo)
from xpuperf.zoo.tiers import (DEFAULT_PEAK_GEMM, DEFAULT_TIMEOUT_S, SCENARIOS, TIERS,  # noqa: F401
                               ScenarioSpec)
