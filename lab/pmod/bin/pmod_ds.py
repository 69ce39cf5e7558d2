"""PMOD DICOM server (stand-in around a real pynetdicom SCP): answers C-ECHO, AE title and port from Dicom.properties."""
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # pylint: disable=no-name-in-module

from pmod_common import arg, read_properties, release_version

VERSION = release_version()
props = read_properties(arg('--properties'))
ae = AE(ae_title=props['dicom.aet'])
ae.add_supported_context(Verification)
ae.require_called_aet = True
print('PMOD DICOM server %s, AE %s on port %s' % (VERSION, props['dicom.aet'], props['dicom.port']), flush=True)
ae.start_server(('127.0.0.1', int(props['dicom.port'])), block=True,
                evt_handlers=[(evt.EVT_C_ECHO, lambda event: 0x0000)])
