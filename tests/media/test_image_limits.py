"""Bounded image work (issue 13, item 6): peak memory, reduced decoding, the gate."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from bot.errors import MediaError
from bot.media.gate import ImageGate
from bot.media.images import fit_image

PEAK_LIMIT_MIB = 200
# Runs in a fresh interpreter; its VmHWM is then this one preparation's peak (plus Python and Pillow).
# Not ru_maxrss: Linux carries that across exec from the forking parent (here, the test process).
_MEASURE = """
import json, re, sys
from pathlib import Path
from bot.media.images import prepare_reference
data = Path(sys.argv[1]).read_bytes()
ref = prepare_reference(data, sys.argv[2])
peak = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(json.dumps({"peak_kib": int(peak.group(1)), "out": len(ref.data)}))
"""


def big_png(path: Path, side: int, mode: str) -> Path:
    """A side x side PNG with detail everywhere (a blow-up of noise), just under the default 10 MB
    attachment cap (MAX_IMAGE_MB): the bot refuses a bigger file before decoding it."""
    small = Image.merge("RGB", [Image.effect_noise((side // 300, side // 300), 40 + 9 * c) for c in range(3)])
    image = small.resize((side, side), Image.Resampling.BILINEAR)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((side, side)))
    image.save(path, format="PNG")
    assert 2 * 1024 * 1024 < path.stat().st_size <= 10 * 1024 * 1024, path.stat().st_size
    return path


def peak_mib(path: Path, size: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), size], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout)["peak_kib"] / 1024


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_6300_px_png_is_prepared_under_200_mib(tmp_path: Path, mode: str) -> None:
    path = big_png(tmp_path / "big.png", 6300, mode)
    assert peak_mib(path, "1280x720") < PEAK_LIMIT_MIB


def test_a_big_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 120, 40)).save(buf, format="JPEG", quality=80)
    path = tmp_path / "big.jpg"
    path.write_bytes(buf.getvalue())
    # A full decode alone is 69 MiB of RGB; at 1/4 scale it is 4 MiB.
    assert peak_mib(path, "1280x720") < 120


def test_reduction_keeps_the_picture_and_its_orientation() -> None:
    # Left half red, right half blue; EXIF orientation 6 turns it a quarter: red must end up on top.
    image = Image.new("RGB", (4000, 2000), (255, 0, 0))
    image.paste((0, 0, 255), (2000, 0, 4000, 2000))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif, quality=90)
    with Image.open(io.BytesIO(fit_image(buf.getvalue(), 200, 400))) as out:
        assert out.size == (200, 400)
        top, bottom = out.getpixel((100, 50)), out.getpixel((100, 350))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


async def test_one_preparation_per_member_and_a_bounded_number_overall() -> None:
    gate = ImageGate(concurrency=2)
    release = threading.Event()
    running: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> str:
        with lock:
            running.append(name)
        release.wait(10)
        return name

    first = asyncio.create_task(gate.run("alice", lambda: work("alice")))
    second = asyncio.create_task(gate.run("bob", lambda: work("bob")))
    third = asyncio.create_task(gate.run("carol", lambda: work("carol")))
    while len(running) < 2:
        await asyncio.sleep(0.01)
    with pytest.raises(MediaError) as info:
        await gate.run("alice", lambda: work("alice again"))
    assert "still being prepared" in info.value.user_message
    assert sorted(running) == ["alice", "bob"]  # carol waits for a slot
    release.set()
    assert await asyncio.gather(first, second, third) == ["alice", "bob", "carol"]
    assert await gate.run("alice", lambda: "again") == "again"  # free once finished
