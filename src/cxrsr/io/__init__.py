"""Reading and writing images: raster formats (PNG, JPEG, TIFF) and DICOM."""

from .dicom import DicomSource, looks_like_dicom, read_dicom
from .errors import InputFileError
from .image import INPUT_SUFFIXES, OUTPUT_FORMATS, LoadedImage, check_array, read_image, write_image
from .raster import array_to_pil, pil_to_array

__all__ = [
    "INPUT_SUFFIXES",
    "OUTPUT_FORMATS",
    "DicomSource",
    "InputFileError",
    "LoadedImage",
    "array_to_pil",
    "check_array",
    "looks_like_dicom",
    "pil_to_array",
    "read_dicom",
    "read_image",
    "write_image",
]
