"""Content-classifier recipes: members that vote on some policies only, and a recipe's round trip
through the artifact it is saved with (leave-one-source-out retrains exactly what was saved)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ml.taxonomy import POLICIES
from ml.training.content import (
    CONTENT_CLASSIFIER_RECIPE,
    SPAM,
    ClassifierRecipe,
    EnsembleTextClassifier,
    RecipeMember,
)
from ml.training.labels import AS_GIVEN
from ml.training.text_classifier import ClassifierParams


class Fixed:
    """A fitted member stand-in that answers the same probabilities for every row."""

    def __init__(self, row: list[float]):
        self.row = np.array(row)

    def proba(self, x) -> np.ndarray:
        return np.tile(self.row, (len(x), 1))


def test_a_specialist_votes_only_on_its_policies_and_benign():
    everything = RecipeMember(AS_GIVEN, ClassifierParams())
    spam_only = RecipeMember(AS_GIVEN, ClassifierParams(signals=True), SPAM)
    ensemble = EnsembleTextClassifier(
        [Fixed([0.5, 0.2, 0.1, 0.1, 0.1]), Fixed([0.2, 0.0, 0.0, 0.7, 0.1])],
        np.stack([everything.votes(), spam_only.votes()]),
    )
    p = ensemble.proba(np.zeros(3))
    # benign and spam/scam: the mean of both; hate and harassment: the first member alone.
    expected = np.array([0.35, 0.2, 0.1, 0.4, 0.1])
    np.testing.assert_allclose(p, np.tile(expected / expected.sum(), (3, 1)))
    assert dict(zip(POLICIES, spam_only.votes(), strict=True)) == {
        "benign": True,
        "hate_speech": False,
        "harassment": False,
        "spam": True,
        "scam": True,
    }


def test_a_classifier_pickled_before_members_voted_per_policy_still_scores():
    # An existing home's champion was pickled without `votes`: it must score as the mean of its members.
    ensemble = EnsembleTextClassifier([Fixed([0.5, 0.2, 0.1, 0.1, 0.1]), Fixed([0.1, 0.0, 0.0, 0.7, 0.2])])
    del ensemble.__dict__["votes"]
    restored = pickle.loads(pickle.dumps(ensemble))
    np.testing.assert_allclose(restored.proba(np.zeros(2)), np.tile([0.3, 0.1, 0.05, 0.4, 0.15], (2, 1)))


def test_a_member_must_vote_on_a_known_policy():
    with pytest.raises(ValueError, match="not \\['nudity'\\]"):
        RecipeMember(AS_GIVEN, ClassifierParams(), ("spam", "nudity"))
    with pytest.raises(ValueError, match="not \\(\\)"):
        RecipeMember(AS_GIVEN, ClassifierParams(), ())


def test_a_recipe_survives_its_artifact_round_trip():
    saved = CONTENT_CLASSIFIER_RECIPE.to_dict()
    assert ClassifierRecipe.from_dict(saved) == CONTENT_CLASSIFIER_RECIPE
    # Artifacts saved before members had `policies` read back as all-policy members.
    for m in saved["members"]:
        del m["policies"]
    assert all(m.votes().all() for m in ClassifierRecipe.from_dict(saved).members)
    # Counting every label keeps each member's policies.
    assert [m.policies for m in CONTENT_CLASSIFIER_RECIPE.ignoring_label_issues().members] == [
        m.policies for m in CONTENT_CLASSIFIER_RECIPE.members
    ]
