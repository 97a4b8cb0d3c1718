"""Frames per second one worker process analyses with N cameras, batch size B.

    .venv/bin/python benchmarks/worker_fps.py --cameras 8 --batch-size 1 8 [--device cuda] \
        [--detector ultralytics] [--duration 30] [--json FILE]

Each setting runs `crowdwatch run --no-ui` on a config of N cameras that all play the sample
clip (assets/vtest_plaza.mp4) as fast as the worker can analyse it (`realtime: false`, every
frame sampled), with the demo's zones, rules and centers, and reads the worker's own Prometheus
metrics on 127.0.0.1: frames analysed per camera over the measured window (after a warm-up)
and the mean batch size. Settings run one after the other in the same invocation, so each
figure has its baseline beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "assets" / "vtest_plaza.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(
    cameras: int, detector: dict[str, object], port: int, density_model: str | None, method: str | None
) -> dict[str, object]:
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    template = demo["cameras"][0]
    cams = []
    for i in range(cameras):
        cam = dict(template, id=f"cam-{i + 1}", url=str(CLIP), loop=True, realtime=False)
        cam["sample_every_s"] = 0.1  # the clip's 10 fps: every frame
        if method is not None:
            cam["zones"] = [dict(zone, method=method) for zone in template["zones"]]
        cams.append(cam)
    counting = dict(demo.get("counting") or {})
    if density_model is not None:
        counting["density"] = {**counting.get("density", {}), "model": density_model}
    return {
        **demo,
        "counting": counting,
        "cameras": cams,
        "detector": detector,
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
    }


def scrape(port: int) -> tuple[float, float, float]:
    """(frames analysed over all cameras, batch-size sum, batch count) from the metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()

    def total(pattern: str) -> float:
        return sum(float(m) for m in re.findall(pattern, text, flags=re.M))

    frames = total(r"^crowdwatch_frames_analysed_total\{[^}]*\} (\S+)$")
    batch_sum = total(r"^crowdwatch_detect_batch_size_sum (\S+)$")
    batch_count = total(r"^crowdwatch_detect_batch_size_count (\S+)$")
    return frames, batch_sum, batch_count


def measure(cfg: dict[str, object], port: int, warmup_s: float, duration_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fps.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "crowdwatch.cli", "run", "-c", str(path), "--no-ui"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300  # model loading, CUDA start-up
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"crowdwatch run exited: {proc.stderr.read() if proc.stderr else ''}")
                try:
                    if scrape(port)[0] > 0:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("no frame analysed within 300 s")
                time.sleep(0.5)  # polling an outside process's progress, not synchronising
            time.sleep(warmup_s)
            f0, s0, c0 = scrape(port)
            t0 = time.monotonic()
            time.sleep(duration_s)
            f1, s1, c1 = scrape(port)
            elapsed = time.monotonic() - t0
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    batches = c1 - c0
    return {
        "frames_per_s": (f1 - f0) / elapsed,
        "mean_batch": (s1 - s0) / batches if batches else 1.0,
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    p.add_argument("--detector", choices=("ultralytics", "onnx"), default="ultralytics")
    p.add_argument("--device", default="auto", help="ultralytics: auto, cpu, cuda, cuda:N")
    p.add_argument("--density-model", default=None, help="for the demo's density/auto zones")
    p.add_argument(
        "--method", choices=("detector", "tiled", "density", "auto"), default=None, help="all zones count so"
    )
    p.add_argument("--warmup", type=float, default=10.0, help="seconds after the first frame")
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds per setting")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")

    results = []
    print(f"{args.cameras} cameras, {args.detector} on {args.device}, zones: {args.method or 'as the demo'}")
    print(f"{'batch_size':>10} {'frames/s':>9} {'per camera':>10} {'mean batch':>10}")
    for size in args.batch_size:
        det: dict[str, object] = {"type": args.detector, "confidence": 0.25}
        if args.detector == "ultralytics":
            det |= {"model": "yolov8s-person", "device": args.device, "batch_size": size}
        elif size != 1:
            raise SystemExit("the onnx detector does not batch: use --batch-size 1")
        port = free_port()
        cfg = config(args.cameras, det, port, args.density_model, args.method)
        got = measure(cfg, port, args.warmup, args.duration)
        per_cam = got["frames_per_s"] / args.cameras
        print(f"{size:>10} {got['frames_per_s']:9.1f} {per_cam:10.1f} {got['mean_batch']:10.2f}")
        setting = {"batch_size": size, "cameras": args.cameras, "device": args.device, "method": args.method}
        results.append({**setting, **got})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
