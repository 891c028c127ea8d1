"""The vocabulary of nasty values (the names compress and Distiller know, awkward strings, edge numbers) and
the hypothesis strategies for scalars, keys and nested values drawn from it."""

from __future__ import annotations

import math

from hypothesis import strategies as st

WORDS = """
version config rules lr_scheduler name penalty groups strength layers epochs frequency mode threshold
threshold_criterion keep_mask l1 l2 group_lasso elements filters channels kernels rows cols layer 2D 3D 4D
Filters Channels Rows Cols Rows+Cols Channels+4D proximal norm mean_abs max Mean_Abs Max regularizers
lr_schedulers policies pruners quantizers extensions class reg_regims threshold_criteria instance_name args
starting_epoch ending_epoch regularizer pruner quantizer extension L1Regularizer L2Regularizer
GroupLassoRegularizer StepLR MultiStepLR ExponentialLR CosineAnnealingLR ReduceLROnPlateau CyclicLR OneCycleLR
LambdaLR MultiplicativeLR SequentialLR ChainedScheduler ConstantLR LinearLR PolynomialLR
CosineAnnealingWarmRestarts step_size gamma milestones T_max T_0 patience last_epoch verbose base_lr max_lr
total_steps lr_lambda factor conv1.weight conv2.weight fc1.weight fc2.weight fc3.weight conv1.bias fc1.bias
*.weight conv*.weight module.conv1.weight features.module.0.weight arch dataset batch_size optimizer lr
momentum nesterov weight_decay seed device out_dir name limit_batches data_dir download val_split test workers
input_size pretrained lenet5 mlp simplenet_mnist resnet20_cifar mnist5k mnist cifar10 imagefolder sgd adam
adamw cpu cuda cuda:0 meta
""".split()

NASTY_STRINGS = [
    "",
    " ",
    "\t",
    "~",
    "null",
    "yes",
    "off",
    "NaN",
    ".nan",
    "-.inf",
    "1e-4",
    "0x1F",
    "1_000",
    "1:30",
    "2001-12-14",
    "<<",
    "=",
    "!",
    "&a",
    "*a",
    "|",
    ">",
    "#",
    "%",
    "@",
    "`",
    "---",
    "...",
    "- a",
    "a: b",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    "\\",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u200e",
    "مرحبا",
    "שלום",
    "😀",
    "👩\u200d👩\u200d👧",
    "e\u0301\u0301\u0301",
    "\u2028",
    "\u0085",
    "\ufeff",
    "\x1b[31mred",
    "\x07\x08\x7f",
    "Ω" * 5,
    "a" * 5000,
    "*",
    "**",
    "?",
    "[!a]",
    "conv[",
    "module.",
    "..",
    ".",
    "/",
    "/nonexistent/x.yaml",
    "../configs/lenet5-mnist5k.yaml",
    "../configs/mlp-mnist5k.yaml",
    "../configs",
    "a:b",
]

EDGE_INTS = [
    0,
    1,
    -1,
    2,
    7,
    -7,
    2**31 - 1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    10**9,
    10**18,
    10**300,
    10**301,
    10**400,
    -(10**400),
]
EDGE_FLOATS = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    1e308,
    -1e308,
    5e-324,
    1e-320,
    0.1,
    1e-4,
    1e16,
    2.0**53,
    -0.5,
]

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EDGE_INTS),
    st.integers(-1000, 1000),
    st.sampled_from(EDGE_FLOATS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(WORDS),
    TEXT,
)
KEYS = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(NASTY_STRINGS),
    TEXT,
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.sampled_from([math.nan, 1.5, -0.0]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=8,
)
