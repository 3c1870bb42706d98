"""Peak memory of preparing one large reference image (issue 13, item 6).

    python -m bench.bench_image_memory

Each case runs in a fresh interpreter and reads its own VmHWM (the kernel's peak RSS of that
process; ru_maxrss would carry the parent's peak across exec). The PNGs are 6300x6300 with detail
everywhere and just under the default 10 MB attachment cap (MAX_IMAGE_MB), which the bot enforces
before decoding. Before issue 13 the same preparation peaked at about 670 MiB.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

TARGET_MIB = 200.0
SIDE = 6300
CASES = (
    ("PNG", "RGB", "1280x720"),
    ("PNG", "RGBA", "1280x720"),
    ("PNG", "RGB", "1792x1024"),
    ("JPEG", "RGB", "1280x720"),
)


def make(path: Path, fmt: str, mode: str) -> Path:
    small = Image.merge("RGB", [Image.effect_noise((SIDE // 300, SIDE // 300), 40 + 9 * c) for c in range(3)])
    image = small.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((SIDE, SIDE)))
    image.save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def hwm_kib() -> int:
    found = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(found.group(1)) if found else 0


def one(path: str, size: str) -> dict[str, float]:
    from bot.media.images import prepare_reference

    data = Path(path).read_bytes()
    before = hwm_kib()
    started = time.perf_counter()
    prepare_reference(data, size)
    return {"before_kib": before, "peak_kib": hwm_kib(), "seconds": time.perf_counter() - started}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(one(sys.argv[2], sys.argv[3])))
        return
    lines = [
        f"Preparing one {SIDE}x{SIDE} reference image (fresh interpreter per case; peak = VmHWM).",
        "",
        "| image | file | target | RSS before (MiB) | peak RSS (MiB) | time (s) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, mode, size in CASES:
            path = make(Path(tmp) / f"big-{mode}.{fmt.lower()}", fmt, mode)
            out = subprocess.run(
                [sys.executable, "-m", "bench.bench_image_memory", "--one", str(path), size],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout)
            peak = r["peak_kib"] / 1024
            worst = max(worst, peak) if (fmt, size) == ("PNG", "1280x720") else worst
            lines.append(
                f"| {fmt} {mode} | {path.stat().st_size / 1e6:.1f} MB | {size} | {r['before_kib'] / 1024:.1f} | "
                f"{peak:.1f} | {r['seconds']:.2f} |"
            )
    verdict = "met" if worst < TARGET_MIB else "NOT met"
    lines += [
        "",
        f"6300x6300 PNG at the default size: peak {worst:.1f} MiB, target < {TARGET_MIB:.0f} MiB ({verdict}).",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
