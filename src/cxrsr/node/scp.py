"""The receiving side: a C-STORE and C-ECHO SCP with pynetdicom.

Negotiation accepts the storage SOP classes cxrsr upscales, in the transfer syntaxes this installation can
decode (checked at start with pydicom's decoders); anything else is refused there, before a byte of pixel
data is sent. Associations are refused for a calling AE title or a source address off the allow-lists, and
past the association limit. Each C-STORE is checked before Success: the disk budget (0xA700, nothing
written), the header (SOP class, pixel count before decoding) and the pixels themselves (decoded by the same
reader ``cxrsr upscale`` uses); a refused instance is kept in quarantine/ and the node keeps answering.
"""

from __future__ import annotations

import ipaddress
import logging
import threading

from ..io import InputFileError, read_image
from .config import NodeConfig
from .spool import Item, Spool, hashed

log = logging.getLogger(__name__)

#: The storage SOP classes the node accepts: the radiographs cxrsr is for, plus secondary capture and CT.
STORAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
}
VERIFICATION = "1.2.840.10008.1.1"

UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")
COMPRESSED = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

# C-STORE statuses (PS3.4 B.2.3): the ranges are the standard's; the exact codes within them are ours.
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # the spool's disk budget or free space
TOO_LARGE = 0xA701  # out of resources too: the header gives more pixels than the limit
NOT_MATCHING = 0xA900  # the data set's SOP class is not the one negotiated
CANNOT_UNDERSTAND = 0xC000  # corrupt, undecodable or unsupported pixel data
PROCESSING_FAILURE = 0x0110


def decodable_syntaxes() -> list[str]:
    """Transfer syntaxes whose pixel data this installation can decode. Pillow's JPEG plugin decodes 8-bit
    JPEG only, so 12-bit JPEG Extended counts only with another decoder."""
    from pydicom.pixels import get_decoder

    syntaxes = list(UNCOMPRESSED)
    for uid in COMPRESSED:
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            continue
        plugins = set(decoder.available_plugins)
        if uid == "1.2.840.10008.1.2.4.51":
            plugins.discard("pillow")
        if plugins:
            syntaxes.append(uid)
    return syntaxes


def _status(code: int, comment: str):
    from pydicom.dataset import Dataset

    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


class StoreHandler:
    """Everything between a C-STORE request and its status; ``on_accepted`` wakes the worker."""

    def __init__(self, config: NodeConfig, spool: Spool, on_accepted=None) -> None:
        self.config = config
        self.spool = spool
        self.on_accepted = on_accepted
        self.counts = {"accepted": 0, "refused": 0}
        self._lock = threading.Lock()

    def __call__(self, event) -> object:
        try:
            code, comment = self._store(event)
        except Exception as exc:  # never let one request take the SCP down
            log.error("C-STORE failed inside the node (%s)", type(exc).__name__)
            code, comment = PROCESSING_FAILURE, "processing failure in the node"
        with self._lock:
            self.counts["accepted" if code == SUCCESS else "refused"] += 1
        return _status(code, comment) if code != SUCCESS else SUCCESS

    def _store(self, event) -> tuple[int, str]:
        calling = event.assoc.requestor.ae_title
        sop_class = str(event.request.AffectedSOPClassUID)
        uid = hashed(event.request.AffectedSOPInstanceUID)
        data = event.encoded_dataset(include_meta=True)
        item = self.spool.receive(data)
        if item is None:
            log.warning("store %s from %s refused: spool budget or free disk space exhausted (0xA700)", uid, calling)
            return OUT_OF_RESOURCES, "out of resources: spool full"
        code, reason = self._check(item, sop_class)
        if code != SUCCESS:
            self.spool.quarantine(item, reason, code)
            log.warning("store %s from %s refused and quarantined as %s: status 0x%04X (%s)", uid, calling,
                        item.name, code, reason.split(" (")[0][:120])
            return code, reason
        self.spool.accept(item)
        log.info("stored %s from %s as %s (%d bytes)", uid, calling, item.name, len(data))
        if self.on_accepted is not None:
            self.on_accepted()
        return SUCCESS, ""

    def _check(self, item: Item, sop_class: str) -> tuple[int, str]:
        """Header first (nothing decoded), then the pixels with the reader the worker will use."""
        import pydicom

        try:
            ds = pydicom.dcmread(item.path, stop_before_pixels=True)
            rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
            frames = int(ds.get("NumberOfFrames") or 1)
            declared = str(ds.get("SOPClassUID", ""))
        except Exception as exc:
            return CANNOT_UNDERSTAND, f"unreadable data set ({type(exc).__name__})"
        if declared != sop_class:
            return NOT_MATCHING, "data set does not match the SOP class"
        if rows * columns * max(frames, 1) > self.config.max_pixels:
            return TOO_LARGE, f"image over the pixel limit of {self.config.max_pixels}"
        try:
            read_image(item.path)
        except InputFileError as exc:
            return CANNOT_UNDERSTAND, exc.reason
        except Exception as exc:
            return CANNOT_UNDERSTAND, f"cannot decode ({type(exc).__name__})"
        return SUCCESS, ""


def _host_allowed(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def start_server(config: NodeConfig, handler: StoreHandler):
    """Bind and serve in a background thread; returns the server (``server.server_address``, ``.shutdown()``)."""
    from pynetdicom import AE, _config, evt
    from pynetdicom.transport import ThreadedAssociationServer

    _config.LOG_HANDLER_LEVEL = "none"  # pynetdicom's standard handlers log UIDs of every request
    networks = [ipaddress.ip_network(h, strict=False) for h in config.allow_hosts]

    class Server(ThreadedAssociationServer):
        def verify_request(self, request, client_address) -> bool:
            if networks and not _host_allowed(str(client_address[0]), networks):
                log.warning("connection from %s refused: not on the allowed hosts", client_address[0])
                return False
            return True

    ae = AE(ae_title=config.ae_title)
    ae.maximum_associations = config.max_associations
    ae.maximum_pdu_size = config.max_pdu
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = config.timeout_s
    ae.require_called_aet = False
    if config.allow:
        ae.require_calling_aet = list(config.allow)
    syntaxes = decodable_syntaxes()
    for uid in STORAGE_CLASSES:
        ae.add_supported_context(uid, syntaxes)
    ae.add_supported_context(VERIFICATION)
    handlers = [(evt.EVT_C_STORE, handler), (evt.EVT_REJECTED, _log_rejected)]
    server = ae.make_server((config.host, config.port), evt_handlers=handlers, server_class=Server)
    ae._servers.append(server)  # as AE.start_server does: server.shutdown() takes it off this list
    thread = threading.Thread(target=server.serve_forever, name="cxrsr-dicom-scp", daemon=True)
    thread.start()
    names = ", ".join(sorted({_short_name(s) for s in syntaxes}))
    log.info("listening as %s on %s:%d; transfer syntaxes: %s", config.ae_title, *server.server_address[:2], names)
    return server


def _short_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name


def _log_rejected(event) -> None:
    log.warning("association from %s (%s) rejected", event.assoc.requestor.ae_title,
                event.assoc.requestor.address)
