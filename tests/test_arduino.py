"""The Arduino library a build writes: its metadata follows the library specification, and its
self-test sketch compiles as C++ against the library and reports bit-exact on the host (with a
test-only stand-in for the Arduino core, tests/stubs/Arduino.h)."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import onnx_models as M
import pytest
from compiler_zoo import needs_gcc

from compilers.arduino import library_name, zip_library
from compilers.build import compile_onnx
from compilers.ir import ImageInput

STUBS = Path(__file__).parent / "stubs"
CATEGORIES = {"Display", "Communication", "Signal Input/Output", "Sensors", "Device Control", "Timing",
              "Data Storage", "Data Processing", "Other"}


def compiled(tmp_path, image: bool):
    path = M.export_student(tmp_path / "m.onnx")
    calibration = (np.random.default_rng(0).integers(0, 256, (16, *M.input_shape(path))).astype(np.float32) - 128) / 128
    return compile_onnx(path, calibration, tmp_path / "out", name="20260101-000000-pet door",
                        image=ImageInput(["cat", "dog", "other"]) if image else None)


def properties(folder: Path) -> dict[str, str]:
    lines = (folder / "library.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_library_follows_the_specification(tmp_path):
    lib = tmp_path / "out" / "arduino" / library_name("20260101-000000-pet door")
    compiled(tmp_path, image=True)
    props = properties(lib)
    assert lib.name == props["name"] == "Nanofactory_20260101-000000-pet_door"
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9 _.\-]*", props["name"]) and len(props["name"]) <= 63
    assert {"name", "version", "author", "maintainer", "sentence", "paragraph", "category", "architectures"} <= set(props)
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"]) and props["category"] in CATEGORIES
    assert (lib / "src" / props["includes"]).is_file()
    assert (lib / "examples" / "Selftest" / "Selftest.ino").is_file()  # an example's folder is named as its sketch
    assert not {"main.c", "frames.c", "Makefile", "CMakeLists.txt"} & {p.name for p in (lib / "src").iterdir()}  # host builds stay out
    zipped = zip_library(lib, tmp_path / "lib.zip")
    with zipfile.ZipFile(zipped) as z:
        assert {n.split("/")[0] for n in z.namelist()} == {lib.name}  # one top folder: "Add .ZIP Library"
        assert f"{lib.name}/src/model.c" in z.namelist()


@needs_gcc
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
@pytest.mark.parametrize("image", [True, False])
def test_selftest_sketch_runs(tmp_path, image):
    """The sketch compiled as C++ against the library's sources, run: the self-test is bit-exact, the
    class is named (from nf_labels, or by index without image inputs), the timing printed."""
    lib = tmp_path / "out" / "arduino" / library_name("20260101-000000-pet door")
    compiled(tmp_path, image)
    src = lib / "src"
    objects = []
    for source in sorted(src.glob("*.c")):
        objects.append(str(tmp_path / f"{source.stem}.o"))
        subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", str(source), "-o", objects[-1]],
                       check=True)
    main = tmp_path / "sketch.cpp"
    main.write_text('#include "Arduino.h"\n' + (lib / "examples" / "Selftest" / "Selftest.ino").read_text()
                    + "\nint main() {\n  setup();\n  loop();\n  return 0;\n}\n")
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(STUBS), "-I", str(src), str(main),
                    *objects, "-o", str(tmp_path / "sketch")], check=True)
    out = subprocess.run([str(tmp_path / "sketch")], capture_output=True, text=True, check=True).stdout
    assert "nf_selftest: bit-exact with the compiler's reference" in out
    sample = re.search(r"class of the sample: (\S+)", out).group(1)
    assert sample in (["cat", "dog", "other"] if image else ["0", "1", "2"])
    assert re.search(r"inference: \d+ us", out) and re.search(r"tensor arena: \d+ bytes", out)


CMAKE_APP = """cmake_minimum_required(VERSION 3.13)
project(app C)
add_subdirectory({library} model)
add_executable(app main.c)
target_link_libraries(app nanofactory_model)
"""

APP_MAIN = r"""#include <stdio.h>
#include "nf_io.h"
int main(void) {
  static nf_image_t image;
  static uint8_t frame[40 * 30];
  static int8_t input[NF_INPUT_SIZE], output[NF_OUTPUT_SIZE];
  if (nf_selftest() || nf_image_init(&image, 40, 30, NF_GRAY8)) return 1;
  nf_image_to_input(&image, frame, input);
  nf_invoke(input, output);
  printf("%s\n", nf_labels[nf_argmax(output)]);
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("gcc") is None, reason="cmake or gcc is not installed")
def test_cmake_project_links_the_library(tmp_path):
    """compiled/c/CMakeLists.txt: an application adds the folder and links nanofactory_model, as a Pico SDK
    or STM32 CMake project would; the program passes the self-test and names a class."""
    c_dir = compiled(tmp_path, image=True).dir / "c"
    app = tmp_path / "app"
    app.mkdir()
    (app / "CMakeLists.txt").write_text(CMAKE_APP.format(library=c_dir.as_posix()))
    (app / "main.c").write_text(APP_MAIN)
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(app), "-B", str(build), "-DCMAKE_C_COMPILER=gcc"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    out = subprocess.run([str(build / "app")], capture_output=True, text=True, check=True).stdout
    assert out.strip() in ("cat", "dog", "other")
