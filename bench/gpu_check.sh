#!/usr/bin/env bash
# Issue 13's GPU check, in one call of the lent GPU machine (bench/gpu_check.md says how and why).
#
#   bash bench/gpu_check.sh prepare   # HERE, once: wheels, detector weights and base clips into ignored folders
#   bash bench/gpu_check.sh run       # THERE: (a) nvidia-smi, (b) the CUDA tests, (c) engine_bench --device cuda
#   bash bench/gpu_check.sh pynvc     # THERE, a second call: (c0) PyNvVideoCodec decode-only frames/s
#
# Everything goes to $OUT/gpu_check.log; the bench's figures to $OUT/figures.json, the tests' to $OUT/pytest.xml.
# GPU_CHECK_LONG=1 adds the 10-minute clips to (c); GPU_CHECK_TESTS_S and GPU_CHECK_BENCH_S cap (b) and (c)
# (120 s and 300 s). Nothing is fetched on that machine: it reaches nothing.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=.whl                 # av (the engine's decoder, and FFmpeg's libraries for torchcodec) and torchcodec
NVC_WHEELS=.whl-nvc         # PyNvVideoCodec alone: with the wheels above it would pass the 64 MiB carry limit
ASSETS=bench/out/gpu        # base clips (10 s, 720p and 1080p) and RetinaFace as a .pth
DETECTOR=$ASSETS/retinaface-mobilenet0.25-from-onnx.pth
WORKDIR=/tmp/deepfake-bench
CARRY_LIMIT_MIB=64
PINS=(av==18.1.0 torchcodec==0.17.0)   # av as requirements/service.txt; torchcodec 0.17.0+cu130 as on this checkout
# torchcodec's README gives "torch >= 2.11" up to 0.16 and no row yet for 0.17; that machine has torch 2.11.0.
FALLBACK_PIN=torchcodec==0.16.0
NVC_PIN=pynvvideocodec==2.2.4
# The GPU machine's python3 is 3.12 (KINDS.md); these are pip's tags for its manylinux x86-64.
PLATFORMS=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

step() { printf '\n######## %s  (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

# ---- here --------------------------------------------------------------------------------------------

prepare() {
    local python=${PYTHON:-.venv/bin/python}
    local folder
    for folder in "$WHEELS" "$NVC_WHEELS"; do
        grep -qxF "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >>.git/info/exclude
    done
    mkdir -p "$WHEELS" "$NVC_WHEELS" "$ASSETS"
    for folder in "$WHEELS" "$NVC_WHEELS" "$ASSETS"; do
        git check-ignore -q "$folder" || { echo "$folder is not ignored by git: it would travel uncarried"; return 1; }
    done
    "$python" -m pip download -q --no-deps --only-binary=:all: "${PLATFORMS[@]}" -d "$WHEELS" "${PINS[@]}" || return 1
    "$python" -m pip download -q --no-deps --only-binary=:all: "${PLATFORMS[@]}" -d "$WHEELS/fallback" "$FALLBACK_PIN" \
        || return 1
    "$python" -m pip download -q --no-deps --only-binary=:all: "${PLATFORMS[@]}" -d "$NVC_WHEELS" "$NVC_PIN" || return 1
    # The ONNX RetinaFace is read through OpenVINO, which that machine lacks: carry its torch state dict.
    [ -f "$DETECTOR" ] || "$python" -c "import sys, torch; from shared.model.faces import onnx_import
torch.save(onnx_import.state_dict_from_onnx('weights/retinaface-mobilenet0.25.onnx'), sys.argv[1])" "$DETECTOR" || return 1
    # That machine may have no ffmpeg program to encode with: carry the 10-second clips the bench loops.
    "$python" -c "import sys; from pathlib import Path; sys.path.insert(0, 'bench'); from engine_bench import make_base_clip
for h in (720, 1080): make_base_clip(Path(sys.argv[1]), width=h * 16 // 9, height=h)" "$ASSETS" || return 1
    carry_size "$WHEELS" "$ASSETS"
    carry_size "$NVC_WHEELS" "$ASSETS"
}

carry_size() {
    # What a call sends: tracked and untracked-not-ignored files, and the carried folders.
    local tree carried
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null \
        | awk '{s+=$1} END {print s+0}')
    carried=$(du -sb "$@" | awk '{s+=$1} END {print s+0}')
    awk -v t="$tree" -v c="$carried" -v l="$CARRY_LIMIT_MIB" -v what="$*" 'BEGIN {
        m = (t + c) / 1048576
        printf "carry %s: tree %.1f MiB + carried %.1f MiB = %.1f MiB of %d MiB: %s\n",
               what, t / 1048576, c / 1048576, m, l, (m < l ? "fits" : "DOES NOT FIT") }'
}

# ---- there -------------------------------------------------------------------------------------------

install_wheels() {  # $1: the folder of wheels, $2: where they go (PYTHONPATH)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "$1"/*.whl
}

ffmpeg_for_torchcodec() {
    # torchcodec links libavcodec.so.62 & co.; PyAV's wheel carries that FFmpeg 8 under hashed names. Links with
    # the plain names, and av.libs itself on the path (the libraries find each other by $ORIGIN, which is then
    # the links' folder), make the one copy serve both.
    local libs=/tmp/site/av.libs links=/tmp/ffmpeg-links f name
    mkdir -p "$links"
    for f in "$libs"/lib{avcodec,avdevice,avfilter,avformat,avutil,swresample,swscale}-*.so.*; do
        name=$(basename "$f")
        ln -sf "$f" "$links/${name%%-*}.so.$(sed -E 's/.*\.so\.([0-9]+).*/\1/' <<<"$name")"
    done
    export LD_LIBRARY_PATH="$links:$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

describe_machine() {
    step "a: nvidia-smi"
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    echo "NVDEC user library (driver's libnvcuvid, needed by torchcodec and PyNvVideoCodec):"
    { ldconfig -p | grep -i nvcuvid; find /usr/local/nvidia /usr/lib/x86_64-linux-gnu -name 'libnvcuvid*' 2>/dev/null; } \
        | sort -u | grep . || echo "  libnvcuvid not found: NVDEC cannot run here"
    echo "ffmpeg program: $(command -v ffmpeg || echo 'absent (clips are looped with PyAV)')"
    python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda',
torch.version.cuda, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"
}

check_decoders() {
    python3 - <<'EOF'
import av, torch
print("av", av.__version__, "| FFmpeg hwdevices:", av.codec.hwaccel.hwdevices_available())
try:
    import torchcodec, torchcodec.decoders
    print("torchcodec", torchcodec.__version__)
except Exception as exc:
    print("torchcodec does not import:", exc)
from shared.model.video.device_reader import hardware_decoding
print("hardware_decoding(cuda):", hardware_decoding("cuda"))
EOF
}

test_helpers() {
    # Two stand-ins for what the CUDA tests take from this checkout's machine, written to /tmp/gpu-check-helpers:
    # - the root conftest's `published_detector_weights` (that conftest imports Redis and SQLAlchemy, absent
    #   there), pointing at the carried .pth, since the published ONNX needs OpenVINO (absent too) to be read;
    # - where there is no ffmpeg program, an `ffmpeg` doing through PyAV the part of its work tests/media.py
    #   asks for (raw RGB frames on stdin encoded to a file; -stream_loop with -c copy); anything else exits 2.
    local dir=/tmp/gpu-check-helpers
    mkdir -p "$dir/bin"
    cat >"$dir/gpu_check_fixtures.py" <<'EOF'
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def published_detector_weights() -> Path:
    return Path(os.environ["GPU_CHECK_DETECTOR"]).resolve()
EOF
    cat >"$dir/bin/ffmpeg" <<'EOF'
#!/usr/bin/env python3
import sys
from fractions import Fraction

import av
import numpy as np

VALUED = {"-v", "-f", "-pix_fmt", "-s", "-r", "-i", "-c:v", "-c", "-preset", "-crf", "-movflags", "-g",
          "-stream_loop", "-deadline"}


def parse(argv):
    options, inputs, args = {}, [], argv[:-1]
    while args:
        flag = args.pop(0)
        if flag == "-y":
            continue
        if flag not in VALUED or not args:
            sys.exit(f"ffmpeg (PyAV stand-in of bench/gpu_check.sh): {flag} is not supported")
        value = args.pop(0)
        if flag == "-i":
            inputs.append(value)
        else:
            options[(flag, "out" if inputs else "in")] = value
    return options, inputs, argv[-1]


def encode_raw(options, target):
    width, height = map(int, options[("-s", "in")].split("x"))
    with av.open(target, "w", options={k: v for k, v in [("movflags", options.get(("-movflags", "out")))] if v}) as out:
        stream = out.add_stream(options.get(("-c:v", "out"), "libx264"), rate=Fraction(options[("-r", "in")]))
        stream.width, stream.height = width, height
        stream.pix_fmt = options.get(("-pix_fmt", "out"), "yuv420p")
        stream.options = {k[0][1:]: v for k, v in options.items() if k[0] in ("-preset", "-crf", "-g", "-deadline")}
        size = width * height * 3
        while chunk := sys.stdin.buffer.read(size):
            pixels = np.frombuffer(chunk, np.uint8).reshape(height, width, 3)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        out.mux(stream.encode(None))


def loop_copy(options, source, target):
    repeats = int(options.get(("-stream_loop", "in"), 0)) + 1
    with av.open(source) as src, av.open(target, "w") as out:
        stream = src.streams.video[0]
        copy, length = out.add_stream_from_template(stream), 0
        for turn in range(repeats):
            src.seek(0)
            for packet in src.demux(stream):
                if packet.dts is None:
                    continue
                length = max(length, packet.pts + (packet.duration or 0)) if turn == 0 else length
                packet.pts, packet.dts, packet.stream = packet.pts + turn * length, packet.dts + turn * length, copy
                out.mux(packet)


options, inputs, target = parse(sys.argv[1:])
if inputs == ["-"] and options.get(("-f", "in")) == "rawvideo":
    encode_raw(options, target)
elif len(inputs) == 1 and options.get(("-c", "out")) == "copy":
    loop_copy(options, inputs[0], target)
else:
    sys.exit(f"ffmpeg (PyAV stand-in of bench/gpu_check.sh): {' '.join(sys.argv[1:])} is not supported")
EOF
    chmod +x "$dir/bin/ffmpeg"
    echo "$dir"
}

cuda_tests() {
    step "b: CUDA tests (files that skip without CUDA), with test_helpers' fixture and, if needed, ffmpeg"
    local files helpers path=$PATH
    helpers=$(test_helpers)
    command -v ffmpeg >/dev/null || path="$helpers/bin:$PATH"
    mapfile -t files < <(grep -rl "cuda.is_available" tests)
    PATH=$path PYTHONPATH="$helpers:$PYTHONPATH" GPU_CHECK_DETECTOR=$DETECTOR PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \
        timeout "${GPU_CHECK_TESTS_S:-120}" python3 -m pytest -q -rs -p pytest_timeout -p gpu_check_fixtures \
        -p no:cacheprovider --noconftest -k "cuda or nvdec or gpu" --junitxml="$OUT/pytest.xml" "${files[@]}"
}

engine_bench() {
    local minutes=(1)
    [ "${GPU_CHECK_LONG:-0}" = 1 ] && minutes=(1 10)
    step "c: engine_bench --device cuda, 720p and 1080p h264, ${minutes[*]} min"
    mkdir -p "$WORKDIR"
    cp "$ASSETS"/base-*.mp4 "$WORKDIR"/
    timeout "${GPU_CHECK_BENCH_S:-300}" python3 bench/engine_bench.py --device cuda --height 720 1080 \
        --minutes "${minutes[@]}" --fp32-minutes 1 --workdir "$WORKDIR" --detector-weights "$DETECTOR" \
        --json-out "$OUT/figures.json"
}

run() {
    describe_machine
    step "setup: wheels from $WHEELS, FFmpeg for torchcodec from PyAV's wheel"
    install_wheels "$WHEELS" /tmp/site || { echo "wheels did not install"; return 1; }
    export PYTHONPATH="/tmp/site:$PWD"
    ffmpeg_for_torchcodec
    python3 -c "import torchcodec.decoders" || { echo "trying $FALLBACK_PIN"; install_wheels "$WHEELS/fallback" /tmp/site; }
    check_decoders
    cuda_tests; local tests=$?
    engine_bench; local bench=$?
    step "done: CUDA tests exit $tests, engine_bench exit $bench (124: its time limit); figures in \$OUT/figures.json"
}

pynvc() {
    step "c0: PyNvVideoCodec decode-only (NV12 in GPU memory, no colour conversion), each base clip 6 times (1 min)"
    install_wheels "$NVC_WHEELS" /tmp/site-nvc || { echo "PyNvVideoCodec did not install"; return 1; }
    PYTHONPATH=/tmp/site-nvc timeout 240 python3 - "$ASSETS"/base-{1280x720,1920x1080}-1faces.mp4 <<'EOF'
import json, os, sys, time
import PyNvVideoCodec as nvc

def decode_once(path):
    demuxer = nvc.CreateDemuxer(filename=path)
    decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), usedevicememory=True)
    return sum(1 for packet in demuxer for _ in decoder.Decode(packet))

figures = {}
for path in sys.argv[1:]:
    decode_once(path)  # warm-up: CUDA context, decoder session
    start = time.perf_counter()
    frames = sum(decode_once(path) for _ in range(6))
    fps = frames / (time.perf_counter() - start)
    figures[os.path.basename(path)] = {"frames": frames, "frames_per_s": fps}
    print(f"{os.path.basename(path)}: {frames} frames, {fps:.0f} frames/s decode-only (a new decoder per pass)")
open(os.path.join(os.environ["OUT"], "pynvc.json"), "w").write(json.dumps(figures, indent=2))
EOF
}

main() {
    local mode=${1:-run}
    if [ "$mode" = prepare ]; then
        prepare
        return
    fi
    : "${OUT:?OUT must name the folder that comes back (the device tool sets it)}"
    export PYTHONUNBUFFERED=1
    "$mode" 2>&1 | tee -a "$OUT/gpu_check.log"
}

main "$@"
