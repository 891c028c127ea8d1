"""The texts the properties draw: structured and raw mutations of the seeds, and documents built from the
right names with random values (lr schedulers with the arguments torch takes, configs with every setting)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.raw import raw_mutated
from tests.fuzz.seeds import CONFIG_SEEDS, SCHEDULE_SEEDS
from tests.fuzz.structured import dumped, mutated_document
from tests.fuzz.values import VALUES, WORDS

# Documents built from the right names with random values: mutations seldom guess an argument name
# that torch accepts, or a config key that no example file uses.
LR_CLASSES = """StepLR MultiStepLR ConstantLR LinearLR ExponentialLR PolynomialLR CosineAnnealingLR ReduceLROnPlateau
CyclicLR CosineAnnealingWarmRestarts OneCycleLR LambdaLR MultiplicativeLR SequentialLR ChainedScheduler""".split()
LR_ARGS = """T_0 T_max T_mult anneal_strategy base_lr base_momentum cooldown cycle_momentum div_factor end_factor epochs
eps eta_min factor final_div_factor frequency gamma last_epoch lr_lambda max_lr max_momentum milestones min_lr mode
patience pct_start power scale_fn scale_mode schedulers start_factor step_size step_size_down step_size_up
steps_per_epoch three_phase threshold threshold_mode total_iters total_steps verbose""".split()
CONFIG_KEYS = """arch dataset epochs batch_size optimizer lr momentum nesterov weight_decay seed device out_dir name
limit_batches data_dir download val_split test workers input_size pretrained""".split()
SMALL_NUMBERS = st.one_of(st.integers(-3, 40), st.floats(-2, 2), st.sampled_from([0, 1, 0.1, 0.5, 1.0]))


@st.composite
def lr_scheduler_document(draw: st.DrawFn) -> Any:
    spec = {"class": draw(st.sampled_from(LR_CLASSES))}
    for name in draw(st.lists(st.sampled_from(LR_ARGS), max_size=5, unique=True)):
        spec[name] = draw(st.one_of(SMALL_NUMBERS, VALUES, st.lists(SMALL_NUMBERS, max_size=4)))
    lr = spec if draw(st.booleans()) else [spec, {"class": "StepLR", "step_size": 3}]
    rules = [{"name": "a", "penalty": "l1", "strength": 0.001, "layers": ["fc1.weight"]}]
    return {"version": 1, "rules": draw(st.sampled_from([[], rules])), "lr_scheduler": lr}


@st.composite
def config_document(draw: st.DrawFn) -> Any:
    _, _, seed = draw(st.sampled_from(CONFIG_SEEDS))
    doc = dict(seed) if isinstance(seed, dict) else {}
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), min_size=1, max_size=4, unique=True)):
        doc[key] = draw(st.one_of(SMALL_NUMBERS, st.sampled_from(WORDS), VALUES))
    return doc


def yaml_texts(seeds: list[tuple[str, str, Any]], built: st.SearchStrategy) -> st.SearchStrategy[str]:
    originals = st.sampled_from([text for _, text, _ in seeds])  # with their comments and layout
    structured = dumped(mutated_document(seeds))
    return st.one_of(structured, raw_mutated(originals), raw_mutated(structured), structured, dumped(built))


SCHEDULE_TEXTS = yaml_texts(SCHEDULE_SEEDS, lr_scheduler_document())
CONFIG_TEXTS = yaml_texts(CONFIG_SEEDS, config_document())
VALID_SCHEDULE_TEXTS = st.sampled_from([text for _, text, _ in SCHEDULE_SEEDS])
