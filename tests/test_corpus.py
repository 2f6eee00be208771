"""The hostile-input corpus (tests/corpus.py) through the readers and `cxrsr upscale`, case by case."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CXR, require
from corpus import Seeds, build_corpus, check_cli, check_reader


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, rg1_dicom):
    seeds = Seeds(png=require(CXR / "nih" / "test" / "00000061_012.png"),
                  jpeg=require(CXR / "covid_adult" / "test" / "0a7faa2a.jpg"), dicom=rg1_dicom)
    folder = tmp_path_factory.mktemp("corpus") / "corpus"
    return folder, build_corpus(folder, seeds), seeds


@pytest.fixture(scope="module")
def reader_outcomes(corpus):
    folder, cases, seeds = corpus
    return {o.name: o for o in check_reader(folder, cases, seeds)}


@pytest.fixture(scope="module")
def cli_run(corpus, tiny_weights):
    folder, cases, _ = corpus
    outcomes, summary = check_cli(folder, cases, folder.parent / "out", tiny_weights)
    return {o.name: o for o in outcomes}, summary


def test_corpus_covers_every_family(corpus):
    _, cases, _ = corpus
    families = {c.family for c in cases}
    assert families == {"damaged", "extension", "huge", "pixel format", "values", "stack", "dicom", "names"}
    assert len(cases) >= 130
    assert {c.expect for c in cases} == {"ok", "error", "any"}


def test_readers_follow_the_rules_on_every_case(corpus, reader_outcomes):
    """Each case read in a worker limited to 4 GiB of address space and 20 s: only cxrsr's input error may
    escape, naming the file on one line; a file read is never another image; inputs are unchanged."""
    _, cases, _ = corpus
    broken = {ascii(name): o.problems for name, o in reader_outcomes.items() if o.problems}
    assert len(reader_outcomes) == len(cases)
    assert not broken, broken


def test_cli_follows_the_rules_on_every_case(corpus, cli_run):
    """One `cxrsr upscale` over the whole folder: one error line per bad file, naming it; an output that
    reads back at 4x for every good one; nothing under a final name for a failed file; inputs unchanged."""
    outcomes, summary = cli_run
    _, cases, _ = corpus
    broken = {ascii(name): o.problems for name, o in outcomes.items() if o.problems}
    assert not broken, broken
    assert not summary["problems"], summary
    failed = sum(o.result == "error" for o in outcomes.values())
    done = sum(o.result == "ok" for o in outcomes.values())
    assert failed > 40 and done > 60
    assert summary["exit_status"] == 1
    assert f"{done} upscaled, 0 skipped, {failed} failed" in summary["stdout"]


@pytest.mark.parametrize("name, words", [
    ("stack-tiff-pages.tif", "stack of 3"),
    ("stack-apng.png", "3 frames"),
    ("stack-dicom-3-frames.dcm", "multi-frame"),
    ("huge-bomb-png-16384x16384.png", "too large"),
    ("huge-bomb-tiff-16384x16384.tif", "too large"),
    ("huge-dicom-header-40000x40000.dcm", "too large"),
    ("dcm-jpeg-lossless.dcm", "no decoder"),
    ("dcm-no-rows.dcm", "lacks rows"),
    ("val-float-nan.tif", "nan"),
    ("val-complex.tif", "complex"),
])
def test_refusals_say_why(reader_outcomes, name, words):
    outcome = reader_outcomes[name]
    assert outcome.result == "error" and words in outcome.message.lower(), outcome.message


@pytest.mark.parametrize("name", ["fmt-miniswhite.tif", "fmt-palette-tif.tif", "fmt-cmyk-tif.tif",
                                  "ext-png-named-dcm.dcm", "ext-tiff-named.png", "fmt-jpeg-compressed.tif",
                                  "dcm-no-preamble.dcm"])
def test_files_whose_content_or_photometry_decides_are_read_right(reader_outcomes, name):
    """White-is-zero, palette and CMYK TIFFs, and files whose name lies about their format, read as the image
    they hold (checked against the seed inside check_reader); JPEG-compressed TIFF falls back to Pillow."""
    outcome = reader_outcomes[name]
    assert outcome.result == "ok" and not outcome.problems, (outcome.message, outcome.problems)


def test_no_case_is_slow(reader_outcomes):
    slow = {ascii(n): round(o.seconds, 2) for n, o in reader_outcomes.items() if o.seconds > 5}
    assert not slow, slow


def test_fifo_does_not_block_the_batch(corpus, cli_run):
    """A FIFO named like an image is refused without being opened (opening it would wait for a writer)."""
    outcomes, summary = cli_run
    assert outcomes["fifo.png"].result == "error" and summary["exit_status"] is not None


def test_long_names_fit_their_temporary_names(cli_run):
    outcomes, _ = cli_run
    (name,) = [n for n in outcomes if n.startswith("nnnn")]
    # 243 bytes fit the 255-byte limit; ".<name>.<random>.part" beside it would not, unless shortened
    assert outcomes[name].result == "ok" and len(Path(name).stem + "_x4.png") == 243


def test_server_answers_every_case_without_a_server_error(corpus):
    """Every regular file of the corpus uploaded to `cxrsr serve`'s /api/upscale: a PNG back, or a 4xx
    with a one-line reason that holds no path; never a 500, and the server stays up."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cxrsr.serve import ServeConfig, create_app

    folder, cases, _ = corpus
    config = ServeConfig(model="cxr-fidelity", device="cpu", max_upload_mb=8, max_pixels=512 * 512, queue_size=2)
    answers = {}
    with TestClient(create_app(config)) as client:
        for case in cases:
            path = folder / case.name
            if path.is_symlink() or not path.is_file():
                continue
            response = client.post("/api/upscale", data={"format": "png"},
                                   files={"file": ("upload", path.read_bytes(), "application/octet-stream")})
            answers[case.name] = response.status_code
            if response.status_code == 200:
                assert response.content.startswith(b"\x89PNG"), case.name
            else:
                reason = response.json()["error"]
                assert "\n" not in reason and str(folder) not in reason and "/tmp" not in reason, reason
        assert client.get("/api/health").json()["status"] == "ok"
    assert set(answers.values()) <= {200, 413, 415, 422}, {ascii(n): s for n, s in answers.items() if s >= 500}
    assert sum(s == 200 for s in answers.values()) > 50 and sum(s != 200 for s in answers.values()) > 40


def test_16_bit_colour_png_is_read_with_a_warning_naming_it(corpus, caplog):
    """Pillow decodes 16-bit colour PNG at 8 bits: said once, naming the file; 16-bit grey is read whole."""
    from cxrsr.io import read_image

    folder, _, _ = corpus
    with caplog.at_level("WARNING", logger="cxrsr.io.raster"):
        assert read_image(folder / "fmt-grey16.png").array.dtype.name == "uint16"
        assert not caplog.records
        assert read_image(folder / "fmt-rgb16-png.png").array.shape[2] == 3
    (record,) = caplog.records
    assert str(folder / "fmt-rgb16-png.png") in record.getMessage() and "8 bits" in record.getMessage()


def test_decoders_own_log_records_are_dropped_only_while_reading(corpus, caplog):
    """tifffile and pydicom log about damaged files on their own; while cxrsr reads, its one-line error (or
    its own warning naming the file) is the only word. Outside a read their records pass as before."""
    import logging

    from cxrsr.io import InputFileError, read_image

    folder, cases, _ = corpus
    with caplog.at_level(logging.DEBUG):
        for case in cases:
            if case.name.endswith((".tif", ".dcm")) and (folder / case.name).is_file():
                try:
                    read_image(folder / case.name)
                except InputFileError:
                    pass
        assert not [r for r in caplog.records if r.name.split(".")[0] in ("tifffile", "pydicom")]
        assert any(r.name == "cxrsr.io.dicom" and "dcm-pixels-long.dcm" in r.getMessage() for r in caplog.records)
        logging.getLogger("tifffile").warning("outside a read")
    assert caplog.records[-1].name == "tifffile"
