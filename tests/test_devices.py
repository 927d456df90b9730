"""Boards the catalog lacks, described in a devices file: named in requests and specs, built for, and
resumed without the file (the run keeps its board in design.json)."""

from __future__ import annotations

import json

import pytest

from agent.cli import main
from agent.parse import parse_request
from agent.spec import DataSpec, DesignSpec, PoolSource
from knowledge import devices
from knowledge.devices import DEVICES_ENV, find_device, get_device, list_devices
from knowledge.errors import NanofactoryError

BOARDS = """\
devices:
  - name: Teensy 4.1
    core: cortex m7
    clock_mhz: 600
    sram: 512 KB
    flash: 7936K
    aliases: [teensy41]
  - name: nRF5340
    core: Cortex-M33
    clock_mhz: 128
    sram: 524288
    flash: 1 MB
    macs_per_cycle: 0.4
"""


@pytest.fixture
def boards(tmp_path, monkeypatch):
    path = tmp_path / "boards.yaml"
    path.write_text(BOARDS)
    monkeypatch.setenv(DEVICES_ENV, str(path))
    yield path
    devices._remembered.clear()


def test_a_board_of_a_devices_file_is_known_everywhere_a_catalog_board_is(boards, capsys):
    teensy = get_device("teensy41")
    assert (teensy.name, teensy.core, teensy.clock_mhz, teensy.sram_bytes, teensy.flash_bytes) == \
        ("Teensy 4.1", "Cortex-M7", 600, 512 * 1024, 7936 * 1024)
    assert teensy.macs_per_cycle == 0.70 and teensy.emulated_core == "cortex-m7"  # the M7's figure; measured on QEMU
    nrf = get_device("nrf5340")
    assert nrf.macs_per_cycle == 0.4 and nrf.emulated_core is None and "given in" in nrf.macs_per_cycle_source
    assert [d.name for d in list_devices()][-2:] == ["Teensy 4.1", "nRF5340"]
    assert find_device("nRF52840").name == "nRF52840"  # the catalog's board is still the catalog's

    parsed = parse_request("a pet-door camera that tells apart cats, dogs and everything else on a Teensy 4.1")
    assert parsed.device == "Teensy 4.1" and parsed.classes == ["cat", "dog"]
    spec = DesignSpec.from_dict({"classes": [{"name": "cat"}], "device": "teensy 4.1",
                                 "data": DataSpec(pool=[PoolSource(kind="fashion-mnist")]).model_dump()})
    assert spec.device == "Teensy 4.1"

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "Teensy 4.1" in out and f"emulated Cortex-M7  (from {boards})" in out and "nRF5340" in out


@pytest.mark.parametrize("text, says", [
    (None, "does not exist; pass the path of a YAML file"),
    ("devices: [name: x\n", "is not valid YAML at line"),
    ("devices: []\n", "lists no devices; write `devices:`"),
    ("devices:\n  - name: X1\n    core: Cortex-M4\n    clock_mhz: 64\n    sram: 64 KB\n", "device 1: X1 has no flash"),
    ("- name: X1\n  core: Cortex-M4\n  clock_mhz: 64\n  sram: 64 KB\n  flash: 1 MB\n  ram: 1\n",
     "device 1: unknown field 'ram'"),
    ("- {name: X1, core: Cortex-M4, clock_mhz: 64, sram: lots, flash: 1 MB}\n", "X1: sram is 'lots'; give a size"),
    ("- {name: X1, core: Cortex-M4, clock_mhz: fast, sram: 1 KB, flash: 1 MB}\n", "X1: clock_mhz is 'fast'"),
    ("- {name: X1, core: RISC-V, clock_mhz: 160, sram: 400 KB, flash: 4 MB}\n",
     "X1: give macs_per_cycle for a RISC-V core"),
    ("- {name: My nRF, core: Cortex-M4, clock_mhz: 64, sram: 256 KB, flash: 1 MB, aliases: [nrf52]}\n",
     "'nrf52' already names nRF52840 in the catalog; give it another name"),
    ("- {name: A1, core: Cortex-M4, clock_mhz: 64, sram: 1 KB, flash: 1 MB}\n"
     "- {name: a-1, core: Cortex-M4, clock_mhz: 64, sram: 1 KB, flash: 1 MB}\n", "device 2: 'a-1' already names A1;"),
])
def test_a_bad_devices_file_is_one_sentence_before_anything_runs(tmp_path, capsys, text, says):
    path = tmp_path / "boards.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["spec", "sorts cats and dogs on an nRF52840", "--devices", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: The devices file {path}") and says in err[0], err


def test_an_unknown_device_says_how_to_describe_one():
    with pytest.raises(NanofactoryError, match="describe your board in a YAML file and pass it with --devices FILE"):
        get_device("teensy41")


@pytest.mark.slow
def test_a_run_for_such_a_board_builds_and_resumes_without_the_file(boards, shapes_data, tmp_path, monkeypatch,
                                                                    capsys):
    """Built for an emulated board of the file (its latency floor measured on the emulated M7); the run keeps
    the board in design.json, so `build --resume` and `runs show` still work once the file is gone."""
    from agent.pipeline import open_run
    from agent.runs import RunStore

    runs = tmp_path / "runs"
    code = main(["build", "tells apart circles, squares, triangles and everything else on a teensy41",
                 "--images", str(shapes_data["pool"]), "--examples", str(shapes_data["examples"]),
                 "--test", str(shapes_data["test"]), "--epochs", "1", "--runs-dir", str(runs), "--quiet"])
    assert code == 0, capsys.readouterr().err
    (run,) = RunStore(runs).list()
    design = json.loads((runs / run.id / "design.json").read_text())
    assert design["spec"]["device"] == "Teensy 4.1" and design["device"]["clock_mhz"] == 600
    metrics = json.loads((runs / run.id / "metrics.json").read_text())
    if metrics.get("latency_floor_ms") is not None:  # QEMU installed: measured on the emulated Cortex-M7 at 600 MHz
        instructions = metrics["latency_floor_ms"] * 2 * 600e3
        assert instructions > 1000

    monkeypatch.delenv(DEVICES_ENV)
    devices._remembered.clear()
    with pytest.raises(NanofactoryError):
        get_device("Teensy 4.1")
    assert open_run(RunStore(runs), run.id).spec.device == "Teensy 4.1"
    assert main(["build", "--resume", run.id, "--runs-dir", str(runs), "--quiet"]) == 0
