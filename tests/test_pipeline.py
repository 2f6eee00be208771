"""The folder pipeline (inference/pipeline.py): the same outputs and errors as one file after another, in
order, with the next file read while the network runs."""

from pathlib import Path

import numpy as np
from PIL import Image

from cxrsr import Upscaler
from cxrsr.inference.files import collect_inputs, plan_jobs
from cxrsr.inference.pipeline import upscale_jobs


def _folder(tmp_path: Path, nih_png: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    with Image.open(nih_png) as im:
        grey = im.convert("L")
        for i, box in enumerate([(0, 0, 96, 80), (300, 300, 364, 364), (500, 200, 580, 296)]):
            grey.crop(box).save(src / f"{i}_a.png")
    (src / "1_b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # a bad file in the middle
    return src


def test_overlapped_pipeline_equals_one_file_after_another(tmp_path, nih_png, tiny_weights):
    src = _folder(tmp_path, nih_png)
    upscaler = Upscaler.from_pretrained(tiny_weights, device="cpu")
    inputs, _ = collect_inputs([src])
    outputs = {}
    for overlap in (False, True):
        out = tmp_path / f"out-{overlap}"
        jobs = plan_jobs(inputs, out)
        results = list(upscale_jobs(upscaler, jobs, overlap=overlap))
        assert [r.job for r in results] == jobs  # one result per job, in order
        failed = [r.job.src.path.name for r in results if not r.ok]
        assert failed == ["1_b.png"] and str(src / "1_b.png") in str(results[2].error)
        assert not (out / "1_b_x4.png").exists()
        outputs[overlap] = {p.name: np.asarray(Image.open(p)) for p in sorted(out.iterdir())}
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert outputs[False].keys() == outputs[True].keys() and len(outputs[True]) == 3
    for name in outputs[True]:
        assert np.array_equal(outputs[False][name], outputs[True][name])
        assert outputs[True][name].shape[0] % 4 == 0


def test_the_next_file_is_read_while_the_network_runs(tmp_path, nih_png, tiny_weights, monkeypatch):
    import time

    import cxrsr.inference.pipeline as pipeline

    src = _folder(tmp_path, nih_png)
    (src / "1_b.png").unlink()
    upscaler = Upscaler.from_pretrained(tiny_weights, device="cpu")
    jobs = plan_jobs(collect_inputs([src])[0], tmp_path / "out")
    reads, passes = [], []  # (start, end) of each read and each network pass
    original_read, original_upscale = pipeline.read_input, upscaler.upscale_array

    def timed(log, function, pause):
        def run(*args, **kwargs):
            start = time.perf_counter()
            time.sleep(pause)  # a slow decoder, a slow network
            try:
                return function(*args, **kwargs)
            finally:
                log.append((start, time.perf_counter()))
        return run

    monkeypatch.setattr(pipeline, "read_input", timed(reads, original_read, 0.3))
    upscaler.upscale_array = timed(passes, original_upscale, 0.6)
    assert all(r.ok for r in upscale_jobs(upscaler, jobs))
    assert len(reads) == len(passes) == 3
    for (read_start, read_end), (pass_start, pass_end) in zip(reads[1:], passes):
        assert read_start < pass_end and read_end > pass_start  # file i+1 was read during pass i
