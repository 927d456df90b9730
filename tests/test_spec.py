"""DesignSpec: JSON and YAML round trips, and errors that name the field."""

from __future__ import annotations

import pytest

from agent.spec import DesignSpec
from knowledge.errors import NanofactoryError

BASE = {
    "classes": [{"name": "shirt", "description": "a long-sleeved shirt", "negatives": ["t-shirt"]}, {"name": "bag"}],
    "device": "stm32f446",
    "budgets": {"sram_bytes": 131072, "latency_ms": 50, "accuracy_floor": 0.8},
    "data": {"pool": [{"kind": "fashion-mnist", "limit": 1000}], "test": {"kind": "fashion-mnist", "split": "test"}},
    "input": {"size": 28, "channels": 1},
    "seed": 3,
}


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_round_trip(tmp_path, suffix):
    spec = DesignSpec.from_dict(BASE)
    assert spec.device == "STM32F446RE"  # canonical name
    path = tmp_path / f"spec{suffix}"
    spec.save(path)
    assert DesignSpec.load(path) == spec


def test_label_names_and_prompts():
    spec = DesignSpec.from_dict(BASE)
    assert spec.label_names == ["shirt", "bag", "other"]
    assert spec.classes[0].prompt == "a long-sleeved shirt" and spec.classes[1].prompt == "a photo of a bag"


@pytest.mark.parametrize("change, field", [
    ({"budgets": {"accuracy_floor": 1.5}}, "budgets.accuracy_floor"),
    ({"classes": []}, "classes"),
    ({"classes": [{"name": "bag"}, {"name": "Bag"}]}, "classes"),
    ({"classes": [{"name": "other"}]}, "classes.0.name"),
    ({"data": {"pool": [{"kind": "folder"}]}}, "data.pool.0"),
    ({"input": {"size": 28, "channels": 2}}, "input.channels"),
    ({"colour": "red"}, "colour"),
])
def test_errors_name_the_field(change, field):
    with pytest.raises(NanofactoryError) as error:
        DesignSpec.from_dict({**BASE, **change})
    message = str(error.value)
    assert f"`{field}`" in message and "\n" not in message


def test_one_class_without_other_is_refused():
    with pytest.raises(NanofactoryError, match="at least two"):
        DesignSpec.from_dict({**BASE, "classes": [{"name": "bag"}], "other": False})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(NanofactoryError, match="does not exist"):
        DesignSpec.load(tmp_path / "none.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text('{"classes": [}')
    with pytest.raises(NanofactoryError, match="not valid JSON"):
        DesignSpec.load(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(NanofactoryError, match="mapping"):
        DesignSpec.load(listy)
