"""Built DICOM files for edge cases the real samples do not cover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def base_dataset(modality: str = "CR") -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "Test^Synthetic"
    ds.PatientID = "SYNTH-0001"
    return ds


def dicom_without_pixels(path: Path) -> Path:
    ds = base_dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_with_pixels(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 16,
                      **attributes) -> Path:
    """An uncompressed single- or multi-frame greyscale DICOM file holding ``pixels`` (uint16 or int16)."""
    ds = base_dataset()
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def pydicom_file(name: str) -> Path:
    """A file shipped with pydicom or pydicom-data (no download)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert path is not None, f"{name} not found in pydicom / pydicom-data"
    return Path(path)
