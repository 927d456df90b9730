"""``verify``: the compiled artifacts against each other and against TFLite Micro.

* the C library, built with gcc -O3 -march=native -Wall -Wextra -Werror (optionally with
  ASan/UBSan), against the numpy int8 reference: bit-exact or not, on every input;
* the .tflite in TFLite Micro's Python interpreter and in LiteRT (reference kernels):
  bit-exact with the C library or not;
* the arena: ours against the allocation TFLM records for the same model;
* accuracy of the int8 C library against the fp32 model, when labels are given;
* Cortex-M4/M7/M0+ text/data/bss from arm-none-eabi-size, when the cross-compiler is installed;
* the library built for Cortex-M4, M7 and M0+ and run bare metal on QEMU's MPS2 boards: bit-exact
  with the host build or not, the instructions one inference, each layer and one camera frame's
  conversion execute (QEMU's -icount), and the most stack each used, when qemu-system-arm is
  installed too;
* host latency of the C library against onnxruntime int8, one thread.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from compilers.build import Compiled, nchw_to_nhwc
from knowledge.devices import core_name
from knowledge.errors import NanofactoryError

log = logging.getLogger(__name__)

# -march=native: on x86 hosts with AVX2 the kernels take their SIMD paths (nf_avx2.h), which are
# the ones timed; PORTABLE_CFLAGS keeps them out, leaving the C that Cortex-M runs
HOST_CFLAGS = "-std=c99 -O3 -march=native -Wall -Wextra -Werror"
PORTABLE_CFLAGS = "-std=c99 -O2 -Wall -Wextra -Werror -U__AVX2__"
SANITIZE = " -fsanitize=address,undefined -fno-sanitize-recover=all -g"
LATENCY_ROUNDS = 7


def build_host(c_dir: Path, build_dir: Path, sanitize: bool = False, cflags: str = HOST_CFLAGS,
               target: str = "nf_test") -> Path:
    """Compile the C library and a harness (``nf_test``, or ``nf_frames`` for image models) with gcc;
    returns the executable."""
    if shutil.which("gcc") is None:
        raise NanofactoryError("gcc is not installed; install it (apt-get install gcc) to verify the C library.")
    shutil.copytree(c_dir, build_dir, dirs_exist_ok=True)
    flags = cflags + (SANITIZE if sanitize else "")
    proc = subprocess.run(["make", "-s", "-B", target, "CC=gcc", f"CFLAGS={flags}"], cwd=build_dir,
                          check=False, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"the generated C library does not compile:\n{proc.stderr[-4000:]}")
    return build_dir / target


# frames nf_io is checked on: (width, height, bytes per pixel: 1 gray, 2 RGB565, 3 RGB): smaller, equal and
# larger than common inputs, both orientations, a sensor's VGA and QVGA, and odd sizes whose crops and
# filters do not divide evenly
CHECK_FRAMES = [(320, 240, 3), (240, 320, 1), (640, 480, 1), (96, 96, 3), (28, 28, 1), (32, 32, 3), (17, 23, 1),
                (101, 77, 3), (64, 200, 1), (150, 149, 3), (333, 250, 1), (3, 5, 3), (160, 120, 2), (75, 91, 2)]
FRAME_FORMATS = {1: "gray", 2: "rgb565", 3: "rgb"}


def rgb565_to_rgb(frames: np.ndarray) -> np.ndarray:
    """(..., 2) uint8 RGB565 pixels, high byte first -> (..., 3) RGB888, each channel's top bits repeated
    (as nf_io.c widens them)."""
    v = frames[..., 0].astype(np.uint32) << 8 | frames[..., 1]
    r, g, b = v >> 11, (v >> 5) & 63, v & 31
    return np.stack([r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2], -1).astype(np.uint8)


def frame_inputs(exe: Path, frames: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The C library's int8 inputs (nf_image_to_input) and labels for same-size frames (N, H, W, C) uint8."""
    n, height, width, channels = frames.shape
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "frames.bin", Path(tmp) / "inputs.bin"
        np.ascontiguousarray(frames, np.uint8).tofile(src)
        proc = subprocess.run([str(exe), str(width), str(height), FRAME_FORMATS[channels], str(src), str(dst)],
                              check=False, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"nf_frames failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return np.fromfile(dst, np.int8).reshape(n, -1), [line.split(" ", 1)[1] for line in proc.stdout.splitlines()]


def check_frames(graph, convert, seed: int = 0, sizes=None) -> dict:
    """nf_image_to_input against the training pipeline's preparation (knowledge.pools.model_pixels, then
    the pixel table) on random frames of CHECK_FRAMES' sizes (or ``sizes``) and of the model's own size:
    the share of frames with identical inputs. ``convert(frames)``: the C library's inputs for same-size frames (N, H, W, C)."""
    from PIL import Image

    from knowledge.pools import model_pixels

    _, size, _, channels = graph.input_shape
    lut = graph.image.pixel_lut(graph.tensors[graph.input].quant)
    rng = np.random.default_rng(seed)
    same = total = 0
    sizes = [*(sizes or CHECK_FRAMES), (size, size, 1)]  # and a frame of the model's own size: copied, not resized
    for width, height, c in sizes:
        # smooth frames (random blobs) and noise: a filter error shows on either
        noise = rng.integers(0, 256, (2, height, width, c), dtype=np.uint8)
        yy, xx = np.mgrid[:height, :width]
        blob = 127.5 + 127.5 * np.sin(xx[..., None] * rng.uniform(0.01, 0.3, c) + yy[..., None] * rng.uniform(0.01, 0.3, c))
        frames = np.concatenate([noise, blob[None].astype(np.uint8)])
        got = convert(frames)
        for frame, inputs in zip(frames, got):
            pil = Image.fromarray(frame[..., 0] if c == 1 else rgb565_to_rgb(frame) if c == 2 else frame)
            same += np.array_equal(lut[model_pixels(pil, size, channels)].reshape(-1), inputs)
            total += 1
    return {"frames_checked": total, "frames_bitexact": same / total,
            "frame_sizes": sorted({f"{w}x{h}" for w, h, _ in sizes}),
            "formats": sorted({FRAME_FORMATS[c] for _, _, c in sizes})}


def run_host(exe: Path, inputs: np.ndarray, output_size: int, repeat: int = 1) -> tuple[np.ndarray, float]:
    """Outputs of the C harness for int8 ``inputs`` (N, ...), and microseconds per inference."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        np.ascontiguousarray(inputs, np.int8).tofile(src)
        proc = subprocess.run([str(exe), str(src), str(dst), str(repeat)], check=False, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"the C harness failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        out = np.fromfile(dst, np.int8).reshape(len(inputs), output_size)
    match = re.search(r"([\d.]+) us each", proc.stdout)
    return out, float(match.group(1)) if match else float("nan")


def _captured_stderr(fn) -> str:
    """What a C extension writes to file descriptor 2 while ``fn`` runs."""
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


def run_tflm(tflite: bytes, inputs: np.ndarray, arena_size: int) -> tuple[np.ndarray, dict]:
    """Outputs in TFLite Micro's interpreter, and the arena it records (head = planned tensors)."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(tflite, arena_size=arena_size)
    outs = []
    for x in inputs:
        interpreter.set_input(x[None], 0)
        interpreter.invoke()
        outs.append(interpreter.get_output(0).reshape(-1))
    text = _captured_stderr(interpreter.print_allocations)
    fields = {key: int(v) for key, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    return np.stack(outs), {"tflm_arena_total_bytes": fields.get("total"),
                            "tflm_arena_head_bytes": fields.get("head"),
                            "tflm_arena_tail_bytes": fields.get("tail")}


def run_litert(tflite: bytes, inputs: np.ndarray, reference_kernels: bool = True) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=resolver, num_threads=1)
    # applying the default delegate prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to fd 2,
    # in the middle of a build's progress; anything else it writes there is passed on
    said = _captured_stderr(interpreter.allocate_tensors)
    rest = "".join(line for line in said.splitlines(keepends=True)
                   if not line.startswith("INFO: Created TensorFlow Lite"))
    if rest:
        sys.stderr.write(rest)
    src = interpreter.get_input_details()[0]["index"]
    dst = interpreter.get_output_details()[0]["index"]
    outs = []
    for x in inputs:
        interpreter.set_tensor(src, x[None])
        interpreter.invoke()
        outs.append(interpreter.get_tensor(dst).reshape(-1))
    return np.stack(outs)


def arm_sizes(c_dir: Path) -> dict:
    """text/data/bss of the library for Cortex-M4, M7 and M0+ (arm-none-eabi-size), or why not: the model's
    objects in all, and each optional part (``extras``: the self-test, camera frames) on its own."""
    if shutil.which("arm-none-eabi-gcc") is None:
        return {"skipped": "arm-none-eabi-gcc is not installed (apt-get install gcc-arm-none-eabi)"}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(c_dir, tmp, dirs_exist_ok=True)
        for core in ("m4", "m7", "m0plus"):
            proc = subprocess.run(["make", "-s", core], cwd=tmp, check=False, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"the {core_name('cortex-' + core)} build failed:\n{proc.stderr[-4000:]}")
            lines = proc.stdout.splitlines()
            end = next(i for i, line in enumerate(lines) if "(TOTALS)" in line)
            total = lines[end].split()
            extras = {Path(f[5]).stem: {"text": int(f[0]), "data": int(f[1]), "bss": int(f[2])}
                      for f in (line.split() for line in lines[end + 1 :]) if len(f) == 6 and f[0].isdigit()}
            out[f"cortex-{core}"] = {"text": int(total[0]), "data": int(total[1]), "bss": int(total[2]), "extras": extras}
    return out


# Cortex-M cores QEMU emulates on its MPS2 boards, with the float ABI the Makefile's m4/m7/m0plus builds
# use. QEMU has no Cortex-M0+ board with the RAM for this harness, so the M0+ build (ARMv6-M code: no
# DSP extension, no 32x32->64 multiply, soft float) runs on the M4 board, which executes the ARMv6-M
# instruction set as a subset: the instructions counted are the ones an M0+ executes.
QEMU_CORES = {
    "cortex-m4": ("mps2-an386", "-mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16"),
    "cortex-m7": ("mps2-an500", "-mcpu=cortex-m7 -mfloat-abi=hard -mfpu=fpv5-d16"),
    "cortex-m0plus": ("mps2-an386", "-mcpu=cortex-m0plus -mfloat-abi=soft"),
}
QEMU_INPUT_BYTES = 1536 * 1024  # of the board's 4 MB RAM: the arena and the stack keep the rest
QEMU_INPUTS = 500  # per core: about 3 s of emulation for the demo's student
# frames nf_io is checked on per emulated core (a subset of CHECK_FRAMES: one QEMU run per size)
QEMU_FRAMES = [(320, 240, 3), (640, 480, 1), (17, 23, 1), (101, 77, 3), (160, 120, 2)]
QEMU_CALIBRATION = 2 * 0x40000  # instructions of the harness's calibration loop (nf_qemu.c)
QEMU_LAYER_INPUTS = 8  # inputs each layer is timed on (a second, short run with the timing hooks)
QEMU_FRAME_TIMED = (320, 240, 3)  # the camera frame whose conversion verify times: QVGA, RGB888


class Emulated(NamedTuple):
    outputs: np.ndarray  # (N, out_size) int8: what the harness wrote for each item
    instructions: np.ndarray  # (min(N, 4096),) instructions the core executed for each item
    layers: np.ndarray | None = None  # with layers=True: each layer's instructions, mean over the items
    stack: int | None = None  # the most stack the measured calls took, bytes (painted and read back)


def _on_qemu(c_dir: Path, core: str, header: list[int], payload: np.ndarray, out_size: int, frames: bool,
             std: str, defines: tuple[str, ...] = (), layers: bool = False) -> Emulated:
    """Build the bare-metal harness with the library for ``core``, load [header][payload] into the board's
    RAM, run it on qemu-system-arm with one virtual nanosecond per instruction (``-icount shift=0``);
    returns what it wrote, ``out_size`` int8 per item, and the instructions each item took."""
    board, cpu = QEMU_CORES[core]
    harness = Path(__file__).parent / "c" / "qemu"
    names = ("model.c", "nf_kernels.c", "nf_softmax.c", "nf_selftest.c") + (("nf_io.c",) if frames else ())
    sources = [c_dir / f for f in names if (c_dir / f).is_file()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        elf = tmp / "firmware.elf"
        proc = subprocess.run(["arm-none-eabi-gcc", f"-std={std}", "-O2", "-Wall", "-Wextra", "-Werror", "-mthumb",
                               *cpu.split(), "-ffreestanding", "-nostdlib", "-T", str(harness / "nf_qemu.ld"),
                               *(["-DNF_QEMU_FRAMES"] if frames else []), *(f"-D{d}" for d in defines),
                               *(["-DNF_QEMU_LAYERS", "-include", str(harness / "nf_qemu_layers.h")] if layers else []),
                               "-I", str(c_dir), str(harness / "nf_qemu.c"),
                               *map(str, sources), "-lgcc", "-o", str(elf)],
                              check=False, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"the {core} firmware does not build:\n{proc.stderr[-4000:]}")
        data = tmp / "inputs.bin"
        data.write_bytes(np.asarray(header, np.uint32).tobytes() + np.ascontiguousarray(payload).tobytes())
        proc = subprocess.run(["qemu-system-arm", "-M", board, "-nographic", "-monitor", "none", "-serial", "none",
                               "-icount", "shift=0", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
                               "-device", f"loader,file={data},addr=0x20200000,force-raw=on"],
                              cwd=tmp, check=False, capture_output=True, text=True, timeout=600)
        if proc.returncode:
            what = {3: "nf_selftest differs from the compiler's reference",
                    5: "nf_image_init refused the frame size"}.get(proc.returncode, "the harness failed")
            raise RuntimeError(f"on the emulated {core}: {what} (exit {proc.returncode}) {proc.stderr[-2000:]}")
        ticks = np.fromfile(tmp / "ticks.bin", np.uint32).astype(np.float64)
        per_tick = QEMU_CALIBRATION / ticks[0]  # instructions per SysTick tick (40 on QEMU's 25 MHz boards)
        per_layer = np.fromfile(tmp / "layers.bin", np.uint32) * per_tick / header[0] if layers else None
        return Emulated(np.fromfile(tmp / "outputs.bin", np.int8).reshape(header[0], out_size),
                        np.round(ticks[1:] * per_tick).astype(np.int64), per_layer,
                        int(np.fromfile(tmp / "stack.bin", np.uint32)[0]))


def emulate_cortex_m(c_dir: Path, inputs: np.ndarray, output_size: int, core: str = "cortex-m4",
                     std: str = "c99", defines: tuple[str, ...] = (), layers: bool = False) -> Emulated:
    """The C library on an emulated Cortex-M (qemu-system-arm, bare metal: the library built with
    arm-none-eabi-gcc -O2 for the core, its self-test first) for int8 ``inputs`` (N, ...): the outputs
    and the instructions each inference executed. ``defines``: macros for the build (NF_NO_DSP).
    ``layers``: time each layer too (model.c's NF_LAYER_BEGIN / NF_LAYER_END hooks), whose reads of
    the timer then add a few instructions per layer to each inference's count."""
    flat = np.ascontiguousarray(inputs, np.int8).reshape(len(inputs), -1)
    return _on_qemu(Path(c_dir), core, [len(flat)], flat, output_size, frames=False, std=std, defines=defines,
                    layers=layers)


def run_cortex_m(c_dir: Path, inputs: np.ndarray, output_size: int, core: str = "cortex-m4",
                 std: str = "c99") -> np.ndarray:
    """Outputs of the C library on an emulated Cortex-M for int8 ``inputs`` (emulate_cortex_m)."""
    return emulate_cortex_m(c_dir, inputs, output_size, core, std).outputs


def emulate_frames(c_dir: Path, frames: np.ndarray, input_size: int, core: str = "cortex-m4",
                   std: str = "c99") -> Emulated:
    """nf_image_to_input on an emulated Cortex-M for same-size uint8 frames (N, H, W, C): the (N,
    input_size) int8 inputs and the instructions each frame took."""
    n, height, width, channels = frames.shape
    return _on_qemu(Path(c_dir), core, [n, width, height, channels], frames.astype(np.uint8), input_size,
                    frames=True, std=std)


def frames_on_cortex_m(c_dir: Path, frames: np.ndarray, input_size: int, core: str = "cortex-m4",
                       std: str = "c99") -> np.ndarray:
    """nf_image_to_input on an emulated Cortex-M for same-size uint8 frames (N, H, W, C): (N, input_size) int8."""
    return emulate_frames(c_dir, frames, input_size, core, std).outputs


def cortex_m_check(compiled: Compiled, xq: np.ndarray, c_out: np.ndarray) -> dict:
    """The C library on emulated Cortex-M4, M7 and M0+ against the host build's outputs, on the first
    QEMU_INPUTS inputs (fewer when the board's RAM holds fewer), or why not."""
    missing = [tool for tool in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(tool) is None]
    if missing:
        return {"skipped": f"{' and '.join(missing)} not installed (apt-get install gcc-arm-none-eabi qemu-system-arm)"}
    n = min(len(xq), QEMU_INPUTS, QEMU_INPUT_BYTES // max(1, xq[0].size))
    out = {}
    for core, (board, _) in QEMU_CORES.items():
        started = time.perf_counter()
        run = emulate_cortex_m(compiled.dir / "c", xq[:n], c_out.shape[1], core)
        layers = emulate_cortex_m(compiled.dir / "c", xq[:QEMU_LAYER_INPUTS], c_out.shape[1], core, layers=True).layers
        out[core] = {"board": f"qemu {board}", "inputs": n, "bitexact": float((run.outputs == c_out[:n]).all(axis=1).mean()),
                     "instructions": int(np.median(run.instructions)),
                     "layer_instructions": [int(v) for v in np.round(layers)],
                     "stack_bytes": run.stack}
        if compiled.graph.image is not None:  # camera frames to inputs, with the core's own double arithmetic
            size = compiled.graph.tensors[compiled.graph.input].size
            figures = check_frames(compiled.graph, lambda f, core=core: frames_on_cortex_m(compiled.dir / "c", f, size, core),
                                   sizes=QEMU_FRAMES)
            out[core]["frames_checked"], out[core]["frames_bitexact"] = figures["frames_checked"], figures["frames_bitexact"]
            width, height, channels = QEMU_FRAME_TIMED  # what converting one camera frame costs there
            frame = np.random.default_rng(0).integers(0, 256, (2, height, width, channels), np.uint8)
            timed = emulate_frames(compiled.dir / "c", frame, size, core)
            out[core]["frame_instructions"] = {f"{width}x{height}x{channels}": int(np.median(timed.instructions))}
            out[core]["frame_stack_bytes"] = timed.stack
        out[core]["seconds"] = round(time.perf_counter() - started, 1)
    return out


def ort_timer(int8_onnx: Path, x: np.ndarray, repeat: int = 50):
    """A function that times onnxruntime int8 (QDQ), batch 1, one thread: each call returns the
    mean of ``repeat`` runs in microseconds of this thread's CPU time (onnxruntime runs on the
    calling thread with one intra-op thread), as the C harness counts; warmed up here."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(int8_onnx), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x[:1].astype(np.float32)}
    for _ in range(20):
        session.run(None, feed)

    def measure() -> float:
        start = time.thread_time()
        for _ in range(repeat):
            session.run(None, feed)
        return (time.thread_time() - start) / repeat * 1e6

    return measure


def verify(compiled: Compiled, x: np.ndarray, labels: np.ndarray | None = None, fp32_onnx: Path | None = None,
           int8_onnx: Path | None = None, sanitize: bool = False, tflm: bool = True, litert: bool = True,
           arm: bool = True, latency: bool = True, runtime_samples: int | None = None,
           cflags: str = HOST_CFLAGS) -> dict:
    """Check the artifacts in ``compiled.dir`` on float NCHW inputs ``x``; returns the figures.

    The C library and the numpy reference run on every input; TFLM and LiteRT, which run
    one input per call, on the first ``runtime_samples`` (all when None). ``cflags``: gcc's flags
    for the C library (PORTABLE_CFLAGS checks the C that microcontrollers run).
    """
    from compilers.reference import run_int8

    graph = compiled.graph
    qi, qo = graph.tensors[graph.input].quant, graph.tensors[graph.output].quant
    xq = qi.quantize(nchw_to_nhwc(x))
    n_out = graph.tensors[graph.output].size
    # in chunks: the reference holds every intermediate tensor of its batch in memory
    reference = np.concatenate([run_int8(graph, xq[i : i + 500]).reshape(-1, n_out) for i in range(0, len(xq), 500)])
    report: dict = {"samples": len(xq), "arena_bytes": compiled.plan.arena_bytes}
    timer = ort_timer(Path(int8_onnx), x) if latency and int8_onnx and Path(int8_onnx).is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_host(compiled.dir / "c", Path(tmp) / "build", sanitize=sanitize, cflags=cflags)
        c_out, _ = run_host(exe, xq, n_out)
        if graph.image is not None:  # camera frames to inputs (nf_io.c), built as the library is
            frames_exe = build_host(compiled.dir / "c", Path(tmp) / "frames", sanitize=sanitize, cflags=cflags,
                                    target="nf_frames")
            report["frames"] = check_frames(graph, lambda frames: frame_inputs(frames_exe, frames)[0])
        if latency:  # timed without sanitizers: the checked build is reused when it has none
            fast = build_host(compiled.dir / "c", Path(tmp) / "fast", cflags=cflags) if sanitize else exe
            # C and onnxruntime take turns, LATENCY_ROUNDS times, each timed in CPU time and
            # reported as its median, so that load from other processes weighs little and alike
            c_us, ort_us = [], []
            for _ in range(LATENCY_ROUNDS):
                c_us.append(run_host(fast, xq[:16], n_out, repeat=50)[1])
                if timer is not None:
                    ort_us.append(timer())
            report["c_latency_us"] = float(np.median(c_us))
            report["c_latency_flags"] = cflags  # the timed build's: never sanitized
            if ort_us:
                report["onnxruntime_int8_latency_us"] = float(np.median(ort_us))
                report["c_over_onnxruntime_latency"] = report["c_latency_us"] / report["onnxruntime_int8_latency_us"]
    report["c_flags"] = cflags + (SANITIZE if sanitize else "")
    report["c_vs_reference_bitexact"] = float((c_out == reference).all(axis=1).mean())
    tflite = (compiled.dir / "model.tflite").read_bytes()
    n_rt = len(xq) if runtime_samples is None else min(runtime_samples, len(xq))
    report["runtime_samples"] = n_rt
    if tflm:
        arena = max(4 * compiled.plan.arena_bytes, 64 * 1024) + 64 * 1024
        tflm_out, alloc = run_tflm(tflite, xq[:n_rt], arena)
        report["tflm_vs_c_bitexact"] = float((tflm_out.reshape(n_rt, -1) == c_out[:n_rt]).all(axis=1).mean())
        report.update(alloc)
        if alloc["tflm_arena_head_bytes"]:
            report["arena_ratio_vs_tflm_head"] = compiled.plan.arena_bytes / alloc["tflm_arena_head_bytes"]
    if litert:
        ref_out = run_litert(tflite, xq[:n_rt], reference_kernels=True)
        report["litert_vs_c_bitexact"] = float((ref_out.reshape(n_rt, -1) == c_out[:n_rt]).all(axis=1).mean())
        # LiteRT's default (XNNPACK) kernels round differently; reported, not required
        opt_out = run_litert(tflite, xq[:n_rt], reference_kernels=False).reshape(n_rt, -1)
        report["litert_optimized_vs_c_bitexact"] = float((opt_out == c_out[:n_rt]).all(axis=1).mean())
        # what a user of the .tflite sees: the same class, and outputs at most this many steps apart
        report["litert_optimized_vs_c_top1_agreement"] = float((opt_out.argmax(1) == c_out[:n_rt].argmax(1)).mean())
        report["litert_optimized_vs_c_max_steps"] = int(np.abs(opt_out.astype(np.int32) - c_out[:n_rt]).max())
    if labels is not None:
        pred = qo.dequantize(c_out).argmax(1)
        report["c_int8_accuracy"] = float((pred == labels).mean())
        if fp32_onnx is not None:
            from compilers.onnx_export import run_onnx

            fp32 = run_onnx(fp32_onnx, x.astype(np.float32)).argmax(1)
            report["fp32_accuracy"] = float((fp32 == labels).mean())
            report["c_int8_vs_fp32_top1_agreement"] = float((pred == fp32).mean())
    if int8_onnx is not None and Path(int8_onnx).is_file():
        from compilers.onnx_export import run_onnx

        # the int8 ONNX as a user's onnxruntime runs it (its fused integer kernels) against its
        # QDQ arithmetic, the figures every accuracy is reported from
        fused = run_onnx(Path(int8_onnx), x.astype(np.float32), fused=True).argmax(1)
        report["onnxruntime_fused_vs_qdq_top1_agreement"] = float(
            (fused == run_onnx(Path(int8_onnx), x.astype(np.float32)).argmax(1)).mean())
    if arm:
        report["arm"] = arm_sizes(compiled.dir / "c")
        report["cortex_m"] = cortex_m_check(compiled, xq[:n_rt], c_out[:n_rt])
    return report
