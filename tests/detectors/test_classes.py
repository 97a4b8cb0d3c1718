from __future__ import annotations

import pytest

from crowdwatch.detectors.catalog import CATALOG
from crowdwatch.detectors.classes import ClassMappingError, names_from_onnx_metadata, person_class_ids

FALL = CATALOG["yolov8s-person-onnx"]


def test_catalog_entry_decides_and_both_fall_classes_are_persons() -> None:
    assert person_class_ids({0: "Normal", 1: "Fall"}, FALL) == {0, 1}
    assert person_class_ids(None, FALL) == {0, 1}


def test_model_whose_classes_differ_from_its_catalog_entry_is_refused() -> None:
    with pytest.raises(ClassMappingError, match="not the catalog's model"):
        person_class_ids({0: "person", 1: "bicycle"}, FALL)


@pytest.mark.parametrize(
    ("names", "expected"),
    [({0: "person", 1: "bicycle", 2: "car"}, {0}), ({0: "car", 1: "Person"}, {1})],
)
def test_without_entry_the_class_named_person_counts(names: dict[int, str], expected: set[int]) -> None:
    assert person_class_ids(names, None) == expected


@pytest.mark.parametrize("names", [None, {}, {0: "car", 1: "dog"}])
def test_without_entry_or_person_class_it_fails(names: dict[int, str] | None) -> None:
    with pytest.raises(ClassMappingError):
        person_class_ids(names, None)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"names": "{0: 'Normal', 1: 'Fall'}"}, {0: "Normal", 1: "Fall"}),
        ({"names": "__import__('os').system('true')"}, None),  # never evaluated as code
        ({"names": "[1, 2]"}, None),
        ({}, None),
    ],
)
def test_names_from_onnx_metadata(metadata: dict[str, str], expected: dict[int, str] | None) -> None:
    assert names_from_onnx_metadata(metadata) == expected
