"""Linear probes on the frozen encoders the fusions read: do their features still hold what the twin's
alignment genres need?

On the synthetic twin, Crime and Mystery hinge on a *binding*: the plot names one of several props on the
poster, and the genre depends on how THAT prop looks (Crime: it is red; Mystery: it glows). The fusions
read frozen encoders of single-modality runs that were trained on genres alone (the fusion's source runs,
`record["backbones"][modality]["run"]`). If those encoders kept neither which prop the plot names nor which
colour each prop has where, no fusion could recover the binding. A linear probe (Alain & Bengio 2016)
asks what the frozen features still hold: a logistic regression fitted on the train movies' features,
scored on the test movies.

What is probed (features -> target, one row each):

    text encoder (the text source run)
        named prop       <- pooled plot vector            what early, attention and late fusion read
        named prop       <- tokens at the named word      what cross-attention reads (the word's pieces, averaged)
    image encoder (the image source run), for each alignment rule of the truth ("named prop is red", "... glows")
        rule             <- pooled poster vector
        rule             <- pooled poster + plot vectors  what early fusion reads
        rule             <- pooled poster, per named prop positive control, see below
        rule             <- grid cells under the prop     what cross-attention's image side offers if it attends
                                                          to the right place (cells weighted by their overlap
                                                          with the prop's box)
    controls the encoders were trained for, so a failed row is not the probe's fault
        most frequent image genre <- pooled poster vector;  most frequent text genre <- pooled plot vector;
        "some prop is red" / "some prop glows" <- pooled poster vector

The positive control gives the probe the true named label: the poster vector x is read by one linear map
per label (the features are x ⊗ onehot(label), plus the one-hot), so the probe only has to find "the
car's colour" in x, not which prop is named. A probe on the concatenation [x, onehot] could not do that:
a linear map adds the one-hot as one offset per label and reads x the same way for every label.

Scores are balanced accuracies (the mean recall over classes: 1/K for any constant guess, whatever the
class balance), each with a percentile bootstrap interval over test movies. Every row is compared with a
reference on the very same resampled movies (a paired bootstrap of the gain): the majority class, and
for the alignment rules a binding-free reference: the same probe fitted on nothing but how many props
have the look (0-3 red props, read from the truth). The twin's props are exchangeable (the plot names
one whatever its kind), so that count is all that knowing the poster's colours without knowing where
they are can tell about the named prop; only a probe that beats it reads the binding. ("Some prop is
red" is too weak a reference: on the default twin the named prop is red about half the time when 2 of
3 props are red and a fifth of the time when 1 is, and a pooled vector can tell those apart.)

The probe: standardised features, L2 logistic regression with balanced class weights, C chosen by
stratified cross-validation on the train movies (scikit-learn). Targets come from twin_truth.json (clean
facts, no label noise); features from the runs' best weights (`experiments.loaded_run.load_run`, which
restores them and rebuilds their tokenizer and text cleaning), on the eval transform.

    probes = alignment_probes(RUNS, release, load_twin_truth(release.root))
    probes.table()            # one row per probe
    probe_values(probes)      # what the numbers show: verdicts of the paired intervals, for the prose
"""

from thesis_lib.analysis.probes.alignment import alignment_probes, probe_values
from thesis_lib.analysis.probes.features import ImageFeatures, TextFeatures, box_cell_weights, per_label_features
from thesis_lib.analysis.probes.scores import (
    EARLY_INPUT,
    GENRE_CONTROL,
    IMAGE_POOLED,
    MAJORITY,
    NAMED_PROP,
    PER_LABEL,
    PROP_CELLS,
    TABLE_COLUMNS,
    TEXT_MENTION,
    TEXT_POOLED,
    AlignmentProbes,
    ProbeConfig,
    ProbeError,
    ProbeScore,
    balanced_accuracy_resampled,
    count_reference,
    run_probe,
    verdict,
)
from thesis_lib.analysis.probes.targets import (
    alignment_rules,
    control_genre,
    describe_count,
    describe_rule,
    genre_targets,
    named_prop_has,
    named_prop_labels,
    props_with,
    some_prop_has,
)

__all__ = [
    "AlignmentProbes",
    "EARLY_INPUT",
    "GENRE_CONTROL",
    "IMAGE_POOLED",
    "ImageFeatures",
    "MAJORITY",
    "NAMED_PROP",
    "PER_LABEL",
    "PROP_CELLS",
    "ProbeConfig",
    "ProbeError",
    "ProbeScore",
    "TABLE_COLUMNS",
    "TEXT_MENTION",
    "TEXT_POOLED",
    "TextFeatures",
    "alignment_probes",
    "alignment_rules",
    "balanced_accuracy_resampled",
    "box_cell_weights",
    "control_genre",
    "count_reference",
    "describe_count",
    "describe_rule",
    "genre_targets",
    "named_prop_has",
    "named_prop_labels",
    "per_label_features",
    "probe_values",
    "props_with",
    "run_probe",
    "some_prop_has",
    "verdict",
]
